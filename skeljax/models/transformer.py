"""Spatio-temporal transformer over joint tokens.

Each person's clip becomes a grid of tokens `[T / patch, V, width]`: one token
per joint and (patch of) frame(s). A block is pre-LN

    x += SpatialAttention(LN(x))   # over the V joints of one frame
    x += TemporalAttention(LN(x))  # over the frames of one joint; padding masked
    x += MLP(LN(x))

Factorising attention keeps its cost at T*V*(T + V) instead of (T*V)^2; at the
default width the Dense layers, not the attention, dominate (docs/models.md).

`dtype` is the compute dtype (bfloat16 for GPU/TPU): parameters stay float32,
LayerNorm statistics and the attention softmax are float32, and the outputs
are float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from skeljax import skeleton
from skeljax.models import common

_EMBED_INIT = nn.initializers.normal(0.02)
# Frames per temporal token. Attention over tiny sequences is a batch of small
# matmuls that XLA's CPU backend runs slowly; 4-frame tokens (T' = 13 at T = 50,
# ST-GCN's temporal resolution) made a train step 3.4x faster than 1-frame tokens.
DEFAULT_PATCH = 4


class AxisAttention(nn.Module):
  """Multi-head self-attention along one axis of `[N, T, V, D]` tokens.

  Attending in place (an einsum over the chosen axis) avoids transposing the
  token grid between the spatial and temporal steps.

  Attributes:
    heads: attention heads (divide D).
    axis: 1 = over frames (temporal), 2 = over joints (spatial).
    dropout: dropout on the attention weights.
    dtype: compute dtype (parameters stay float32).
  """

  heads: int
  axis: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, key_mask, train: bool):
    """x: [N, T, V, D], key_mask: bool [N, T] or None -> [N, T, V, D]."""
    d = x.shape[-1]
    dh = d // self.heads
    # [N, T, V, 3, H, dh]
    qkv = nn.DenseGeneral((3, self.heads, dh), dtype=self.dtype, name='qkv')(x)
    q, k, v = qkv[..., 0, :, :] * dh**-0.5, qkv[..., 1, :, :], qkv[..., 2, :, :]
    if self.axis == 2:
      logits = jnp.einsum('ntqhd,ntkhd->nthqk', q, k)
    else:
      logits = jnp.einsum('nqvhd,nkvhd->nvhqk', q, k)
    if key_mask is not None:
      # [N, 1 (joints), 1 (heads), 1 (queries), T (keys)]: padded frames get no weight.
      logits = jnp.where(key_mask[:, None, None, None, :], logits, -1e9)
    # Softmax in float32: bfloat16's 8-bit mantissa loses small weights to the max.
    w = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    w = nn.Dropout(self.dropout, deterministic=not train)(w)
    if self.axis == 2:
      out = jnp.einsum('nthqk,ntkhd->ntqhd', w, v)
    else:
      out = jnp.einsum('nvhqk,nkvhd->nqvhd', w, v)
    return nn.DenseGeneral(d, axis=(-2, -1), dtype=self.dtype, name='out')(out)


class STBlock(nn.Module):
  """One pre-LN spatial + temporal attention block with an MLP.

  The MLP uses ReLU: GELU's tanh made the MLP 2.3x slower on CPU.

  Attributes:
    heads: attention heads.
    mlp_ratio: MLP hidden width / token width.
    dropout: attention and residual dropout rate.
    dtype: compute dtype (LayerNorm statistics stay float32).
  """

  heads: int
  mlp_ratio: int = 4
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, key_mask, train: bool):
    """x: [N, T, V, D], key_mask: bool [N, T] (valid frames) -> [N, T, V, D]."""
    d, dt = x.shape[-1], self.dtype
    drop = nn.Dropout(self.dropout, deterministic=not train)
    y = nn.LayerNorm(dtype=dt, name='ln_spatial')(x)
    att = AxisAttention(self.heads, 2, self.dropout, dtype=dt, name='spatial')
    x = x + drop(att(y, None, train))
    y = nn.LayerNorm(dtype=dt, name='ln_temporal')(x)
    att = AxisAttention(self.heads, 1, self.dropout, dtype=dt, name='temporal')
    x = x + drop(att(y, key_mask, train))
    y = nn.Dense(self.mlp_ratio * d, dtype=dt, name='mlp_in')(
      nn.LayerNorm(dtype=dt, name='ln_mlp')(x)
    )
    y = nn.Dense(d, dtype=dt, name='mlp_out')(drop(nn.relu(y)))
    return x + drop(y)


class STTransformer(nn.Module):
  """Spatio-temporal transformer encoder over `[B, M, T, V, C]`.

  Attributes:
    layout: joint layout (V, C).
    frames: the longest T accepted (length of the temporal position table).
    depth: number of blocks.
    width: token width D.
    heads: attention heads (must divide width).
    patch: frames per temporal token; T' = ceil(T / patch).
    dropout: attention and residual dropout rate.
    dtype: compute dtype, e.g. jnp.bfloat16 on GPU/TPU; parameters and both
      outputs stay float32.
  """

  layout: skeleton.Layout
  frames: int
  depth: int = 4
  width: int = 64
  heads: int = 4
  patch: int = DEFAULT_PATCH
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    """D of `pooled` (also D' of `temporal`)."""
    return self.width

  def temporal_frames(self, frames: int) -> int:
    """T' of `temporal` for input length `frames`."""
    return -(-frames // self.patch)

  @nn.compact
  def __call__(self, x, n, train: bool):
    """Encodes a batch.

    Args:
      x: float32 [B, M, T, V, C].
      n: int [B] valid frames.
      train: dropout on.

    Returns:
      pooled [B, width] (masked mean over valid tokens' frames, then persons)
      and temporal [B, T', width] (mean over joints, then persons; zero on
      padded frames), T' = ceil(T / patch); both float32 whatever `dtype`.
    """
    common.check_input('transformer', x, n, self.layout, max_frames=self.frames)
    if self.width % self.heads:
      raise ValueError(f'transformer: width {self.width} is not divisible by heads {self.heads}')
    b, m, t, v, c = x.shape
    p = self.patch
    x, n = common.fold_persons(x.astype(jnp.float32), n)
    x = x * common.frame_mask(n, t)[:, :, None, None]
    tp = -(-t // p)
    # Patch: frames (t0..t0+p-1) of one joint form one token of p*C inputs.
    x = jnp.pad(x, ((0, 0), (0, tp * p - t), (0, 0), (0, 0)))
    x = x.reshape(x.shape[0], tp, p, v, c).transpose(0, 1, 3, 2, 4).reshape(-1, tp, v, p * c)
    n = common.strided_lengths(n, p)
    mask = common.frame_mask(n, tp)
    dt = self.dtype
    x = nn.Dense(self.width, dtype=dt, name='embed')(x)
    # Position tables are float32 parameters; added in float32 they would promote x.
    x = x + self.param('pos_joint', _EMBED_INIT, (v, self.width)).astype(dt)
    pos_time = self.param('pos_time', _EMBED_INIT, (-(-self.frames // p), self.width))
    x = x + pos_time[:tp, None].astype(dt)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    for i in range(self.depth):
      block = STBlock(self.heads, dropout=self.dropout, dtype=dt, name=f'block{i + 1}')
      x = block(x, mask > 0, train)
    # The last LayerNorm emits float32: pooling and every loss downstream are float32.
    x = nn.LayerNorm(dtype=jnp.float32, name='ln_out')(x)
    # Per-joint features [B*M, T', V, D] for decoders that read them (interpolation).
    self.sow('intermediates', 'joints', x)
    per_frame = x.mean(axis=2) * mask[:, :, None]  # [N, T', D]
    pooled = common.masked_time_mean(per_frame, mask)
    return common.person_mean(pooled, m), common.person_mean(per_frame, m)
