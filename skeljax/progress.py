"""Progress lines with an ETA for the stages that have no training steps to log.

Feature extraction, BN recalibration, the linear probe's epochs and dataset preparation
each take from seconds to many minutes. `Progress` prints one plain line per update,

  features train 320/1020 sequences | 45.2 sequences/s | ETA 0m15s

at least `every_s` seconds apart (the first after `every_s`), and a closing line when it
printed any, so a stage shorter than `every_s` stays silent. The rate counts from the
first update, so a first batch that compiles does not inflate the ETA. Lines are never redrawn in
place: a log redirected to a file holds no carriage returns or cursor codes. The
environment variable SKELJAX_PROGRESS_EVERY_S sets `every_s` for every bar (0: a line
for every update, as the tests use). Training stages report through
logger.MetricsLog instead, in the same format.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator

EVERY_S = 10.0  # seconds between two lines unless SKELJAX_PROGRESS_EVERY_S says otherwise


def fmt_duration(seconds: float) -> str:
  """'1h02m', '3m07s' or '?' for an unknown (infinite) time."""
  if not math.isfinite(seconds):
    return '?'
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


def _default_every() -> float:
  value = os.environ.get('SKELJAX_PROGRESS_EVERY_S', '')
  try:
    return max(float(value), 0.0) if value else EVERY_S
  except ValueError:
    return EVERY_S


class Progress:
  """Counts `total` units of work and prints a line with rate and ETA now and then.

  `update(done)` takes the count so far; `close()` prints the closing line. `enabled`
  False (other processes than 0) prints nothing. Usable as a context manager.
  """

  def __init__(
    self,
    what: str,
    total: int,
    unit: str = '',
    *,
    every_s: float | None = None,
    enabled: bool = True,
  ):
    self.what, self.total, self.unit = what, int(total), unit
    self.every_s = _default_every() if every_s is None else every_s
    self.enabled = enabled
    self.done = 0
    self.printed = 0  # lines printed so far
    self._t0 = self._last = time.perf_counter()
    self._first = None  # (time, done) of the first update: the rate counts from there

  def rate(self, now: float) -> float:
    """Units/s after the first update (which may include a compilation), else overall."""
    if self._first is not None and self.done > self._first[1] and now > self._first[0]:
      return (self.done - self._first[1]) / (now - self._first[0])
    elapsed = now - self._t0
    return self.done / elapsed if elapsed > 0 else 0.0

  def _line(self, now: float, closing: bool) -> str:
    elapsed = now - self._t0
    rate = self.rate(now)
    unit = f' {self.unit}' if self.unit else ''
    rate_txt = f'{rate:.3g}{unit or " units"}/s'
    if closing:
      tail = f'done in {fmt_duration(elapsed)}'
    else:
      eta = (self.total - self.done) / rate if rate > 0 else float('inf')
      tail = f'ETA {fmt_duration(eta)}'
    return f'{self.what} {self.done}/{self.total}{unit} | {rate_txt} | {tail}'

  def update(self, done: int) -> None:
    """Records that `done` of `total` units are finished; prints when a line is due."""
    self.done = int(done)
    now = time.perf_counter()
    if self._first is None:
      self._first = (now, self.done)
    if self.enabled and self.done < self.total and now - self._last >= self.every_s:
      print(self._line(now, closing=False), flush=True)
      self._last, self.printed = now, self.printed + 1

  def advance(self, n: int = 1) -> None:
    self.update(self.done + n)

  def close(self) -> None:
    """The closing line with the total time, when the stage printed any line before."""
    if self.enabled and self.printed:
      print(self._line(time.perf_counter(), closing=True), flush=True)
      self.printed += 1

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc) -> None:
    if exc[0] is None:
      self.close()


def iterate(items: Iterable, what: str, total: int | None = None, unit: str = '', **kwargs):
  """Yields `items`, one unit each, with a Progress line now and then (`Progress`)."""
  total = len(items) if total is None else total
  bar = Progress(what, total, unit, **kwargs)
  it: Iterator = iter(items)
  for i, item in enumerate(it):
    yield item
    bar.update(i + 1)
  bar.close()
