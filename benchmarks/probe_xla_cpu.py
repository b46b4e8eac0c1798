"""Probes of XLA:CPU behind docs/models.md's "where the rest of the gap lies".

    python -m benchmarks.probe_xla_cpu
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+eltwise python -m benchmarks.probe_xla_cpu

The second line keeps XLA's default YNN fusions, the racy reduce fusion included (skeljax
appends `-reduce` only when XLA_FLAGS does not name that flag); never train with it.

Prints, wall ms as medians of `--repeats` after one warm-up:
  * a column sum of an `[256, 13, 25, 256]` activation as `x.sum(axis=(0, 1, 2))` and as
    `ones @ x`, in GB/s read;
  * a `[83200, 768] @ [768, 256]` matmul in float32 and with bfloat16 operands and float32
    accumulation, in GFLOP/s;
  * the `stgcn` small encoder at batch 128, two persons, T = 50, train mode: forward, and
    forward + backward (parameter gradients).
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_temporal_conv import median_ms
from skeljax import skeleton  # importing skeljax sets the XLA flags it runs with
from skeljax.models import stgcn


def _median_s(fn, repeats: int) -> float:
  return median_ms(fn, repeats) / 1e3


def reductions(repeats: int) -> dict:
  x = jnp.asarray(np.random.default_rng(0).standard_normal((256, 13, 25, 256), np.float32))
  gb = x.size * 4 / 1e9
  col_sum = jax.jit(lambda x: x.sum(axis=(0, 1, 2)))
  ones_dot = jax.jit(lambda x: jnp.ones((1, x.size // 256)) @ x.reshape(-1, 256))
  return {
    'sum_gb_s': gb / _median_s(lambda: col_sum(x).block_until_ready(), repeats),
    'ones_dot_gb_s': gb / _median_s(lambda: ones_dot(x).block_until_ready(), repeats),
  }


def matmuls(repeats: int) -> dict:
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((83200, 768), np.float32))
  b = jnp.asarray(rng.standard_normal((768, 256), np.float32))
  a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
  flops = 2 * 83200 * 768 * 256
  f32 = jax.jit(jnp.matmul)
  bf16 = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
  return {
    'f32_gflop_s': flops / _median_s(lambda: f32(a, b).block_until_ready(), repeats) / 1e9,
    'bf16_in_f32_acc_gflop_s': flops
    / _median_s(lambda: bf16(a16, b16).block_until_ready(), repeats)
    / 1e9,
  }


def encoder(repeats: int, batch: int = 128) -> dict:
  model = stgcn.STGCN(skeleton.get_layout('ntu25'), widths=stgcn.WIDTHS['small'])
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, 2, 50, 25, 3), np.float32))
  n = jnp.full((batch,), 50, jnp.int32)
  variables = model.init(jax.random.key(0), x[:2], n[:2], train=False)

  def loss(params):
    (pooled, _), _ = model.apply(
      {**variables, 'params': params}, x, n, train=True, mutable=['batch_stats']
    )
    return pooled.sum()

  forward = jax.jit(loss)
  both = jax.jit(jax.grad(loss))
  p = variables['params']
  return {
    'forward_s': _median_s(lambda: forward(p).block_until_ready(), repeats),
    'forward_backward_s': _median_s(lambda: jax.block_until_ready(both(p)), repeats),
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args(argv)
  out = {
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'reductions': reductions(args.repeats),
    'matmuls': matmuls(args.repeats),
    'stgcn_small_encoder_b128': encoder(max(3, args.repeats // 2)),
  }
  print(json.dumps(out, indent=1))
  return out


if __name__ == '__main__':
  main()
