"""Skeleton encoders chosen by name, and the heads that sit on them.

    encoder = build_encoder(config.model, layout, frames=config.data.frames)
    variables = encoder.init({'params': key}, x, n, train=False)
    (pooled, temporal), updates = encoder.apply(
        variables, x, n, train=True, rngs={'dropout': key}, mutable=['batch_stats'])

Every encoder maps `x: [B, M, T, V, C]`, `n: [B]` to `pooled: [B, D]` and
`temporal: [B, T', D']`; `feature_dims` gives (D, D') without building params.
`model.dtype` is the encoder's compute dtype; its parameters, BatchNorm
statistics and outputs are float32 in either dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from skeljax import skeleton
from skeljax.models.gru import BiGRU
from skeljax.models.heads import InterpDecoder, LinearClassifier, ProjectionHead
from skeljax.models.stgcn import STGCN, WIDTHS
from skeljax.models.transformer import DEFAULT_PATCH, STTransformer

__all__ = [
  'BiGRU',
  'ENCODERS',
  'InterpDecoder',
  'LinearClassifier',
  'ProjectionHead',
  'STGCN',
  'STTransformer',
  'build_encoder',
  'compute_dtype',
  'feature_dims',
  'full_lengths',
]


def full_lengths(clips) -> jax.Array:
  """n: [B] int32 for clips [B, M, T, V, C] whose T frames are all valid (resampled views)."""
  return jnp.full((clips.shape[0],), clips.shape[2], jnp.int32)


def compute_dtype(model_cfg):
  """`model.dtype` as a jnp dtype; float32 for configs saved before the field existed."""
  return jnp.dtype(model_cfg.get('dtype', 'float32'))


def _stgcn(cfg, layout, frames):
  del frames  # fully convolutional in time
  if cfg.size not in WIDTHS:
    raise ValueError(f'stgcn: unknown size {cfg.size!r}; choose one of {sorted(WIDTHS)}')
  return STGCN(
    layout,
    widths=WIDTHS[cfg.size],
    adjacency=cfg.adjacency,
    edge_importance=cfg.edge_importance,
    dropout=cfg.dropout,
    dtype=compute_dtype(cfg),
  )


def _transformer(cfg, layout, frames):
  return STTransformer(
    layout,
    frames=frames,
    depth=cfg.depth,
    width=cfg.width,
    heads=cfg.heads,
    patch=cfg.get('patch', DEFAULT_PATCH),
    dropout=cfg.dropout,
    dtype=compute_dtype(cfg),
  )


def _gru(cfg, layout, frames):
  del frames
  return BiGRU(
    layout,
    hidden=cfg.gru_hidden,
    layers=cfg.gru_layers,
    dropout=cfg.dropout,
    dtype=compute_dtype(cfg),
  )


ENCODERS: dict[str, Callable[..., nn.Module]] = {
  'stgcn': _stgcn,
  'transformer': _transformer,
  'gru': _gru,
}


def build_encoder(model_cfg, layout: skeleton.Layout, frames: int) -> nn.Module:
  """Builds the encoder named `model_cfg.name`.

  Args:
    model_cfg: the `config.model` section (see skeljax/config.py).
    layout: joint layout of the data.
    frames: T, the clip length the encoder sees.

  Returns:
    A linen module with `__call__(x, n, train)`, `feature_dim` and
    `temporal_frames(frames)`.
  """
  try:
    make = ENCODERS[model_cfg.name]
  except KeyError:
    raise ValueError(
      f'unknown encoder {model_cfg.name!r}; choose one of {", ".join(sorted(ENCODERS))}'
    ) from None
  return make(model_cfg, layout, frames)


def feature_dims(model_cfg, layout: skeleton.Layout, frames: int) -> tuple[int, int]:
  """(D, D') of the encoder's pooled and temporal outputs."""
  enc = build_encoder(model_cfg, layout, frames)
  return enc.feature_dim, enc.feature_dim
