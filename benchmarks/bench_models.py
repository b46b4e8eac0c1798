"""Encoder throughput on this machine: forward+backward samples/s, memory, FLOPs.

    python benchmarks/bench_models.py                      # stgcn, transformer, gru
    python benchmarks/bench_models.py --models stgcn,stgcn-base --batch 64 --repeats 5
    python benchmarks/bench_models.py --impl reference     # ST-GCN with lax.conv etc.

Each model runs in its own subprocess so its peak RSS is its own. A step is
`value_and_grad` of a scalar of (pooled, temporal) in train mode, at batch B
(two persons per sample), T=50 frames, the ntu25 layout. FLOPs come from XLA's
cost analysis of the compiled step; the peak is the median of jitted
2048x2048 fp32 matmuls measured in the same run. Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

MODELS = ('stgcn', 'stgcn-base', 'transformer', 'gru')


def _rss_peak_mb() -> float:
  """Peak resident memory of this process (VmHWM; ru_maxrss where /proc is absent)."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
  """Median fp32 FLOP/s of a jitted size x size matmul."""
  import jax
  import numpy as np

  a = jax.random.normal(jax.random.key(0), (size, size))
  f = jax.jit(lambda a, b: a @ b)
  f(a, a).block_until_ready()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a, a).block_until_ready()
    times.append(time.perf_counter() - t0)
  return 2 * size**3 / float(np.median(times))


def _cost_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list | tuple) else cost
  return float(cost.get('flops', float('nan')))


def bench_one(model: str, batch: int, frames: int, persons: int, repeats: int, impl: str) -> dict:
  """Times one encoder's train step; returns a result row."""
  import functools

  import jax
  import jax.numpy as jnp
  import numpy as np

  from skeljax import config, skeleton
  from skeljax.models import STGCN, WIDTHS, build_encoder

  layout = skeleton.get_layout('ntu25')
  cfg = config.base_config().model
  cfg.name = model.split('-')[0]
  if model == 'stgcn-base':
    cfg.size = 'base'
  enc = build_encoder(cfg, layout, frames)
  if isinstance(enc, STGCN):
    enc = STGCN(layout, widths=WIDTHS[cfg.size], impl=impl)
  x = jax.random.normal(jax.random.key(0), (batch, persons, frames, 25, 3))
  n = jnp.full((batch,), frames, jnp.int32)
  variables = jax.jit(functools.partial(enc.init, train=False))(jax.random.key(1), x, n)
  params = variables['params']
  state = {k: v for k, v in variables.items() if k != 'params'}
  num_params = sum(int(p.size) for p in jax.tree.leaves(params))

  def loss(params, state, x, n, key):
    (pooled, temporal), upd = enc.apply(
      {'params': params, **state}, x, n, True, rngs={'dropout': key}, mutable=list(state)
    )
    return (pooled**2).mean() + (temporal**2).mean(), upd

  def forward(params, state, x, n):
    return enc.apply({'params': params, **state}, x, n, False)

  step = jax.jit(jax.value_and_grad(loss, has_aux=True))
  key = jax.random.key(2)
  t0 = time.perf_counter()
  compiled = step.lower(params, state, x, n, key).compile()
  compile_s = time.perf_counter() - t0
  step_flops = _cost_flops(compiled)
  fwd_flops = _cost_flops(jax.jit(forward).lower(params, state, x, n).compile())
  jax.block_until_ready(compiled(params, state, x, n, key))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, state, x, n, key))
    times.append(time.perf_counter() - t0)
  sec = float(np.median(times))
  return dict(
    model=model,
    impl=impl if cfg.name == 'stgcn' else '-',
    params=num_params,
    batch=batch,
    step_s=sec,
    samples_per_s=batch / sec,
    fwd_gflop_per_sample=fwd_flops / batch / 1e9,
    step_gflop_per_sample=step_flops / batch / 1e9,
    gflop_per_s=step_flops / sec / 1e9,
    compile_s=compile_s,
    peak_rss_mb=_rss_peak_mb(),
  )


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--models', default='stgcn,transformer,gru', help=f'comma list of {MODELS}')
  ap.add_argument('--batch', type=int, default=128)
  ap.add_argument('--frames', type=int, default=50)
  ap.add_argument('--persons', type=int, default=2)
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--impl', default='fast', choices=('fast', 'reference'), help='ST-GCN convs')
  ap.add_argument('--json', default='', help='also write the results to this file')
  ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  models = [m for m in args.models.split(',') if m]
  bad = [m for m in models if m not in MODELS]
  if bad:
    raise SystemExit(f'unknown model(s) {bad}; choose from {", ".join(MODELS)}')

  if args.child:  # one model, JSON on the last stdout line
    row = bench_one(models[0], args.batch, args.frames, args.persons, args.repeats, args.impl)
    print(json.dumps(row))
    return

  peak = matmul_peak()
  rows = []
  for m in models:
    cmd = [
      sys.executable,
      __file__,
      '--child',
      '--models',
      m,
      '--batch',
      str(args.batch),
      '--frames',
      str(args.frames),
      '--persons',
      str(args.persons),
      '--repeats',
      str(args.repeats),
      '--impl',
      args.impl,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:  # e.g. -9 when the kernel's OOM killer ends it; keep the other rows
      why = out.stderr.strip().splitlines()[-1:] or ['no stderr (killed: out of memory?)']
      print(f'{m} failed with exit code {out.returncode}: {why[0]}', file=sys.stderr, flush=True)
      continue
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row['peak_fraction'] = row['gflop_per_s'] * 1e9 / peak
    rows.append(row)
    print(f'done {m}', file=sys.stderr, flush=True)

  print(f'fp32 matmul peak (2048^2, median): {peak / 1e9:.1f} GFLOP/s')
  head = (
    'model',
    'impl',
    'params',
    'samples/s',
    'step s',
    'fwd GF/smp',
    'step GF/smp',
    'GFLOP/s',
    '% peak',
    'RSS MB',
  )
  print(' | '.join(f'{h:>11s}' for h in head))
  for r in rows:
    vals = (
      r['model'],
      r['impl'],
      f'{r["params"]:,}',
      f'{r["samples_per_s"]:.1f}',
      f'{r["step_s"]:.2f}',
      f'{r["fwd_gflop_per_sample"]:.3f}',
      f'{r["step_gflop_per_sample"]:.3f}',
      f'{r["gflop_per_s"]:.1f}',
      f'{100 * r["peak_fraction"]:.0f}',
      f'{r["peak_rss_mb"]:.0f}',
    )
    print(' | '.join(f'{v:>11s}' for v in vals))
  result = dict(peak_gflop_per_s=peak / 1e9, args=vars(args), rows=rows)
  print(json.dumps(result))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
