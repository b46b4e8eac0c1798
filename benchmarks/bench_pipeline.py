"""The input pipeline's host samples/s: per-record grain maps against the old per-step loop.

Two designs of `data.train_batches`, same records, same order, same batches:

  per_record  grain `.map` of one record (read + preprocess) in `threads` threads, then
              `.batch` (the design since #16)
  per_step    grain `.map` of one whole step: a Python loop over the batch's records
              inside one call (the design before, at commit 97362b3)

Two sources: NTU-shaped records held in memory (T_max 300, M 2, 25 joints: preprocessing
only), and, when it is prepared under --data-dir, the NW-UCLA train split as stored
(array_record read and TFDS decoding included). The designs and thread counts alternate
round by round in one process, so their ratios come from the same minutes of a shared
machine.

  python -m benchmarks.bench_pipeline [--threads 1,2] [--rounds 3] [--steps 20]

Also states how many cores of this kind a target rate needs (--target, samples/s; the
default 5,400 is what 8 GPUs at the target NTU-60 epoch rate consume, issue #16).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import grain
import numpy as np

from benchmarks import device_check
from skeljax import data


def per_step_batches(split, *, batch_size: int, seed: int, num_steps: int, num_threads: int):
  """The pipeline before #16: one grain element per step, its records read in a loop."""
  order = grain.MapDataset.range(split.size).shuffle(seed=seed).repeat()

  def load_step(step: int) -> dict:
    first = step * batch_size
    samples = []
    for j in range(batch_size):
      row = int(order[first + j])
      samples.append({**split.preprocess(split.source[row]), 'index': np.int32(row)})
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}

  steps = grain.MapDataset.range(0, num_steps).map(load_step)
  return iter(
    steps.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4))
  )


def per_record_batches(split, *, batch_size: int, seed: int, num_steps: int, num_threads: int):
  return data.train_batches(
    split,
    batch_size=batch_size,
    seed=seed,
    start_step=0,
    num_steps=num_steps,
    num_threads=num_threads,
  )


DESIGNS = {'per_record': per_record_batches, 'per_step': per_step_batches}


def time_design(fn, split, batch: int, steps: int, threads: int) -> float:
  """samples/s over `steps` batches; the clock includes thread start-up (errs low)."""
  t = time.perf_counter()
  n = 0
  for b in fn(split, batch_size=batch, seed=0, num_steps=steps, num_threads=threads):
    n += b['x'].shape[0]
  return n / (time.perf_counter() - t)


def nw_ucla_split(data_dir: str):
  """The prepared NW-UCLA xview train split, or None (with the reason) when absent."""
  from configs import nw_ucla

  cfg = nw_ucla.get_config('xview')
  cfg.data.data_dir = data_dir
  try:
    builder = data.get_builder(cfg.data)
    if not data._is_prepared(builder):
      return None, f'NW-UCLA is not prepared under {data_dir}'
    return data.load_split(builder, cfg.data, 'train'), ''
  except Exception as e:  # noqa: BLE001 - a benchmark reports why it skipped a source
    return None, f'NW-UCLA unavailable: {e}'


def check_same_batches(split, batch: int) -> None:
  """Both designs yield the same first batches (they differ in speed only)."""
  a = per_record_batches(split, batch_size=batch, seed=0, num_steps=2, num_threads=2)
  b = per_step_batches(split, batch_size=batch, seed=0, num_steps=2, num_threads=1)
  for x, y in zip(a, b, strict=True):
    for k in ('x', 'n', 'index'):
      np.testing.assert_array_equal(x[k], y[k])


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--threads', default='1,2')
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--steps', type=int, default=20, help='batches per timed run')
  ap.add_argument('--batch', type=int, default=64)
  ap.add_argument('--target', type=float, default=5400.0, help='samples/s to size cores for')
  ap.add_argument('--data-dir', default=os.path.expanduser('~/skeljax_data'))
  ap.add_argument('--out', default='', help='also write the results as JSON here')
  args = ap.parse_args(argv)
  threads = [int(t) for t in args.threads.split(',')]

  sources = {
    'ntu_in_memory': device_check.in_memory_split(4096, dict(persons=2, max_frames=300, frames=50))
  }
  ucla, why = nw_ucla_split(args.data_dir)
  if ucla is not None:
    sources['nw_ucla_array_record'] = ucla
  else:
    print(f'skipping the NW-UCLA source: {why}')

  rates = {(s, d, t): [] for s in sources for d in DESIGNS for t in threads}
  for name, split in sources.items():
    check_same_batches(split, args.batch)
    steps = min(args.steps, split.size // args.batch)
    for _ in range(args.rounds):
      for t in threads:
        for d, fn in DESIGNS.items():
          rates[(name, d, t)].append(time_design(fn, split, args.batch, steps, t))

  cores = device_check._cores()
  print(
    f'\ninput pipeline, batch {args.batch}, {cores} cores ({platform.processor() or "cpu"}), '
    f'median of {args.rounds} alternated rounds, samples/s'
  )
  print('| source | threads | per_step (before) | per_record (after) | after / before |')
  print('|---|---|---|---|---|')
  rows = []
  for name in sources:
    for t in threads:
      before = float(np.median(rates[(name, 'per_step', t)]))
      after = float(np.median(rates[(name, 'per_record', t)]))
      rows.append(dict(source=name, threads=t, per_step=before, per_record=after))
      print(f'| {name} | {t} | {before:,.0f} | {after:,.0f} | {after / before:.2f}x |')
  best = {}
  for r in rows:
    rate = r['per_record'] / r['threads']
    best[r['source']] = max(best.get(r['source'], 0.0), rate)
  for name, per_thread in best.items():
    print(
      f'{name}: {per_thread:,.0f} samples/s per thread at best here -> '
      f'{int(np.ceil(args.target / per_thread))} such cores for {args.target:,.0f} samples/s '
      '(if the rate kept scaling with threads)'
    )
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f'peak RSS {peak:,.0f} MiB')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(
        dict(
          rows=rows,
          per_thread_best=best,
          batch=args.batch,
          cores=cores,
          rounds=args.rounds,
          peak_rss_mib=peak,
        ),
        f,
        indent=1,
      )
  return 0


if __name__ == '__main__':
  sys.exit(main())
