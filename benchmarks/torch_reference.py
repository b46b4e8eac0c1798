"""A PyTorch reference of skeljax's MCC pretraining, written the way the peers write it.

The peers (SkeletonCLR / AimCLR, built on st-gcn's `net/st_gcn.py`) keep activations in
`[N, C, T, V]` (NCHW with frames as height and joints as width) and wrap two copies of the
encoder in a MoCo module with a queue buffer. This file follows that style so the speed
comparison is against idiomatic PyTorch, and matches skeljax's parameters one for one so it
is the same network:

  * `STGCN`: data BN, ten `STGCNBlock`s (`ConvTemporalGraphical` = a 1x1 conv to K*C then an
    einsum with A; temporal `Conv2d((9, 1))` + BN; residual; learnable edge importance), global
    average pooling, mean over persons. Its data BN normalises V*C channels shared by all
    persons, as skeljax does (the original normalises M*V*C), so the parameter counts agree.
  * `STTransformer`: skeljax's spatio-temporal transformer (pre-LN blocks of joint attention,
    frame attention and an MLP), with `nn.MultiheadAttention` as a PyTorch user writes it.
  * `ProjectionHead`, `InterpDecoder`: the same heads as `skeljax/models/heads.py`.
  * `MCC`: `encoder_q` / `encoder_k` (encoder + projection), momentum update, a 32768-key queue
    buffer, `_dequeue_and_enqueue`; InfoNCE over [positive, motion-broken negative, queue] plus
    the masked interpolation MSE of the decoder, as in `skeljax.pretrain.train_step`.
  * `make_views`: the MCC views with plain tensor ops on the host (crop + linear resampling,
    speed positive, segment-shuffled negative, every-2nd-frame interpolation input, flip,
    rotation/shear/scale, noise). The peers build views in their numpy data loader, outside the
    timed step; the benchmark times this separately.

Shapes: x is `[B, M, T, V, C]` at the boundary (skeljax's layout); inside, `[N, C, T, V]` with
N = B * M.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STGCN_WIDTHS = {
  'small': (16, 16, 16, 16, 32, 32, 32, 64, 64, 256),
  'base': (64, 64, 64, 64, 128, 128, 128, 256, 256, 256),
}
STGCN_STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)


# ---------------------------------------------------------------- ST-GCN


class ConvTemporalGraphical(nn.Module):
  """Graph conv: a 1x1 conv to K partitions of `out_channels`, then aggregation by A."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
    super().__init__()
    self.kernel_size = kernel_size
    self.conv = nn.Conv2d(in_channels, out_channels * kernel_size, kernel_size=(1, 1))

  def forward(self, x, A):
    """x: [N, Cin, T, V], A: [K, V, V] (A[k, v, w] = message v -> w) -> [N, Cout, T, V]."""
    x = self.conv(x)
    n, kc, t, v = x.size()
    x = x.view(n, self.kernel_size, kc // self.kernel_size, t, v)
    return torch.einsum('nkctv,kvw->nctw', x, A).contiguous()


class STGCNBlock(nn.Module):
  """gcn -> BN -> ReLU -> Conv2d((9, 1), stride) -> BN -> dropout, + residual, ReLU."""

  def __init__(self, in_channels, out_channels, kernel_size, stride=1, dropout=0.0, residual=True):
    super().__init__()
    t_kernel, k_parts = kernel_size
    padding = ((t_kernel - 1) // 2, 0)
    self.gcn = ConvTemporalGraphical(in_channels, out_channels, k_parts)
    self.tcn = nn.Sequential(
      nn.BatchNorm2d(out_channels),
      nn.ReLU(inplace=True),
      nn.Conv2d(out_channels, out_channels, (t_kernel, 1), (stride, 1), padding),
      nn.BatchNorm2d(out_channels),
      nn.Dropout(dropout, inplace=True),
    )
    if not residual:
      self.residual = lambda x: 0
    elif in_channels == out_channels and stride == 1:
      self.residual = lambda x: x
    else:
      self.residual = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1)),
        nn.BatchNorm2d(out_channels),
      )
    self.relu = nn.ReLU(inplace=True)

  def forward(self, x, A):
    res = self.residual(x)
    x = self.tcn(self.gcn(x, A)) + res
    return self.relu(x)


