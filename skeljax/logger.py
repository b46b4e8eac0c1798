"""Observability: a progress line, <workdir>/metrics.jsonl and TensorBoard events.

Only process 0 writes. Resuming truncates a stage's records past the restored
step, so metrics.jsonl of a resumed run equals the uninterrupted run's (but for the
timings). Each record's `elapsed_s` is the stage's wall time so far summed over every
segment of a resumed run (from the kept record at or before the restored step), so a
killed-and-resumed stage reports its whole cost, not only its last segment's.

samples/s is the steady rate: counted from the end of a segment's first step, which
compiles, so a 3-step run reports the speed of its last two steps and not its compile
time. Until a step after the compiling one has finished there is no rate (None).

Metric writing stays here rather than in clu.metric_writers: clu imports TensorFlow,
which skeljax does not depend on; tensorboardX writes the same event files.
"""

from __future__ import annotations

import json
import os
import time

import jax

from skeljax.progress import fmt_duration


class MetricsLog:
  def __init__(self, workdir: str, stage: str, total_steps: int, batch_size: int):
    self.stage = stage
    self.total = total_steps
    self.batch = batch_size
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.writer_enabled = jax.process_index() == 0
    self._tb = None
    self._tb_dir = os.path.join(workdir, 'tensorboard', stage)
    self._t0 = None
    self._rate_t0 = None  # end of the segment's first (compiling) step
    self._rate_step0 = 0
    self.prior_s = 0.0  # wall time of the segments before this one (resumed runs)
    self.monitor_s = 0.0  # this segment's time in the kNN monitor (in elapsed, not in the rate)

  def start(self, step: int) -> None:
    """Called once the (restored) start step is known."""
    self._t0, self._rate_t0 = time.perf_counter(), None
    if not self.writer_enabled:
      return
    if os.path.exists(self.path):
      keep = []
      with open(self.path) as f:
        for line in f:
          try:
            rec = json.loads(line)
          except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
          # A fresh start (step 0) keeps none of its stage's records: the run writes
          # its own step-0 record (the monitor at initialisation).
          if rec.get('stage') != self.stage or (step and rec.get('step', 0) <= step):
            keep.append(line if line.endswith('\n') else line + '\n')
            if rec.get('stage') == self.stage and step:
              self.prior_s = max(self.prior_s, float(rec.get('elapsed_s', 0.0)))
      tmp = self.path + '.tmp'
      with open(tmp, 'w') as f:
        f.writelines(keep)
      os.replace(tmp, self.path)
    from tensorboardX import SummaryWriter

    # TensorBoard hides the stage's earlier events past the restored step, as the file
    # above drops their records: all of them on a fresh start (step 0).
    self._tb = SummaryWriter(self._tb_dir, purge_step=step + 1 if step else 0)

  def first_step_done(self, step: int) -> None:
    """Called once the segment's first step (the one that compiles) has finished."""
    self._rate_t0, self._rate_step0 = time.perf_counter(), step

  def exclude(self, seconds: float) -> None:
    """Keeps `seconds` of non-training work (the kNN monitor) out of samples/s."""
    self.monitor_s += seconds
    if self._rate_t0 is not None:
      self._rate_t0 += seconds

  def rate(self, step: int) -> float | None:
    """Samples/s over the steps after the compiling one up to `step`; None before any."""
    if self._rate_t0 is None or step <= self._rate_step0:
      return None
    dt = time.perf_counter() - self._rate_t0
    return (step - self._rate_step0) * self.batch / dt if dt > 0 else None

  def elapsed(self) -> float:
    """The stage's wall time so far, earlier segments of a resumed run included."""
    return self.prior_s + (time.perf_counter() - self._t0)

  def write(self, step: int, metrics: dict, lr: float | None = None) -> None:
    rate = self.rate(step)
    eta = (self.total - step) * self.batch / rate if rate else float('inf')
    if rate:
      rate_txt = f'{rate:.1f} samples/s'
    elif step == 0:
      rate_txt = 'before the first step'
    else:
      rate_txt = 'samples/s n/a (only the compiling step ran)'
    parts = ' '.join(f'{k} {v:.4g}' for k, v in metrics.items())
    lr_txt = f' | lr {lr:.3g}' if lr is not None else ''
    if self.writer_enabled:
      eta_txt = f'ETA {fmt_duration(eta)}'
      print(
        f'{self.stage} {step}/{self.total} | {parts}{lr_txt} | {rate_txt} | {eta_txt}', flush=True
      )
      rec = {'stage': self.stage, 'step': step, **{k: float(v) for k, v in metrics.items()}}
      if lr is not None:
        rec['lr'] = float(lr)
      rec['samples_per_s'] = rate
      rec['elapsed_s'] = self.elapsed()
      with open(self.path, 'a') as f:
        f.write(json.dumps(rec) + '\n')
      for k, v in metrics.items():
        self._tb.add_scalar(f'{self.stage}/{k}', float(v), step)
      if lr is not None:
        self._tb.add_scalar(f'{self.stage}/lr', float(lr), step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str, stage: str) -> list[dict]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [r for r in map(json.loads, f) if r.get('stage') == stage]
