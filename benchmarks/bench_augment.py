"""Throughput of the jitted `make_views` (all MCC views) on NTU-size input.

    python benchmarks/bench_augment.py --batch 128 --repeats 20

Input: x [B, M=2, Tmax=300, V=25, C=3] with random valid lengths, clips of
T = 50 frames, the default `config.augment`. Prints one line and a JSON dict;
the time is the median over `repeats` calls after compilation (wall clock, plus the
CPU time of all threads, which is steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from skeljax import augment, config


def synthetic_batch(key, batch: int, persons: int, t_max: int, joints: int, channels: int):
  """Smooth random motion, zero-padded after a random valid length; second person absent
  in half of the samples (as in NTU, where most actions have one actor)."""
  k_pose, k_vel, k_n = jax.random.split(key, 3)
  t = jnp.arange(t_max, dtype=jnp.float32)[None, None, :, None, None]
  pose = jax.random.normal(k_pose, (batch, persons, 1, joints, channels))
  vel = 0.01 * jax.random.normal(k_vel, (batch, persons, 1, joints, channels))
  n = jax.random.randint(k_n, (batch,), t_max // 5, t_max + 1)
  x = pose + vel * t
  valid = t < n[:, None, None, None, None]
  present = (jnp.arange(persons)[None, :] == 0) | (jnp.arange(batch)[:, None] % 2 == 0)
  return jnp.where(valid & present[:, :, None, None, None], x, 0.0), n


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--frames', type=int, default=50)
  parser.add_argument('--max_frames', type=int, default=300)
  parser.add_argument('--json', default='', help='also write the JSON dict to this path')
  args = parser.parse_args(argv)

  cfg = config.base_config()
  views = jax.jit(
    functools.partial(augment.make_views, aug=cfg.augment, layout='ntu25', frames=args.frames)
  )
  x, n = synthetic_batch(jax.random.key(0), args.batch, 2, args.max_frames, 25, 3)
  x, n = jax.block_until_ready((x, n))

  start = time.perf_counter()
  jax.block_until_ready(views(jax.random.key(1), x, n))
  compile_s = time.perf_counter() - start
  times, cpu_times = [], []
  for i in range(args.repeats):
    key = jax.random.key(2 + i)
    start, cpu_start = time.perf_counter(), time.process_time()
    jax.block_until_ready(views(key, x, n))
    times.append(time.perf_counter() - start)
    cpu_times.append(time.process_time() - cpu_start)
  median = statistics.median(times)
  result = {
    'benchmark': 'make_views',
    'batch': args.batch,
    'input_shape': list(x.shape),
    'frames': args.frames,
    'repeats': args.repeats,
    'median_ms': round(1e3 * median, 3),
    'min_ms': round(1e3 * min(times), 3),
    'clips_per_s': round(args.batch / median, 1),
    # CPU seconds of all threads: steadier than wall time when the machine is shared.
    'cpu_median_ms': round(1e3 * statistics.median(cpu_times), 3),
    'cpu_threads': os.cpu_count(),
    'compile_s': round(compile_s, 2),
    'device': str(jax.devices()[0].device_kind),
    'cpu': platform.processor() or platform.machine(),
    'jax': jax.__version__,
  }
  print(
    f'make_views batch {args.batch}: {result["median_ms"]:.2f} ms median '
    f'({result["clips_per_s"]:.0f} clips/s) on {result["device"]}'
  )
  print(json.dumps(result))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == '__main__':
  main()