class STGCN(nn.Module):
  """ST-GCN backbone: `[B, M, T, V, C]` -> (pooled [B, D], temporal [B, T', D])."""

  def __init__(
    self,
    A: np.ndarray,
    in_channels: int = 3,
    widths=STGCN_WIDTHS['small'],
    strides=STGCN_STRIDES,
    temporal_kernel: int = 9,
    dropout: float = 0.0,
    edge_importance_weighting: bool = True,
  ):
    super().__init__()
    self.register_buffer('A', torch.tensor(np.asarray(A), dtype=torch.float32))
    k_parts, num_joints = self.A.shape[0], self.A.shape[1]
    self.data_bn = nn.BatchNorm1d(in_channels * num_joints)
    chans = (in_channels,) + tuple(widths)
    self.st_gcn_networks = nn.ModuleList(
      STGCNBlock(
        chans[i], chans[i + 1], (temporal_kernel, k_parts), strides[i], dropout, residual=i > 0
      )
      for i in range(len(widths))
    )
    if edge_importance_weighting:
      self.edge_importance = nn.ParameterList(
        nn.Parameter(torch.ones(self.A.size())) for _ in self.st_gcn_networks
      )
    else:
      self.edge_importance = [1] * len(self.st_gcn_networks)
    self.out_channels = widths[-1]

  def forward(self, x):
    N, M, T, V, C = x.size()
    x = x.permute(0, 1, 3, 4, 2).contiguous().view(N * M, V * C, T)
    x = self.data_bn(x)
    x = x.view(N * M, V, C, T).permute(0, 2, 3, 1).contiguous()  # [N*M, C, T, V]
    for gcn, importance in zip(self.st_gcn_networks, self.edge_importance, strict=True):
      x = gcn(x, self.A * importance)
    per_frame = x.mean(dim=3)  # [N*M, D, T']
    temporal = per_frame.view(N, M, self.out_channels, -1).mean(dim=1).transpose(1, 2)
    pooled = F.avg_pool2d(x, x.size()[2:]).view(N, M, -1).mean(dim=1)
    return pooled, temporal


def _bn_from(bn, params, stats):
  """Copies a flax BatchNorm's scale/bias (and running stats) into a torch BN, flattened."""
  t = lambda a: torch.tensor(np.asarray(a, np.float32)).reshape(-1)
  bn.weight.data.copy_(t(params['scale']))
  bn.bias.data.copy_(t(params['bias']))
  if stats is not None:
    bn.running_mean.copy_(t(stats['mean']))
    bn.running_var.copy_(t(stats['var']))


@torch.no_grad()
def load_skeljax_stgcn(backbone: STGCN, params: dict, batch_stats: dict | None = None) -> None:
  """Loads skeljax ST-GCN variables (`skeljax.models.stgcn.STGCN`) into `backbone`.

  Layouts: a flax graph-conv kernel [Cin, K, Cout] is the torch 1x1 conv [K*Cout, Cin, 1, 1];
  a temporal kernel [9, Cin, Cout] is [Cout, Cin, 9, 1]; data BN [V, C] is [V*C].
  """
  t = lambda a: torch.tensor(np.asarray(a, np.float32))
  stats = batch_stats or {}
  _bn_from(backbone.data_bn, params['data_bn'], stats.get('data_bn'))
  for i, block in enumerate(backbone.st_gcn_networks):
    p, s = params[f'block{i + 1}'], stats.get(f'block{i + 1}', {})
    w = t(p['gcn']['kernel'])  # [Cin, K, Cout]
    block.gcn.conv.weight.copy_(w.permute(1, 2, 0).reshape(-1, w.shape[0], 1, 1))
    block.gcn.conv.bias.copy_(t(p['gcn']['bias']).reshape(-1))
    _bn_from(block.tcn[0], p['gcn_bn'], s.get('gcn_bn'))
    block.tcn[2].weight.copy_(t(p['tcn']['kernel']).permute(2, 1, 0)[..., None])
    block.tcn[2].bias.copy_(t(p['tcn']['bias']))
    _bn_from(block.tcn[3], p['tcn_bn'], s.get('tcn_bn'))
    if 'res' in p:
      block.residual[0].weight.copy_(t(p['res']['kernel']).T[:, :, None, None])
      block.residual[0].bias.copy_(t(p['res']['bias']))
      _bn_from(block.residual[1], p['res_bn'], s.get('res_bn'))
    if 'edge_importance' in p:
      backbone.edge_importance[i].copy_(t(p['edge_importance']))


# ---------------------------------------------------------------- heads


