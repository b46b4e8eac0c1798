"""Bidirectional multi-layer GRU encoder (the P&C / ISC family).

Each frame of a person is one step whose input is its V*C coordinates. Both
directions run over the valid frames only (`nn.RNN(seq_lengths=...)`): the
backward direction starts at frame n - 1, not at the padding.

For speed the input half of every gate (`W_i x + b_i`, for all frames and both
directions) is one matmul before the scan, so the scan body is a single
`[N, H] x [H, 3H]` matmul per step instead of six small ones (flax's GRUCell).

`dtype` is the compute dtype of the matmuls (bfloat16 for GPU/TPU); parameters
and the recurrent state stay float32, so rounding does not accumulate over
frames, and the outputs are float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from skeljax import skeleton
from skeljax.models import common


class ProjectedGRUCell(nn.RNNCellBase):
  """GRU cell whose input projections are computed outside the scan.

  Its per-step input is `[..., 2 * 3H]` (both directions' projections side by
  side); it reads the half selected by `part`. Gates, with `xr, xz, xn` that
  half:

      r = sigmoid(xr + W_hr h),  z = sigmoid(xz + W_hz h)
      n = tanh(xn + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h

  Attributes:
    hidden: H.
    part: 0 (forward direction's projections) or 1 (backward's).
    dtype: compute dtype of the hidden matmul; the carry stays float32.
  """

  hidden: int
  part: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry, inputs):
    """carry: [N, H], inputs: [N, 6H] -> (h' [N, H], h' [N, H])."""
    h3 = 3 * self.hidden
    xr, xz, xn = jnp.split(inputs[..., self.part * h3 : (self.part + 1) * h3], 3, axis=-1)
    hh = nn.Dense(
      h3,
      use_bias=False,
      kernel_init=nn.initializers.orthogonal(),
      dtype=self.dtype,
      name='hidden',
    )(carry)
    hr, hz, hn = jnp.split(hh, 3, axis=-1)
    b_hn = self.param('bias_hn', nn.initializers.zeros, (self.hidden,))
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    new = jnp.tanh(xn + r * (hn + b_hn))
    # The float32 carry makes h float32: the scan's carry type stays fixed.
    h = (1.0 - z) * new + z * carry
    return h, h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    del rng
    return jnp.zeros(input_shape[:-1] + (self.hidden,), jnp.float32)

  @property
  def num_feature_axes(self) -> int:
    return 1


class BiGRU(nn.Module):
  """Bidirectional GRU encoder over `[B, M, T, V, C]`.

  Attributes:
    layout: joint layout (V, C).
    hidden: hidden size per direction; D = 2 * hidden.
    layers: stacked bidirectional layers.
    dropout: dropout between layers.
    dtype: compute dtype of the matmuls, e.g. jnp.bfloat16 on GPU/TPU;
      parameters, the recurrent state and both outputs stay float32.
  """

  layout: skeleton.Layout
  hidden: int = 256
  layers: int = 2
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    """D of `pooled` (also D' of `temporal`)."""
    return 2 * self.hidden

  def temporal_frames(self, frames: int) -> int:
    """T' of `temporal` for input length `frames` (no downsampling)."""
    return frames

  @nn.compact
  def __call__(self, x, n, train: bool):
    """Encodes a batch.

    Args:
      x: float32 [B, M, T, V, C].
      n: int [B] valid frames.
      train: dropout on.

    Returns:
      pooled [B, 2H], the masked mean of the last layer's outputs over valid
      frames, then over persons (a mean uses every frame's context, where the
      final states would see each end of the clip most), and temporal
      [B, T, 2H], the per-frame outputs (zero on padded frames); both float32
      whatever `dtype`.
    """
    common.check_input('gru', x, n, self.layout)
    if self.layers < 1:
      raise ValueError(f'gru: layers must be >= 1, got {self.layers}')
    b, m, t, v, c = x.shape
    x, n = common.fold_persons(x.astype(jnp.float32), n)
    mask = common.frame_mask(n, t)
    h = x.reshape(x.shape[0], t, v * c) * mask[:, :, None]
    for i in range(self.layers):
      if i > 0:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
      proj = nn.Dense(6 * self.hidden, dtype=self.dtype, name=f'input{i + 1}')(h)  # [N, T, 6H]
      h = nn.Bidirectional(
        nn.RNN(ProjectedGRUCell(self.hidden, 0, self.dtype), name=f'forward{i + 1}'),
        nn.RNN(ProjectedGRUCell(self.hidden, 1, self.dtype), name=f'backward{i + 1}'),
        name=f'layer{i + 1}',
      )(proj, seq_lengths=n)
      h = h.astype(jnp.float32) * mask[:, :, None]
    pooled = common.masked_time_mean(h, mask)
    return common.person_mean(pooled, m), common.person_mean(h, m)
