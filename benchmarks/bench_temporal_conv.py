"""ST-GCN's temporal convolution per layer: formulations side by side, with torch's Conv2d.

    python -m benchmarks.bench_temporal_conv                 # the layer shapes of `stgcn` small
    python -m benchmarks.bench_temporal_conv --shapes 256,13,256 --repeats 4

Each shape is (N, T, C) with C -> C channels, kernel 9, stride 1, V = 25; N = 256
is batch 128 with two persons. Rows: the stacked-taps matmul formulations that
`TemporalConv` used before (3 or 9 taps per matmul), `lax.conv` with autodiff
(`impl='reference'`), the current `impl='fast'` (XLA's convolution forward and
input gradient, the filter gradient as one matmul per tap), and torch's
`Conv2d((9, 1))` (oneDNN) when torch is installed. Wall ms, median of
`--repeats` after one warm-up; forward, and forward + backward (input and
kernel gradients). Last, the GFLOP/s of block 10's matmul shape in jnp, numpy and
torch. The results are in docs/models.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from skeljax.models import stgcn  # importing skeljax sets the XLA flags it runs with

SMALL_SHAPES = ((256, 50, 16), (256, 25, 32), (256, 13, 64), (256, 13, 256))


def median_ms(fn, repeats: int) -> float:
  """Median wall ms of `fn()` over `repeats` calls after one warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times))


def stacked_taps(x, w, group: int):
  """The former fast path: `group` shifted slices stacked along channels per matmul."""
  kt, cin, cout = w.shape
  pad = kt // 2
  xp = jnp.pad(x, ((0, 0), (pad, pad), (0, 0), (0, 0)))
  t = x.shape[1]
  out = 0.0
  for i0 in range(0, kt, group):
    taps = range(i0, min(kt, i0 + group))
    cols = jnp.concatenate([xp[:, i : i + t] for i in taps], axis=-1)
    out = out + cols @ w[i0 : i0 + len(taps)].reshape(len(taps) * cin, cout)
  return out


def jax_rows(x, w, repeats: int) -> dict:
  forms = {
    'taps stacked 3 (old fast)': functools.partial(stacked_taps, group=3),
    'taps stacked 9': functools.partial(stacked_taps, group=9),
    'lax.conv + autodiff (reference)': lambda x, w: stgcn._temporal_conv(x, w, 1),
    'fast': lambda x, w: stgcn._fast_temporal_conv(x, w, 1),
  }
  out = {}
  for name, conv in forms.items():
    loss = lambda w, x, conv=conv: jnp.sum(conv(x, w) ** 2)  # noqa: E731
    fwd = jax.jit(lambda w, x, conv=conv: conv(x, w))
    both = jax.jit(jax.grad(loss, argnums=(0, 1)))
    out[name] = {
      'forward_ms': median_ms(lambda f=fwd: f(w, x).block_until_ready(), repeats),
      'forward_backward_ms': median_ms(lambda f=both: jax.block_until_ready(f(w, x)), repeats),
    }
  return out


def torch_row(x: np.ndarray, w: np.ndarray, repeats: int) -> dict | None:
  try:
    import torch
  except ImportError:
    return None
  torch.set_num_threads(os.cpu_count() or 1)
  cin, cout = w.shape[1], w.shape[2]
  conv = torch.nn.Conv2d(cin, cout, (9, 1), padding=(4, 0))
  xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)

  def forward():
    with torch.no_grad():
      conv(xt)

  def forward_backward():
    conv.zero_grad()
    xt.grad = None
    (conv(xt) ** 2).sum().backward()

  return {
    'forward_ms': median_ms(forward, repeats),
    'forward_backward_ms': median_ms(forward_backward, repeats),
  }


def gemm_rates(repeats: int, m: int = 83200, k: int = 768, n: int = 256) -> dict:
  """GFLOP/s of block 10's matmul shape (`[N*T*V, 3*256] @ [3*256, 256]`) in jnp, numpy, torch.

  Run under other `XLA_FLAGS` (e.g. `--xla_cpu_experimental_onednn_fusion_type=dot`) to
  compare XLA:CPU's libraries.
  """
  rng = np.random.default_rng(0)
  a = rng.standard_normal((m, k)).astype(np.float32)
  b = rng.standard_normal((k, n)).astype(np.float32)
  flops = 2 * m * k * n
  aj, bj = jnp.asarray(a), jnp.asarray(b)
  mm = jax.jit(jnp.matmul)
  rates = {
    'jnp': flops / median_ms(lambda: mm(aj, bj).block_until_ready(), repeats) / 1e6,
    'numpy': flops / median_ms(lambda: a @ b, repeats) / 1e6,
  }
  try:
    import torch
  except ImportError:
    return rates
  at, bt = torch.from_numpy(a), torch.from_numpy(b)
  rates['torch'] = flops / median_ms(lambda: at @ bt, repeats) / 1e6
  return rates


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--shapes', default='', help='N,T,C;N,T,C... (default: stgcn small)')
  parser.add_argument('--repeats', type=int, default=4)
  args = parser.parse_args(argv)
  shapes = (
    [tuple(int(v) for v in s.split(',')) for s in args.shapes.split(';')]
    if args.shapes
    else SMALL_SHAPES
  )
  rng = np.random.default_rng(0)
  results = []
  for n, t, c in shapes:
    x = rng.standard_normal((n, t, 25, c)).astype(np.float32)
    w = (rng.standard_normal((9, c, c)) * 0.05).astype(np.float32)
    rows = jax_rows(jnp.asarray(x), jnp.asarray(w), args.repeats)
    torch_result = torch_row(x, w, args.repeats)
    if torch_result is not None:
      rows['torch Conv2d((9, 1))'] = torch_result
    flops = 2 * n * t * 25 * 9 * c * c
    for name, r in rows.items():
      print(
        f'N={n} T={t} C={c}  {name:32s} fwd {r["forward_ms"]:8.1f} ms'
        f'  fwd+bwd {r["forward_backward_ms"]:8.1f} ms'
        f'  ({3 * flops / r["forward_backward_ms"] / 1e6:.0f} GFLOP/s fwd+bwd)',
        flush=True,
      )
    results.append({'shape': [n, t, 25, c], 'kernel': 9, 'rows': rows})
  gemm = gemm_rates(args.repeats)
  print('GEMM 83200x768 @ 768x256, GFLOP/s: ' + ', '.join(f'{k} {v:.0f}' for k, v in gemm.items()))
  device = jax.devices()[0].device_kind
  summary = {'benchmark': 'temporal_conv', 'device': device, 'results': results, 'gemm': gemm}
  print(json.dumps(summary))
  return results


if __name__ == '__main__':
  main()