class ProjectionHead(nn.Module):
  """MoCo v2 MLP: Linear(D, hidden) -> ReLU -> Linear(hidden, out); hidden 0 = D."""

  def __init__(self, in_dim: int, out: int = 128, hidden: int = 0):
    super().__init__()
    hidden = hidden or in_dim
    self.fc = nn.Sequential(
      nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out)
    )

  def forward(self, x):
    return self.fc(x)


class InterpDecoder(nn.Module):
  """Temporal features [B, T', D] -> reconstruction [B, M, T, V, C].

  Same layers as skeljax's decoder: upsample T' -> T by linear interpolation with the end
  frames aligned, a per-frame MLP (Linear(D, width) -> ReLU -> Linear(width, M*V*C)).
  """

  def __init__(
    self, in_dim: int, frames: int, persons: int, num_joints: int, channels: int, width: int = 128
  ):
    super().__init__()
    self.frames, self.shape = frames, (persons, num_joints, channels)
    self.align_corners = True  # skeljax aligns the first and last frames
    self.mlp = nn.Sequential(
      nn.Linear(in_dim, width),
      nn.ReLU(inplace=True),
      nn.Linear(width, persons * num_joints * channels),
    )

  def forward(self, temporal):
    b = temporal.shape[0]
    up = F.interpolate(
      temporal.transpose(1, 2), size=self.frames, mode='linear', align_corners=self.align_corners
    ).transpose(1, 2)  # [B, T, D]
    y = self.mlp(up).view(b, self.frames, *self.shape)
    return y.permute(0, 2, 1, 3, 4)


class Encoder(nn.Module):
  """Backbone + projection head (the peers' `Model` with `fc` replaced by the MLP)."""

  def __init__(self, backbone: nn.Module, feature_dim: int = 128, projection_hidden: int = 0):
    super().__init__()
    self.backbone = backbone
    self.fc = ProjectionHead(backbone.out_channels, feature_dim, projection_hidden)

  def forward(self, x):
    pooled, temporal = self.backbone(x)
    return self.fc(pooled), temporal


# ---------------------------------------------------------------- transformer


class STBlock(nn.Module):
  """Pre-LN block: attention over the joints of a frame, over the frames of a joint, MLP."""

  def __init__(self, width: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0):
    super().__init__()
    self.ln_spatial = nn.LayerNorm(width)
    self.spatial = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
    self.ln_temporal = nn.LayerNorm(width)
    self.temporal = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
    self.ln_mlp = nn.LayerNorm(width)
    self.mlp = nn.Sequential(
      nn.Linear(width, mlp_ratio * width),
      nn.ReLU(inplace=True),
      nn.Dropout(dropout),
      nn.Linear(mlp_ratio * width, width),
    )
    self.drop = nn.Dropout(dropout)

  def forward(self, x):
    """x: [N, T, V, D] -> [N, T, V, D]."""
    n, t, v, d = x.shape
    y = self.ln_spatial(x).reshape(n * t, v, d)
    x = x + self.drop(self.spatial(y, y, y, need_weights=False)[0].view(n, t, v, d))
    y = self.ln_temporal(x).transpose(1, 2).reshape(n * v, t, d)
    y = self.temporal(y, y, y, need_weights=False)[0].view(n, v, t, d).transpose(1, 2)
    x = x + self.drop(y)
    return x + self.drop(self.mlp(self.ln_mlp(x)))


