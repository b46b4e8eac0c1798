"""Skeleton encoders chosen by name, and the heads that sit on them.

    encoder = build_encoder(config.model, layout, config.data.frames, config.data.stream)
    variables = encoder.init({'params': key}, x, n, train=False)
    (pooled, temporal), updates = encoder.apply(
        variables, x, n, train=True, rngs={'dropout': key}, mutable=['batch_stats'])

Every encoder maps `x: [B, M, T, V, C]`, `n: [B]` to `pooled: [B, D]` and
`temporal: [B, T', D']`; `feature_dims` gives (D, D') without building params.
`model.dtype` is the encoder's compute dtype; its parameters, BatchNorm
statistics and outputs are float32 in either dtype. A 'motion' or 'bone' `stream`
wraps the encoder in `StreamInput`, which converts its input first
(transforms.to_stream) and keeps the encoder's variable tree as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from skeljax import skeleton, transforms
from skeljax.models.gru import BiGRU
from skeljax.models.heads import FullResDecoder, InterpDecoder, LinearClassifier, ProjectionHead
from skeljax.models.stgcn import STGCN, WIDTHS
from skeljax.models.transformer import DEFAULT_PATCH, STTransformer

__all__ = [
  'BiGRU',
  'ENCODERS',
  'FULL_RESOLUTION',
  'FullResDecoder',
  'InterpDecoder',
  'LinearClassifier',
  'ProjectionHead',
  'STGCN',
  'STTransformer',
  'StreamInput',
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
# The encoders that sow per-joint features at the full frame rate ('joints_full'), which
# the full-resolution interpolation decoder reads (mcc.decoder_tap='full').
FULL_RESOLUTION = ('stgcn',)


class StreamInput(nn.Module):
  """An encoder that sees the motion or bone stream of its input (transforms.to_stream).

  The encoder shares this module's scope (`nn.share_scope`), so its params, BatchNorm
  statistics and 'intermediates' (the per-joint features pretraining decodes) sit where
  the bare encoder puts them: a motion encoder's variable tree is a joint encoder's.
  """

  encoder: nn.Module
  layout: skeleton.Layout
  stream: str

  def setup(self):
    nn.share_scope(self, self.encoder)

  def __call__(self, x, n, train: bool):
    """x: [B, M, T, V, C], n: [B] -> the encoder's (pooled [B, D], temporal [B, T', D'])."""
    return self.encoder(transforms.to_stream(x, self.layout, self.stream, n), n, train=train)

  @property
  def feature_dim(self) -> int:
    return self.encoder.feature_dim

  def temporal_frames(self, frames: int) -> int:
    return self.encoder.temporal_frames(frames)


def build_encoder(
  model_cfg, layout: skeleton.Layout, frames: int, stream: str = 'joint'
) -> nn.Module:
  """Builds the encoder named `model_cfg.name`, fed the input stream `stream`.

  Args:
    model_cfg: the `config.model` section (see skeljax/config.py).
    layout: joint layout of the data.
    frames: T, the clip length the encoder sees.
    stream: `config.data.stream`: 'joint' builds the bare encoder; 'motion' or 'bone'
      wraps it in StreamInput (same variables, converted input).

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
  if stream not in transforms.STREAMS:
    raise ValueError(f'unknown stream {stream!r}; choose one of {", ".join(transforms.STREAMS)}')
  encoder = make(model_cfg, layout, frames)
  return encoder if stream == 'joint' else StreamInput(encoder, layout, stream)


def feature_dims(model_cfg, layout: skeleton.Layout, frames: int) -> tuple[int, int]:
  """(D, D') of the encoder's pooled and temporal outputs."""
  enc = build_encoder(model_cfg, layout, frames)
  return enc.feature_dim, enc.feature_dim
