"""Pieces every encoder shares: input checks, person folding and frame masks.

Every encoder takes `x: [B, M, T, V, C]` and `n: [B]` valid frames. Persons are
folded into the batch (`[B*M, ...]`), encoded independently with shared
weights, and averaged at the end, so the output cannot depend on person order.
"""

from __future__ import annotations

import jax.numpy as jnp

from skeljax import skeleton


def check_input(name: str, x, n, layout: skeleton.Layout, max_frames: int | None = None) -> None:
  """Raises a one-line ValueError when `x` / `n` do not fit the encoder.

  Args:
    name: encoder name for the message.
    x: [B, M, T, V, C] skeleton batch.
    n: [B] valid frame counts.
    layout: the joint layout the encoder was built for.
    max_frames: the longest T the encoder accepts (None: any).
  """
  if x.ndim != 5:
    raise ValueError(f'{name}: x must be [B, M, T, V, C], got shape {tuple(x.shape)}')
  b, _, t, v, c = x.shape
  if (v, c) != (layout.num_joints, layout.num_channels):
    raise ValueError(
      f'{name}: layout {layout.name} wants V={layout.num_joints}, C={layout.num_channels}; '
      f'got x of shape {tuple(x.shape)}'
    )
  if n.shape != (b,):
    raise ValueError(f'{name}: n must be [B]=[{b}], got shape {tuple(n.shape)}')
  if max_frames is not None and t > max_frames:
    raise ValueError(f'{name}: built for at most {max_frames} frames, got T={t}')


def fold_persons(x, n):
  """Folds persons into the batch.

  Args:
    x: [B, M, T, V, C].
    n: [B] valid frames.

  Returns:
    x: [B*M, T, V, C] (person-major within each sample) and n: [B*M].
  """
  b, m = x.shape[:2]
  return x.reshape((b * m,) + x.shape[2:]), jnp.repeat(n, m)


def person_mean(y, persons: int):
  """Averages per-person features `[B*M, ...] -> [B, ...]` over the M persons.

  Every person slot counts, absent (all-zero) ones included, as the ST-GCN
  family does: the peers' features are a plain mean over M.
  """
  return y.reshape((-1, persons) + y.shape[1:]).mean(axis=1)


def frame_mask(n, frames: int):
  """[N] valid counts -> float32 [N, frames] with 1 on frames t < n."""
  return (jnp.arange(frames)[None, :] < n[:, None]).astype(jnp.float32)


def strided_lengths(n, stride: int):
  """Valid length after a 'same'-padded stride: output t' is valid when stride*t' < n."""
  return (n + stride - 1) // stride


def masked_time_mean(y, mask):
  """Mean over valid frames.

  Args:
    y: [N, T, D] per-frame features.
    mask: [N, T] float, 1 on valid frames.

  Returns:
    [N, D]; a sequence without valid frames gives zeros instead of NaN.
  """
  total = jnp.einsum('ntd,nt->nd', y, mask)
  return total / jnp.maximum(mask.sum(axis=1), 1.0)[:, None]
