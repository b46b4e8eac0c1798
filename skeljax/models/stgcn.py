"""ST-GCN (Yan et al., 2018) in channels-last layout, tuned for XLA on CPU.

Activations are `[N, T, V, C]` (N = batch x persons). Each of the ten blocks is

    graph conv -> BN -> ReLU -> temporal conv (kernel 9, stride 1 or 2) -> BN
    -> dropout -> + residual -> ReLU

The graph conv and temporal conv have two formulations over the same
parameters: a plain `reference` one (a per-partition loop, `lax.conv`) kept for
tests, and the `fast` one used by default (see `docs/models.md` for timings):

  * temporal conv: XLA's convolution forward and input gradient, with the
    filter gradient written out as one matmul per tap (a custom VJP), because
    XLA:CPU's filter-gradient convolution is 5-10x slower than that;
  * graph conv: one matmul for the 1x1 conv and one einsum over the joints,
    ordered so the V x V aggregation runs on the narrower side.

Padded frames (t >= n) are zeroed at the input and after every ReLU, so a
valid frame sees zeros past the sequence end exactly as if the sequence were
cut there, and BatchNorm statistics are taken over valid frames only.

`dtype` is the compute dtype (bfloat16 for GPU/TPU): parameters stay float32
and are cast where they are used, BatchNorm statistics are float32, and the
outputs are float32, so every loss downstream is.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from skeljax import skeleton
from skeljax.models import common

WIDTHS = {
  # The original ST-GCN.
  'base': (64, 64, 64, 64, 128, 128, 128, 256, 256, 256),
  # SkeletonCLR/AimCLR pretraining size: hidden 16 (x4), 32 (x3), 64 (x2), then 256.
  'small': (16, 16, 16, 16, 32, 32, 32, 64, 64, 256),
}
STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
TEMPORAL_KERNEL = 9
# PyTorch's BatchNorm momentum 0.1 is flax's 0.9 (weight of the old average).
_BN = dict(momentum=0.9, epsilon=1e-5)


def _bn(train: bool, name: str | None = None, **kw) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, name=name, **_BN, **kw)


class GraphConv(nn.Module):
  """Spatial graph conv: `out_i = sum_k sum_j A[k, j, i] (x_j W_k + b_k)`.

  Attributes:
    features: output channels.
    impl: 'fast' or 'reference' (same parameters, same result).
    dtype: compute dtype (parameters stay float32).
  """

  features: int
  impl: str = 'fast'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, a):
    """x: [N, T, V, Cin], a: [K, V, V] (`a[k, j, i]` = message j -> i) -> [N, T, V, features]."""
    k, cin, cout = a.shape[0], x.shape[-1], self.features
    # Fan-in of the 1x1 conv is Cin (the partitions are K separate outputs).
    w = self.param(
      'kernel',
      nn.initializers.variance_scaling(
        1.0, 'fan_in', 'truncated_normal', in_axis=0, out_axis=(1, 2)
      ),
      (cin, k, cout),
    )
    b = self.param('bias', nn.initializers.zeros, (k, cout))
    x, w, b, a = nn.dtypes.promote_dtype(x, w, b, a, dtype=self.dtype)
    if self.impl == 'reference':
      out = 0.0
      for p in range(k):
        y = x @ w[:, p] + b[p]
        out = out + jnp.einsum('ntjc,ji->ntic', y, a[p])
      return out
    if self.impl != 'fast':
      raise ValueError(f'unknown graph conv impl {self.impl!r}; use fast or reference')
    # Aggregating over joints before the 1x1 conv measured faster than the
    # other order on CPU for every layer shape, even where it costs more FLOPs.
    z = jnp.einsum('ntjc,kji->ntikc', x, a).reshape(x.shape[:3] + (k * cin,))
    # The bias is added before aggregation, so it becomes a per-joint bias.
    return z @ w.transpose(1, 0, 2).reshape(k * cin, cout) + jnp.einsum('kji,kc->ic', a, b)


def _temporal_conv(x, w, stride: int):
  """'same' zero-padded conv over T: x [N, T, V, Cin], w [kt, Cin, Cout] -> [N, T', V, Cout]."""
  pad = w.shape[0] // 2
  return jax.lax.conv_general_dilated(
    x,
    w[:, None],
    window_strides=(stride, 1),
    padding=((pad, pad), (0, 0)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _fast_temporal_conv(x, w, stride: int):
  return _temporal_conv(x, w, stride)


def _fast_temporal_conv_fwd(x, w, stride):
  return _temporal_conv(x, w, stride), (x, w)


def _fast_temporal_conv_bwd(stride, res, dy):
  x, w = res
  # d/dx is XLA's own transposed convolution (a forward conv with the flipped
  # kernel: fast); linear_transpose gives it without re-running the forward.
  # XLA's filter gradient is a convolution that runs 5-10x slower than the same
  # contraction as one matmul per tap, so d/dw is written out:
  # dw[i] = sum over (n, t, v) of x_padded[n, s t + i, v]^T dy[n, t, v].
  conv_x = functools.partial(_temporal_conv, w=w, stride=stride)
  (dx,) = jax.linear_transpose(conv_x, jax.ShapeDtypeStruct(x.shape, x.dtype))(dy)
  kt, cin, cout = w.shape
  pad = kt // 2
  xp = jnp.pad(x, ((0, 0), (pad, pad), (0, 0), (0, 0)))
  span = stride * (dy.shape[1] - 1) + 1
  d2 = dy.reshape(-1, cout)
  # Each tap sums N*T'*V products (83,200 at NTU size): accumulate them in float32
  # even in bfloat16, then return the primal's dtype, as custom_vjp requires.
  dw = jnp.stack(
    [
      jnp.matmul(
        xp[:, i : i + span : stride].reshape(-1, cin).T, d2, preferred_element_type=jnp.float32
      )
      for i in range(kt)
    ]
  )
  return dx, dw.astype(w.dtype)


_fast_temporal_conv.defvjp(_fast_temporal_conv_fwd, _fast_temporal_conv_bwd)


class TemporalConv(nn.Module):
  """Temporal conv with kernel `kernel` over T, zero 'same' padding, stride `stride`.

  Attributes:
    features: output channels.
    stride: temporal stride; T -> ceil(T / stride).
    kernel: temporal kernel size (odd).
    impl: 'fast' (XLA's convolution forward and input gradient, the filter
      gradient as one matmul per tap) or 'reference' (`lax.conv` and autodiff).
    dtype: compute dtype (parameters stay float32).
  """

  features: int
  stride: int = 1
  kernel: int = TEMPORAL_KERNEL
  impl: str = 'fast'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """x: [N, T, V, Cin] -> [N, ceil(T / stride), V, features]."""
    kt, cin = self.kernel, x.shape[-1]
    w = self.param('kernel', nn.initializers.lecun_normal(), (kt, cin, self.features))
    b = self.param('bias', nn.initializers.zeros, (self.features,))
    x, w, b = nn.dtypes.promote_dtype(x, w, b, dtype=self.dtype)
    if self.impl == 'reference':
      return _temporal_conv(x, w, self.stride) + b
    if self.impl != 'fast':
      raise ValueError(f'unknown temporal conv impl {self.impl!r}; use fast or reference')
    return _fast_temporal_conv(x, w, self.stride) + b


class STGCNBlock(nn.Module):
  """One ST-GCN block with its own learnable edge importance.

  Attributes:
    features: output channels.
    stride: temporal stride of the temporal conv (and of the residual).
    residual: False for the first block, as in ST-GCN.
    edge_importance: learn a [K, V, V] multiplier on the adjacency (init ones).
    dropout: dropout rate after the temporal BN.
    impl: 'fast' or 'reference' for both convolutions.
    dtype: compute dtype; BatchNorm statistics stay float32.
  """

  features: int
  stride: int = 1
  residual: bool = True
  edge_importance: bool = True
  dropout: float = 0.0
  impl: str = 'fast'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, adjacency, mask, train: bool):
    """x: [N, T, V, Cin], adjacency: [K, V, V], mask: [N, T] -> ([N, T', V, F], mask [N, T'])."""
    a = jnp.asarray(adjacency)
    if self.edge_importance:
      a = a * self.param('edge_importance', nn.initializers.ones, a.shape)
    dt = self.dtype
    # Masks in the compute dtype: a float32 mask would promote bfloat16 activations.
    m4 = mask[:, :, None, None].astype(dt)
    y = GraphConv(self.features, impl=self.impl, dtype=dt, name='gcn')(x, a)
    y = nn.relu(_bn(train, 'gcn_bn', dtype=dt)(y, mask=m4 > 0)) * m4
    y = TemporalConv(self.features, self.stride, impl=self.impl, dtype=dt, name='tcn')(y)
    out_mask = mask[:, :: self.stride]
    o4 = out_mask[:, :, None, None].astype(dt)
    y = _bn(train, 'tcn_bn', dtype=dt)(y, mask=o4 > 0)
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    if self.residual:
      if x.shape[-1] == self.features and self.stride == 1:
        res = x
      else:
        res = nn.Dense(self.features, dtype=dt, name='res')(x[:, :: self.stride])
        res = _bn(train, 'res_bn', dtype=dt)(res, mask=o4 > 0)
      y = y + res
    return nn.relu(y) * o4, out_mask


class STGCN(nn.Module):
  """ST-GCN encoder over `[B, M, T, V, C]`.

  Attributes:
    layout: joint layout (graph and input size).
    widths: channels of the ten blocks, e.g. `WIDTHS['small']`.
    strides: temporal stride per block.
    adjacency: partition strategy for `layout.adjacency`.
    edge_importance: learnable per-block edge weights.
    dropout: dropout rate inside each block.
    impl: 'fast' or 'reference' convolutions.
    dtype: compute dtype, e.g. jnp.bfloat16 on GPU/TPU; parameters, BatchNorm
      statistics and both outputs stay float32.
  """

  layout: skeleton.Layout
  widths: tuple[int, ...] = WIDTHS['small']
  strides: tuple[int, ...] = STRIDES
  adjacency: str = 'spatial'
  edge_importance: bool = True
  dropout: float = 0.0
  impl: str = 'fast'
  dtype: Any = jnp.float32

  @property
  def feature_dim(self) -> int:
    """D of `pooled` (also D' of `temporal`)."""
    return self.widths[-1]

  @property
  def full_resolution_block(self) -> int:
    """Index of the last block before the first temporal stride > 1 (-1: none)."""
    first = next((i for i, s in enumerate(self.strides) if s > 1), len(self.strides))
    return first - 1

  def temporal_frames(self, frames: int) -> int:
    """T' of `temporal` for input length `frames`."""
    for s in self.strides:
      frames = (frames - 1) // s + 1
    return frames

  @nn.compact
  def __call__(self, x, n, train: bool):
    """Encodes a batch.

    Args:
      x: float32 [B, M, T, V, C].
      n: int [B] valid frames.
      train: batch statistics and dropout on.

    Returns:
      pooled [B, D] (masked mean over valid frames and joints, then over
      persons) and temporal [B, T', D] (mean over joints and persons; zero on
      padded frames), with D = widths[-1] and T' = T / prod(strides) rounded up;
      both float32 whatever `dtype`. Sown as 'intermediates' (float32): 'joints',
      the last block's per-joint features [B*M, T', V, D], and 'joints_full', those
      of block `full_resolution_block` [B*M, T, V, widths[that block]] (not sown
      when the first block already strides).
    """
    common.check_input('stgcn', x, n, self.layout)
    if len(self.widths) != len(self.strides):
      raise ValueError(f'stgcn: {len(self.widths)} widths but {len(self.strides)} strides')
    b, m, t, v, c = x.shape
    x, n = common.fold_persons(x.astype(jnp.float32), n)
    mask = common.frame_mask(n, t)
    m4 = mask[:, :, None, None]
    # Data BN over V*C channels shared by all persons (the original normalises
    # M*V*C channels, which would tie statistics to person order).
    # The data BN normalises the float32 input and emits the compute dtype.
    x = _bn(train, 'data_bn', axis=(-2, -1), dtype=self.dtype)(x * m4, mask=m4 > 0)
    x = x * m4.astype(self.dtype)
    a = np.asarray(self.layout.adjacency(self.adjacency))
    full = self.full_resolution_block
    for i, (width, stride) in enumerate(zip(self.widths, self.strides, strict=True)):
      x, mask = STGCNBlock(
        width,
        stride,
        residual=i > 0,
        edge_importance=self.edge_importance,
        dropout=self.dropout,
        impl=self.impl,
        dtype=self.dtype,
        name=f'block{i + 1}',
      )(x, a, mask, train)
      if i == full:
        # Per-joint features at full temporal resolution [B*M, T, V, widths[i]], for the
        # decoder that corrects single frames (mcc.decoder_tap='full').
        self.sow('intermediates', 'joints_full', x.astype(jnp.float32))
    # Pool and return in float32: the losses and the queue are float32.
    x = x.astype(jnp.float32)
    # Per-joint features [B*M, T', V, D] for decoders that read them (interpolation).
    self.sow('intermediates', 'joints', x)
    per_frame = x.mean(axis=2)  # [N, T', D]; padded frames are already zero
    pooled = common.masked_time_mean(per_frame, mask)
    return common.person_mean(pooled, m), common.person_mean(per_frame, m)
