"""The training loop every stage shares: resume, step, NaN guard, log, checkpoint."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import jax

from skeljax import checkpoint as ckpt_lib
from skeljax import mesh as mesh_lib
from skeljax.logger import MetricsLog


class NonFiniteLoss(RuntimeError):
  """A loss went NaN/inf; the run stops and keeps its last good checkpoint."""


def _fetch(step: int, metrics, stage: str, ckpt) -> dict:
  host = {k: float(v) for k, v in mesh_lib.to_host(metrics).items()}
  bad = [k for k, v in host.items() if not math.isfinite(v)]
  if bad:
    last = ckpt.latest_step()
    kept = f'the last good checkpoint (step {last}) is kept' if last else 'no checkpoint was saved'
    raise NonFiniteLoss(
      f'{stage}: non-finite {", ".join(f"{k}={host[k]}" for k in bad)} at step {step}; '
      f'{kept} in {ckpt.directory}. Lower the learning rate or set grad_clip.'
    )
  return host


def run(
  *,
  stage: str,
  state,
  step_fn: Callable,
  batches: Callable[[int], Iterator[dict]],
  mesh,
  ckpt: ckpt_lib.StageCheckpoints,
  log: MetricsLog,
  total_steps: int,
  log_every: int,
  checkpoint_every: int,
  lr_fn: Callable[[int], float] | None = None,
  monitor: Callable[[object], dict] | None = None,
  monitor_every: int = 0,
):
  """Runs `step_fn` from the latest checkpoint (if any) to `total_steps`.

  `state` is a freshly initialised state; it is replaced by the restored one
  when a checkpoint exists. `batches(start)` yields host batches from `start`.
  Metrics of step s are fetched while step s+1 runs, so the host never stalls
  the device, yet a non-finite loss is caught at the step it happened.
  `monitor(state) -> {name: value}` (the online kNN monitor) runs before the first step
  of a fresh run (a step-0 record of its values alone), every `monitor_every` steps and at
  the last step; its values join that step's log line, and its time is kept out of
  samples/s (logger.MetricsLog.exclude).
  """
  abstract = ckpt_lib.abstract_with_sharding(
    jax.eval_shape(lambda s: s, state), mesh_lib.replicated(mesh)
  )
  restored, start = ckpt.restore(abstract)
  if restored is not None:
    state = restored
    if jax.process_index() == 0:
      print(f'{stage}: resumed from step {start} ({ckpt.directory})', flush=True)
  log.start(start)
  if monitor is not None and start == 0:
    # The curve's first point: the encoder as initialised (the random-init kNN), so the
    # monitor shows what pretraining adds from its first step on.
    t_monitor = time.perf_counter()
    at_init = monitor(state)
    log.exclude(time.perf_counter() - t_monitor)
    log.write(0, at_init)
  pending = None
  # Logged metrics are means over the steps since the last log line, not one-batch
  # snapshots (at B = 64 a single batch's accuracy is +-6% noise).
  interval: dict[str, list[float]] = {}

  def collect(pending_step, metrics) -> None:
    for k, v in _fetch(pending_step, metrics, stage, ckpt).items():
      interval.setdefault(k, []).append(v)

  try:
    it = batches(start)
    for step in range(start, total_steps):
      batch = mesh_lib.to_global(mesh, next(it))
      state, metrics = step_fn(state, batch)
      done = step + 1
      if step == start:
        # The first step compiles: samples/s counts from its end (logger.MetricsLog.rate).
        jax.block_until_ready(metrics)
        log.first_step_done(done)
      if pending is not None:
        collect(*pending)
      pending = (done, metrics)
      want_monitor = monitor is not None and (
        done == total_steps or (monitor_every > 0 and done % monitor_every == 0)
      )
      want_log = done % log_every == 0 or done == total_steps or want_monitor
      want_ckpt = done % checkpoint_every == 0 or done == total_steps
      if want_log or want_ckpt:
        collect(*pending)
        pending = None
        if want_log:
          means = {k: sum(v) / len(v) for k, v in interval.items()}
          interval.clear()
          if want_monitor:
            t_monitor = time.perf_counter()
            means.update(monitor(state))
            log.exclude(time.perf_counter() - t_monitor)
          log.write(done, means, None if lr_fn is None else float(lr_fn(step)))
        if want_ckpt:
          ckpt.save(done, state, force=True)
    if pending is not None:
      collect(*pending)
  finally:
    ckpt.close()
    log.close()
  return state