class STTransformer(nn.Module):
  """Spatio-temporal transformer over joint tokens, as `skeljax.models.transformer`.

  A token is one joint over `patch` frames (p*C inputs), so `[B, M, T, V, C]` ->
  (pooled [B, D], temporal [B, ceil(T / patch), D]). Every clip of the MCC step is full length,
  so no padding mask is needed here.
  """

  def __init__(
    self,
    num_joints: int,
    frames: int,
    in_channels: int = 3,
    depth: int = 4,
    width: int = 64,
    heads: int = 4,
    patch: int = 1,
    dropout: float = 0.0,
  ):
    super().__init__()
    self.patch = patch
    self.embed = nn.Linear(patch * in_channels, width)
    self.pos_joint = nn.Parameter(0.02 * torch.randn(num_joints, width))
    self.pos_time = nn.Parameter(0.02 * torch.randn(-(-frames // patch), width))
    self.drop = nn.Dropout(dropout)
    self.blocks = nn.ModuleList(STBlock(width, heads, dropout=dropout) for _ in range(depth))
    self.ln_out = nn.LayerNorm(width)
    self.out_channels = width

  def forward(self, x):
    N, M, T, V, C = x.size()
    p = self.patch
    tp = -(-T // p)
    x = F.pad(x.reshape(N * M, T, V, C), (0, 0, 0, 0, 0, tp * p - T))
    x = x.view(N * M, tp, p, V, C).transpose(2, 3).reshape(N * M, tp, V, p * C)
    x = self.drop(self.embed(x) + self.pos_joint + self.pos_time[:tp, None])
    for block in self.blocks:
      x = block(x)
    per_frame = self.ln_out(x).mean(dim=2)  # [N*M, T', D]
    pooled = per_frame.mean(dim=1).view(N, M, -1).mean(dim=1)
    return pooled, per_frame.view(N, M, tp, -1).mean(dim=1)


# ---------------------------------------------------------------- MoCo / MCC


class MCC(nn.Module):
  """Query/key encoders, the queue and the MCC loss (InfoNCE + interpolation MSE)."""

  def __init__(
    self,
    make_backbone,
    *,
    frames: int,
    persons: int,
    num_joints: int,
    channels: int = 3,
    feature_dim: int = 128,
    queue_size: int = 32768,
    momentum: float = 0.999,
    temperature: float = 0.07,
    interp_weight: float = 1.0,
    projection_hidden: int = 0,
    decoder_width: int = 128,
  ):
    super().__init__()
    self.K, self.m, self.T, self.interp_weight = queue_size, momentum, temperature, interp_weight
    self.encoder_q = Encoder(make_backbone(), feature_dim, projection_hidden)
    self.encoder_k = Encoder(make_backbone(), feature_dim, projection_hidden)
    for param_q, param_k in zip(
      self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True
    ):
      param_k.data.copy_(param_q.data)
      param_k.requires_grad = False
    self.decoder = InterpDecoder(
      self.encoder_q.backbone.out_channels, frames, persons, num_joints, channels, decoder_width
    )
    self.register_buffer('queue', F.normalize(torch.randn(feature_dim, queue_size), dim=0))
    self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))

  @torch.no_grad()
  def _momentum_update_key_encoder(self):
    for param_q, param_k in zip(
      self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True
    ):
      param_k.data.mul_(self.m).add_(param_q.data, alpha=1.0 - self.m)

  @torch.no_grad()
  def _dequeue_and_enqueue(self, keys):
    batch_size = keys.shape[0]
    ptr = int(self.queue_ptr)
    assert self.K % batch_size == 0
    self.queue[:, ptr : ptr + batch_size] = keys.T
    self.queue_ptr[0] = (ptr + batch_size) % self.K

  def forward(self, im_q, im_k, im_neg, interp_target, interp_mask):
    """The MCC loss of one batch; every clip is [B, M, T, V, C], interp_mask [B, T]."""
    b = im_q.shape[0]
    q, temporal = self.encoder_q(im_q)
    q = F.normalize(q, dim=1)
    with torch.no_grad():
      self._momentum_update_key_encoder()
      # One batched key pass over positive and negative, as skeljax does.
      k, _ = self.encoder_k(torch.cat([im_k, im_neg]))
      k = F.normalize(k, dim=1)
      k_pos, k_neg = k[:b], k[b:]
    l_pos = torch.einsum('nc,nc->n', q, k_pos).unsqueeze(-1)
    l_hard = torch.einsum('nc,nc->n', q, k_neg).unsqueeze(-1)
    l_neg = torch.einsum('nc,ck->nk', q, self.queue.clone().detach())
    logits = torch.cat([l_pos, l_hard, l_neg], dim=1) / self.T
    labels = torch.zeros(b, dtype=torch.long, device=logits.device)
    nce = F.cross_entropy(logits, labels)
    recon = self.decoder(temporal)
    present = (interp_target != 0).flatten(2).any(dim=2).float()  # [B, M]
    per_frame = (recon - interp_target).square().mean(dim=(3, 4))  # [B, M, T]
    weight = present[:, :, None] * interp_mask[:, None, :]
    interp = (per_frame * weight).sum() / weight.sum().clamp(min=1.0)
    self._dequeue_and_enqueue(k_pos)
    return nce + self.interp_weight * interp


def make_optimizer(model: nn.Module, lr=0.1, momentum=0.9, weight_decay=1e-4):
  """SGD with momentum 0.9; L2 on conv/linear/attention weights only (skeljax's mask)."""
  params = [p for p in model.parameters() if p.requires_grad]
  decay = [
    p
    for n, p in model.named_parameters()
    if p.requires_grad and p.ndim > 1 and 'edge_importance' not in n and 'pos_' not in n
  ]
  ids = {id(p) for p in decay}
  rest = [p for p in params if id(p) not in ids]
  return torch.optim.SGD(
    [{'params': decay, 'weight_decay': weight_decay}, {'params': rest, 'weight_decay': 0.0}],
    lr=lr,
    momentum=momentum,
  )


def train_step(model: MCC, optimizer, views: dict, autocast_dtype=None) -> float:
  """One MCC step on precomputed views (see `make_views`); returns the loss.

  `autocast_dtype` (e.g. torch.bfloat16) runs the forward under torch.autocast on the
  views' device: PyTorch's mixed precision, against skeljax's `model.dtype`.
  """
  device = views['anchor'].device.type
  with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
    loss = model(
      views['interp_input'],
      views['positive'],
      views['negative'],
      views['anchor'],
      views['interp_mask'],
    )
  optimizer.zero_grad(set_to_none=True)
  loss.backward()
  optimizer.step()
  return float(loss.detach())


def build_stgcn_mcc(
  A: np.ndarray,
  size: str = 'small',
  *,
  frames: int = 50,
  persons: int = 2,
  channels: int = 3,
  **mcc_kwargs,
) -> MCC:
  """The MCC model with an ST-GCN of width preset `size` ('small' or 'base')."""
  if size not in STGCN_WIDTHS:
    raise ValueError(f'unknown ST-GCN size {size!r}; use small or base')
  make = lambda: STGCN(A, channels, STGCN_WIDTHS[size])
  return MCC(
    make, frames=frames, persons=persons, num_joints=A.shape[1], channels=channels, **mcc_kwargs
  )


def build_transformer_mcc(
  layout,
  *,
  depth: int = 4,
  width: int = 64,
  heads: int = 4,
  patch: int = 1,
  frames: int = 50,
  persons: int = 2,
  channels: int = 3,
  **mcc_kwargs,
) -> MCC:
  """The MCC model with the spatio-temporal transformer (`layout`: a skeljax Layout)."""
  v = layout.num_joints
  make = lambda: STTransformer(
    v, frames, channels, depth=depth, width=width, heads=heads, patch=patch
  )
  return MCC(make, frames=frames, persons=persons, num_joints=v, channels=channels, **mcc_kwargs)


def param_counts(model: MCC) -> dict:
  """Trainable parameters of the query side: {'encoder', 'projector', 'decoder'}."""
  count = lambda m: sum(p.numel() for p in m.parameters())
  return {
    'encoder': count(model.encoder_q.backbone),
    'projector': count(model.encoder_q.fc),
    'decoder': count(model.decoder),
  }


# ---------------------------------------------------------------- views


_NON_IDENTITY = {}


def _segment_orders(frames: int, segments: int) -> torch.Tensor:
  """[P, T] frame orders of every non-identity permutation of `segments` equal segments."""
  key = (frames, segments)
  if key not in _NON_IDENTITY:
    bounds = [round(i * frames / segments) for i in range(segments + 1)]
    pieces = [list(range(bounds[i], bounds[i + 1])) for i in range(segments)]
    perms = [p for p in itertools.permutations(range(segments)) if list(p) != sorted(p)]
    _NON_IDENTITY[key] = torch.tensor([sum((pieces[i] for i in p), []) for p in perms])
  return _NON_IDENTITY[key]


def _resample(x, n, start, length, frames):
  """x [B, M, Tmax, V, C] sampled at the bins of [start, start + length): [B, M, T, V, C]."""
  i = torch.arange(frames, dtype=torch.float32)
  pos = start[:, None] + (i[None] + 0.5) * length[:, None] / frames - 0.5
  pos = torch.minimum(pos.clamp(min=0.0), (n[:, None] - 1).float())
  lo = pos.floor().long()
  hi = torch.minimum(lo + 1, n[:, None] - 1)
  w = (pos - lo)[:, None, :, None, None]
  gather = lambda idx: torch.gather(
    x, 2, idx[:, None, :, None, None].expand(-1, x.shape[1], -1, x.shape[3], x.shape[4])
  )
  x0 = gather(lo)
  return x0 + w * (gather(hi) - x0)


def _spatial(x, flip_perm, generator):
  """Per-sample flip, rotation (+-0.3 rad per axis), shear 0.5, scale [0.9, 1.1], noise."""
  b = x.shape[0]
  present = (x != 0).any(dim=-1, keepdim=True)
  flip = torch.rand(b, generator=generator) < 0.5
  x = torch.where(flip[:, None, None, None, None], x[:, :, :, flip_perm], x)
  a = (torch.rand(b, 3, generator=generator) * 2 - 1) * 0.3
  c, s = a.cos(), a.sin()
  one, zero = torch.ones(b), torch.zeros(b)
  rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1)
  ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1)
  rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1)
  rot = rz.view(b, 3, 3) @ ry.view(b, 3, 3) @ rx.view(b, 3, 3)
  shear = torch.eye(3) + (torch.rand(b, 3, 3, generator=generator) * 2 - 1) * 0.5 * (
    1 - torch.eye(3)
  )
  scale = 0.9 + 0.2 * torch.rand(b, 1, 1, generator=generator)
  mat = scale * rot @ shear
  x = torch.einsum('bmtvi,bji->bmtvj', x, mat)
  x = x + 0.005 * torch.randn(x.shape, generator=generator)
  return torch.where(present, x, torch.zeros(()))


