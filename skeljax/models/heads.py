"""Heads on top of an encoder: projection MLP, interpolation decoders, classifier.

A head's `dtype` is its compute dtype (bfloat16 for GPU/TPU); its parameters
and its output are float32 in either dtype, so the losses are float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from skeljax.models.stgcn import TemporalConv


class ProjectionHead(nn.Module):
  """MoCo v2 projection MLP: Dense -> ReLU -> Dense.

  Attributes:
    hidden: hidden width; 0 means the input width.
    out: output feature size.
    dtype: compute dtype; the output is float32.
  """

  hidden: int
  out: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """x: [B, D] -> float32 [B, out]."""
    hidden = self.hidden or x.shape[-1]
    y = nn.relu(nn.Dense(hidden, dtype=self.dtype, name='hidden')(x))
    return nn.Dense(self.out, dtype=self.dtype, name='out')(y).astype(jnp.float32)


class LinearClassifier(nn.Module):
  """One Dense layer: [B, D] -> [B, num_classes] logits."""

  num_classes: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.num_classes, name='fc')(x)


def interpolate_time(y, frames: int):
  """Linear interpolation along time with the end frames aligned.

  Args:
    y: [B, T', D].
    frames: T.

  Returns:
    [B, T, D]; output frame t samples position t (T' - 1) / (T - 1) of `y`,
    so the first and last frames coincide whatever the encoder's stride.
  """
  tp = y.shape[1]
  if tp == frames:
    return y
  if tp == 1 or frames == 1:
    return jnp.repeat(y[:, :1], frames, axis=1)
  pos = jnp.arange(frames, dtype=jnp.float32) * ((tp - 1) / (frames - 1))
  lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, tp - 2)
  frac = (pos - lo)[None, :, None]
  return y[:, lo] * (1.0 - frac) + y[:, lo + 1] * frac


class InterpDecoder(nn.Module):
  """Reconstructs a clip from an encoder's features.

  Per-joint features `[B*M, T', V, D']` (what ST-GCN and the transformer expose)
  are upsampled to T frames by linear interpolation in time, and a small MLP
  shared by all joints (with a learned joint embedding) maps each joint's
  feature at each frame to its C channels. Reading per-joint features means the
  joint-pooled feature the contrastive loss uses need not carry the whole pose.
  Joint-pooled features `[B, T', D']` (the GRU's) go through a per-frame MLP that
  outputs all persons' joints at once.

  Attributes:
    frames: T.
    persons: M.
    num_joints: V.
    channels: C.
    width: hidden width of the MLP.
    dtype: compute dtype; the reconstruction is float32.
  """

  frames: int
  persons: int
  num_joints: int
  channels: int
  width: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features):
    """features: [B*M, T', V, D'] or [B, T', D'] -> float32 reconstruction [B, M, T, V, C]."""
    t, m, v, c = self.frames, self.persons, self.num_joints, self.channels
    if features.ndim == 4:
      nm, tp, fv, d = features.shape
      if fv != v or nm % m:
        raise ValueError(
          f"InterpDecoder: per-joint features must be [B*{m}, T', {v}, D], got {features.shape}"
        )
      y = interpolate_time(features.reshape(nm, tp, v * d), t).reshape(nm, t, v, d)
      y = nn.Dense(self.width, dtype=self.dtype, name='hidden')(y)
      embed = self.param('joint_embed', nn.initializers.normal(0.02), (v, self.width))
      y = y + embed.astype(y.dtype)  # a float32 table would promote y
      # Zero init: the decoder starts at a zero residual, i.e. at the fill it refines.
      out = nn.Dense(c, kernel_init=nn.initializers.zeros, dtype=self.dtype, name='out')
      y = out(nn.relu(y)).astype(jnp.float32)  # [B*M, T, V, C]
      return y.reshape(nm // m, m, t, v, c)
    if features.ndim != 3:
      raise ValueError(
        f"InterpDecoder: features must be [B*M, T', V, D'] or [B, T', D'], got {features.shape}"
      )
    y = interpolate_time(features, t)
    y = nn.relu(nn.Dense(self.width, dtype=self.dtype, name='hidden')(y))
    y = nn.Dense(m * v * c, dtype=self.dtype, name='out')(y).astype(jnp.float32)  # [B, T, M*V*C]
    y = y.reshape(y.shape[0], t, m, v, c)
    return y.transpose(0, 2, 1, 3, 4)


class FullResDecoder(nn.Module):
  """Reconstructs a clip from deep and full-resolution per-joint features (U-Net style).

  The interpolation decoder of mcc.decoder_tap='full'. The deep features
  `[B*M, T', V, D']` (the encoder's last block: the action's context, at a stride that
  has lost single frames) are upsampled to T frames by linear interpolation in time and
  concatenated with the full-resolution ones `[B*M, T, V, D0]` (ST-GCN's 'joints_full':
  the timing), projected to `width`, mixed over neighbouring frames by one temporal conv
  per joint (`kernel` taps, 'same' zero padding), and mapped to each joint's C channels
  by an MLP shared by all joints with a learned joint embedding.

  Attributes:
    frames: T.
    persons: M.
    num_joints: V.
    channels: C.
    width: hidden width.
    kernel: temporal conv taps (odd).
    dtype: compute dtype; the reconstruction is float32.
  """

  frames: int
  persons: int
  num_joints: int
  channels: int
  width: int
  kernel: int = 5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, deep, full):
    """deep: [B*M, T', V, D'], full: [B*M, T, V, D0] -> float32 reconstruction [B, M, T, V, C]."""
    t, m, v, c = self.frames, self.persons, self.num_joints, self.channels
    nm, tp, fv, d = deep.shape
    if fv != v or nm % m or full.shape[:3] != (nm, t, v):
      raise ValueError(
        f"FullResDecoder: features must be [B*{m}, T', {v}, D'] and [B*{m}, {t}, {v}, D0], "
        f'got {deep.shape} and {full.shape}'
      )
    up = interpolate_time(deep.reshape(nm, tp, v * d), t).reshape(nm, t, v, d)
    y = jnp.concatenate([up, full.astype(up.dtype)], axis=-1)
    y = nn.Dense(self.width, dtype=self.dtype, name='skip')(y)
    y = TemporalConv(self.width, kernel=self.kernel, dtype=self.dtype, name='tcn')(y)
    embed = self.param('joint_embed', nn.initializers.normal(0.02), (v, self.width))
    y = nn.relu(y + embed.astype(y.dtype))  # a float32 table would promote y
    y = nn.relu(nn.Dense(self.width, dtype=self.dtype, name='hidden')(y))
    # Zero init: the decoder starts at a zero residual, i.e. at the fill it refines.
    out = nn.Dense(c, kernel_init=nn.initializers.zeros, dtype=self.dtype, name='out')
    y = out(y).astype(jnp.float32)  # [B*M, T, V, C]
    return y.reshape(nm // m, m, t, v, c)