def make_views(
  x,
  n,
  *,
  frames: int,
  flip_perm,
  center: int,
  speeds=(0.5, 2.0),
  crop_ratio=(0.5, 1.0),
  segments: int = 4,
  interp_stride: int = 2,
  generator=None,
) -> dict:
  """The MCC views of a batch with plain tensor ops (no autograd).

  Args:
    x: float32 [B, M, Tmax, V, C] zero-padded sequences; n: int64 [B] valid frames.
  Returns:
    dict of [B, M, T, V, C] 'anchor', 'positive', 'negative', 'interp_input' and
    'interp_mask' [B, T] (1.0 on dropped frames).
  """
  b = x.shape[0]
  nf = n.float()
  ratio = crop_ratio[0] + (crop_ratio[1] - crop_ratio[0]) * torch.rand(b, generator=generator)
  length = torch.clamp(ratio * nf, min=1.0)
  start = torch.rand(b, generator=generator) * (nf - length)
  speed = torch.tensor(speeds)[torch.randint(len(speeds), (b,), generator=generator)]
  p_length = torch.minimum(length * speed, nf)
  p_start = torch.clamp(start + 0.5 * length - 0.5 * p_length, min=0.0)
  p_start = torch.minimum(p_start, nf - p_length)
  perm = torch.as_tensor(flip_perm)
  clips = []
  for s, ln in ((start, length), (p_start, p_length)):
    clip = _resample(x, n, s, ln, frames)
    present = (clip != 0).any(dim=-1, keepdim=True)
    clip = torch.where(present, clip - clip[:, :1, :1, center : center + 1], torch.zeros(()))
    clips.append(_spatial(clip, perm, generator))
  anchor, positive = clips
  orders = _segment_orders(frames, segments)
  order = orders[torch.randint(len(orders), (b,), generator=generator)]
  negative = torch.gather(anchor, 2, order[:, None, :, None, None].expand_as(anchor))
  t = torch.arange(frames)
  kept = (t % interp_stride == 0) | (t == frames - 1)
  prev = torch.cummax(torch.where(kept, t, 0), 0).values
  nxt = torch.flip(torch.cummin(torch.flip(torch.where(kept, t, frames - 1), [0]), 0).values, [0])
  w = ((t - prev) / (nxt - prev).clamp(min=1)).float()[None, None, :, None, None]
  x0 = anchor[:, :, prev]
  interp_input = x0 + w * (anchor[:, :, nxt] - x0)
  mask = (~kept).float().expand(b, frames).contiguous()
  return {
    'anchor': anchor,
    'positive': positive,
    'negative': negative,
    'interp_input': interp_input,
    'interp_mask': mask,
  }


def synthetic_batch(
  batch: int, persons: int, max_frames: int, num_joints: int, channels: int = 3, seed: int = 0
):
  """A random padded batch (x [B, M, Tmax, V, C], n [B]) with n in [max_frames/2, max_frames]."""
  g = torch.Generator().manual_seed(seed)
  n = torch.randint(max_frames // 2, max_frames + 1, (batch,), generator=g)
  x = torch.randn(batch, persons, max_frames, num_joints, channels, generator=g)
  valid = (torch.arange(max_frames)[None] < n[:, None]).float()
  return x * valid[:, None, :, None, None], n


def count_flops(fn) -> int:
  """FLOPs torch's FlopCounterMode counts while `fn()` runs (2 per multiply-add)."""
  from torch.utils.flop_counter import FlopCounterMode

  with FlopCounterMode(display=False) as counter:
    fn()
  return int(counter.get_total_flops())
