"""Pure-JAX skeleton augmentations and the MCC views.

Shapes. One sample is `x: [M, T, V, C]` (persons, frames, joints, channels) with
`n` valid frames; frames `>= n` are zero padding and an absent person is all
zeros. A batch is `[B, M, T, V, C]` with `n: [B]`. Only the first
`layout.coord_dims` channels are spatial; the rest (OpenPose confidence) are
never changed by a spatial transform (flip moves them with their joint).

Every stochastic function takes `key` first, is side-effect free and works
eagerly and under jit/vmap. Config values (`aug`, `layout`, `frames`) are
static Python values: close over them (`functools.partial`) before `jax.jit`.

Continuous time. Frame i covers the interval [i, i+1) and is sampled at its
middle. A window `[start, start + length)` resampled to `t_out` frames is cut
into `t_out` equal bins and output frame i samples its bin's middle, i.e. the
frame-index position

    p_i = start + (i + 0.5) * length / t_out - 0.5,

by linear interpolation between frames floor(p_i) and floor(p_i) + 1. So the
window `(0, n)` at `t_out == n` gives p_i = i exactly (identity), two windows
with the same centre sample around the same moment, and a sequence linear in
time is reproduced exactly wherever 0 <= p_i <= n - 1.

Zeros stay zeros. A (person, frame, joint) entry that is all-zero in the
resampled clip (an absent person, a padded frame, an undetected OpenPose joint)
is kept exactly zero by centring, alignment, noise and every other transform.
(Only interp_input's 'linear' fill mixes neighbouring frames, as resampling does.)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from skeljax import skeleton

PAD_MODES = ('clip', 'edge', 'shift')
NEGATIVES = ('segment_shuffle', 'reverse', 'local_shuffle')
NEGATIVE_SOURCES = ('positive', 'anchor', 'anchor_shared')
POSITIVE_WINDOWS = ('centred', 'own')
CENTRES = ('clip', 'frame', 'none')
_EPS = float(np.finfo(np.float32).eps)
_SNAP_ULPS = 8


# ---------------------------------------------------------------- parameters


@dataclasses.dataclass(frozen=True)
class AugParams:
  """`config.augment` read once into hashable, validated Python values."""

  crop_ratio: tuple[float, float]
  speeds: tuple[float, ...]
  speed_range: tuple[float, ...]
  positive_window: str
  pad_mode: str
  negative: str
  negative_source: str
  segments: int
  local_window: int
  interp_drop: str
  interp_stride: int
  interp_keep_rate: float
  interp_fill: str
  shear: float
  rotate: tuple[float, float, float]
  scale: tuple[float, float]
  flip_prob: float
  noise_std: float
  joint_mask_prob: float
  axis_mask_prob: float
  centre: str
  view_align: bool

  @classmethod
  def from_config(cls, aug) -> AugParams:
    """Builds from a `config.augment` ConfigDict (or returns an AugParams as is)."""
    if isinstance(aug, cls):
      return aug
    rotate = aug.rotate
    rotate = tuple(float(r) for r in rotate) if np.ndim(rotate) else (float(rotate),) * 3
    p = cls(
      crop_ratio=tuple(float(r) for r in aug.crop_ratio),
      speeds=tuple(float(s) for s in aug.speeds),
      speed_range=tuple(float(s) for s in aug.speed_range),
      positive_window=str(aug.get('positive_window', 'centred')),
      pad_mode=str(aug.pad_mode),
      negative=str(aug.negative),
      negative_source=str(aug.get('negative_source', 'positive')),
      segments=int(aug.segments),
      local_window=int(aug.local_window),
      interp_drop=str(aug.interp_drop),
      interp_stride=int(aug.interp_stride),
      interp_keep_rate=float(aug.interp_keep_rate),
      interp_fill=str(aug.interp_fill),
      shear=float(aug.shear),
      rotate=rotate,
      scale=tuple(float(s) for s in aug.scale),
      flip_prob=float(aug.flip_prob),
      noise_std=float(aug.noise_std),
      joint_mask_prob=float(aug.joint_mask_prob),
      axis_mask_prob=float(aug.axis_mask_prob),
      centre=str(aug.centre),
      view_align=bool(aug.view_align),
    )
    p.check()
    return p

  def check(self) -> None:
    """Raises ValueError (one line) for values the views cannot use."""
    lo, hi = self.crop_ratio
    _need(0 < lo <= hi <= 1, f'augment.crop_ratio needs 0 < lo <= hi <= 1, got {self.crop_ratio}')
    if self.speed_range:
      _need(
        len(self.speed_range) == 2 and 0 < self.speed_range[0] <= self.speed_range[1],
        f'augment.speed_range must be () or (lo, hi) with 0 < lo <= hi, got {self.speed_range}',
      )
    else:
      _need(self.speeds and min(self.speeds) > 0, 'augment.speeds must be non-empty and positive')
    _need(
      self.positive_window in POSITIVE_WINDOWS,
      f'augment.positive_window {self.positive_window!r} not in {POSITIVE_WINDOWS}',
    )
    _need(self.pad_mode in PAD_MODES, f'augment.pad_mode {self.pad_mode!r} not in {PAD_MODES}')
    _need(self.negative in NEGATIVES, f'augment.negative {self.negative!r} not in {NEGATIVES}')
    _need(
      self.negative_source in NEGATIVE_SOURCES,
      f'augment.negative_source {self.negative_source!r} not in {NEGATIVE_SOURCES}',
    )
    _need(self.segments >= 2, f'augment.segments must be >= 2, got {self.segments}')
    _need(self.local_window >= 2, f'augment.local_window must be >= 2, got {self.local_window}')
    _need(self.interp_drop in ('stride', 'random'), 'augment.interp_drop must be stride or random')
    _need(self.interp_stride >= 2, 'augment.interp_stride must be >= 2')
    _need(0 < self.interp_keep_rate < 1, 'augment.interp_keep_rate must be in (0, 1)')
    _need(self.interp_fill in ('linear', 'zero'), 'augment.interp_fill must be linear or zero')
    _need(len(self.rotate) == 3, f'augment.rotate needs 3 angles (x, y, z), got {self.rotate}')
    _need(len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1], 'augment.scale: 0<lo<=hi')
    _need(self.centre in CENTRES, f'augment.centre {self.centre!r} not in {CENTRES}')


def _need(cond, msg: str) -> None:
  if not cond:
    raise ValueError(msg)


def _as_layout(layout) -> skeleton.Layout:
  return skeleton.get_layout(layout) if isinstance(layout, str) else layout


def _check_clip(x, layout, where: str, rank: int = 4) -> None:
  dims = '[B, M, T, V, C]' if rank == 5 else '[M, T, V, C]'
  _need(jnp.ndim(x) == rank, f'{where}: x must be {dims}, got shape {tuple(jnp.shape(x))}')
  v, c = x.shape[-2:]
  _need(
    v == layout.num_joints,
    f'{where}: x has {v} joints but layout {layout.name} has {layout.num_joints}',
  )
  _need(
    c == layout.num_channels,
    f'{where}: x has {c} channels but layout {layout.name} has {layout.num_channels}',
  )


# ---------------------------------------------------------------- temporal


def resample(x, n, start, length, t_out: int, pad_mode: str = 'clip'):
  """Resamples the window [start, start+length) of the valid frames to t_out frames.

  Args:
    x: [M, T, V, C]; frames >= n are never read.
    n: valid frames (int, may be traced); clamped to [1, T].
    start, length: window in frame units, any real values (length > 0).
    t_out: static output length.
    pad_mode: where the window leaves [0, n): 'clip' (alias 'edge') clamps the
      sample positions to [0, n-1], holding the edge frame; 'shift' first slides
      a window no longer than n inside the valid frames (speed kept, centre
      moved), and centres a longer one before clamping.
  Returns:
    [M, t_out, V, C], positions p_i as in the module docstring.
  """
  _need(jnp.ndim(x) == 4, f'resample: x must be [M, T, V, C], got shape {tuple(jnp.shape(x))}')
  _need(pad_mode in PAD_MODES, f'resample: pad_mode {pad_mode!r} not in {PAD_MODES}')
  n = jnp.clip(jnp.asarray(n), 1, x.shape[1]).astype(jnp.float32)
  start = jnp.asarray(start, jnp.float32)
  length = jnp.asarray(length, jnp.float32)
  if pad_mode == 'shift':
    start = jnp.where(length <= n, jnp.clip(start, 0.0, n - length), 0.5 * (n - length))
  pos = start + (jnp.arange(t_out, dtype=jnp.float32) + 0.5) * (length / t_out) - 0.5
  # XLA turns `/ t_out` into `* (1 / t_out)` and may fuse multiply-adds, so a position can
  # land a few ulps off an integer, differently in eager and jit. Snapping those to the
  # integer makes whole-frame positions read their frame bit-exactly in every mode (the
  # speed-1 identity); the shift is no larger than the positions' own rounding error.
  near = jnp.round(pos)
  pos = jnp.where(jnp.abs(pos - near) <= _SNAP_ULPS * _EPS * (jnp.abs(pos) + 1), near, pos)
  pos = jnp.clip(pos, 0.0, n - 1.0)
  i0 = jnp.floor(pos).astype(jnp.int32)
  i1 = jnp.minimum(i0 + 1, n.astype(jnp.int32) - 1)
  w = (pos - i0).astype(x.dtype)[None, :, None, None]
  x0, x1 = jnp.take(x, i0, axis=1), jnp.take(x, i1, axis=1)
  # x0 + w * (x1 - x0) returns x0 bit-exactly at integer positions (w == 0).
  return x0 + w * (x1 - x0)


def random_crop(key, n, ratio: tuple[float, float]):
  """A window of ratio ~ U(ratio) of n frames at a uniform start; returns (start, length)."""
  # One draw for all scalars here and in random_linear: each separate draw adds a threefry
  # hash to the graph, and those dominate make_views' compile time.
  u = jax.random.uniform(key, (2,))
  n = jnp.asarray(n, jnp.float32)
  length = (ratio[0] + (ratio[1] - ratio[0]) * u[0]) * n
  return u[1] * (n - length), length


def sample_speed(key, speeds: tuple[float, ...], speed_range: tuple[float, ...] = ()):
  """A playback speed: log-uniform in speed_range if given, else uniform over speeds."""
  if speed_range:
    lo, hi = np.log(speed_range[0]), np.log(speed_range[1])
    return jnp.exp(jax.random.uniform(key, (), minval=lo, maxval=hi))
  return jnp.asarray(speeds, jnp.float32)[jax.random.randint(key, (), 0, len(speeds))]


def speed_window(start, length, speed):
  """The window `speed` times as long with the same centre; returns (start, length)."""
  new_length = length * speed
  return start + 0.5 * (length - new_length), new_length


# ---------------------------------------------------------------- motion-broken order


def _nonidentity_permutation(key, k: int):
  """[k] int32, uniform over the k! - 1 permutations that are not the identity."""
  if k > 12:  # k! overflows int32; identity then has probability < 1e-9, fix it up by a roll
    k_perm, k_roll = jax.random.split(key)
    perm = jax.random.permutation(k_perm, k)
    roll = jnp.roll(jnp.arange(k), jax.random.randint(k_roll, (), 1, k))
    return jnp.where(jnp.all(perm == jnp.arange(k)), roll, perm)
  # Lehmer code: index 0 is the identity, so draw from [1, k!) and decode.
  rest = jax.random.randint(key, (), 1, math.factorial(k))
  free = jnp.ones(k, bool)
  perm = []
  for i in range(k):
    f = math.factorial(k - 1 - i)
    digit, rest = rest // f, rest % f
    pick = jnp.argmax(free & (jnp.cumsum(free) - 1 == digit))
    perm.append(pick)
    free = free.at[pick].set(False)
  return jnp.stack(perm).astype(jnp.int32)


def segment_shuffle_order(key, t: int, k: int):
  """[t] frame order: k contiguous segments reordered by a non-identity permutation."""
  _need(2 <= k <= t, f'segment_shuffle needs 2 <= segments <= frames, got {k} and {t}')
  bounds = np.array([j * t // k for j in range(k + 1)])
  seg_start, seg_size = jnp.asarray(bounds[:-1]), jnp.asarray(np.diff(bounds))
  order = _nonidentity_permutation(key, k)
  out_size = seg_size[order]
  out_start = jnp.cumsum(out_size) - out_size
  frame = jnp.arange(t)
  seg = jnp.searchsorted(out_start, frame, side='right') - 1
  return (seg_start[order][seg] + frame - out_start[seg]).astype(jnp.int32)


def local_shuffle_order(key, t: int, window: int):
  """[t] frame order shuffled inside blocks of `window` frames; never the identity."""
  _need(window >= 2 and t >= 2, f'local_shuffle needs window >= 2 and frames >= 2, got {window}')
  frame = jnp.arange(t)
  # Sorting by block + u, u in [0, 1), gives an independent uniform shuffle per block.
  perm = jnp.argsort(frame // window + jax.random.uniform(key, (t,))).astype(jnp.int32)
  swap = frame.at[0].set(1).at[1].set(0).astype(jnp.int32)
  return jnp.where(jnp.all(perm == frame), swap, perm)


def broken_order(key, t: int, method: str, segments: int = 4, local_window: int = 4):
  """[t] non-identity frame order for the motion-broken negative (`augment.negative`)."""
  if method == 'segment_shuffle':
    return segment_shuffle_order(key, t, segments)
  if method == 'reverse':
    _need(t >= 2, 'reverse needs at least 2 frames')
    return jnp.arange(t - 1, -1, -1, dtype=jnp.int32)
  if method == 'local_shuffle':
    return local_shuffle_order(key, t, local_window)
  raise ValueError(f'unknown negative {method!r}; choose from {NEGATIVES}')


# ---------------------------------------------------------------- interpolation (continuity)


def interpolation_input(
  key, clip, *, drop: str = 'stride', stride: int = 2, keep_rate: float = 0.5, fill='linear'
):
  """Drops frames of `clip` [M, T, V, C]; returns (sparse input, dropped mask [T] float32).

  'stride' keeps frames 0, r, 2r, ...; 'random' keeps each with prob keep_rate.
  The first and last frames are always kept. Dropped frames are filled by linear
  interpolation of the nearest kept frames on either side ('linear') or zeros
  ('zero'); kept frames are returned unchanged. The target is `clip` itself.
  """
  t = clip.shape[1]
  frame = jnp.arange(t)
  if drop == 'stride':
    kept = frame % stride == 0
  elif drop == 'random':
    kept = jax.random.bernoulli(key, keep_rate, (t,))
  else:
    raise ValueError(f'unknown interp_drop {drop!r}; use stride or random')
  kept = kept | (frame == 0) | (frame == t - 1)
  if fill == 'linear':
    prev = jax.lax.cummax(jnp.where(kept, frame, 0))
    nxt = jax.lax.cummin(jnp.where(kept, frame, t - 1), reverse=True)
    w = (frame - prev) / jnp.maximum(nxt - prev, 1)
    x0 = jnp.take(clip, prev, axis=1)
    sparse = x0 + w.astype(clip.dtype)[None, :, None, None] * (jnp.take(clip, nxt, axis=1) - x0)
  elif fill == 'zero':
    sparse = jnp.where(kept[None, :, None, None], clip, 0)
  else:
    raise ValueError(f'unknown interp_fill {fill!r}; use linear or zero')
  return sparse, (~kept).astype(jnp.float32)


# ---------------------------------------------------------------- spatial


def presence_mask(x, n=None):
  """[M, T, V] bool: entries that are not all-zero (and, with n, frames < n)."""
  mask = jnp.any(x != 0, axis=-1)
  if n is not None:
    mask = mask & (jnp.arange(x.shape[1]) < n)[None, :, None]
  return mask


def _coord_mask(x, coord_dims: int):
  return jnp.asarray(np.arange(x.shape[-1]) < coord_dims)


def rotation_matrix(angles):
  """[3, 3] = Rz @ Ry @ Rx for angles (x, y, z); a scalar angle gives the 2-D [2, 2]."""
  angles = jnp.asarray(angles, jnp.float32)
  if angles.ndim == 0:
    c, s = jnp.cos(angles), jnp.sin(angles)
    return jnp.array([[c, -s], [s, c]])
  c, s = jnp.cos(angles), jnp.sin(angles)
  one, zero = jnp.ones(()), jnp.zeros(())
  rx = jnp.array([[one, zero, zero], [zero, c[0], -s[0]], [zero, s[0], c[0]]])
  ry = jnp.array([[c[1], zero, s[1]], [zero, one, zero], [-s[1], zero, c[1]]])
  rz = jnp.array([[c[2], -s[2], zero], [s[2], c[2], zero], [zero, zero, one]])
  return rz @ ry @ rx


def random_linear(key, dims: int, *, rotate, shear: float, scale):
  """[dims, dims] = scale * R @ S: shear S (I + U(-shear, shear) off-diagonal), rotation
  R (U(-rotate_k, rotate_k) about each axis; 2-D: about z with rotate[2]), scale U(scale)."""
  n_rot = 3 if dims == 3 else 1
  u = jax.random.uniform(key, (dims * dims + n_rot + 1,))
  eye = jnp.eye(dims)
  off = (2 * u[: dims * dims].reshape(dims, dims) - 1) * shear
  shear_m = eye + off * (1 - eye)
  limit = jnp.asarray(rotate, jnp.float32) if dims == 3 else jnp.float32(rotate[2])
  angles = (2 * u[dims * dims : dims * dims + n_rot] - 1).reshape(limit.shape) * limit
  s = scale[0] + (scale[1] - scale[0]) * u[-1]
  return s * rotation_matrix(angles) @ shear_m


def _with_coords(x, coords, coord_dims: int):
  """x with its first coord_dims channels replaced by coords."""
  if coord_dims == x.shape[-1]:
    return coords
  return jnp.concatenate([coords, x[..., coord_dims:]], axis=-1)


def apply_linear(x, matrix, coord_dims: int):
  """x with coordinates replaced by matrix @ coord (per joint); other channels kept."""
  # Unrolled over the few coordinates: with channels last, a [3, 3] contraction (einsum,
  # dot_general or broadcast-sum) under vmap is about 10x slower on CPU.
  m = matrix.astype(x.dtype)
  c = [x[..., i] for i in range(coord_dims)]
  rows = []
  for j in range(coord_dims):
    row = c[0] * m[j, 0]
    for i in range(1, coord_dims):
      row = row + c[i] * m[j, i]
    rows.append(row)
  return _with_coords(x, jnp.stack(rows, axis=-1), coord_dims)


def flip(x, layout):
  """Left/right mirror: joints permuted by layout.flip and x negated. flip(flip(x)) == x."""
  layout = _as_layout(layout)
  sign = np.ones(x.shape[-1], np.float32)
  sign[0] = -1.0
  return x[..., np.asarray(layout.flip), :] * jnp.asarray(sign, x.dtype)


def random_flip(key, x, layout, prob: float):
  """flip(x) with probability prob, else x."""
  return jnp.where(jax.random.bernoulli(key, prob), flip(x, layout), x)


def gaussian_noise(key, x, std: float, coord_dims: int):
  """Adds N(0, std^2) to the coordinate channels."""
  shape = x.shape[:-1] + (coord_dims,)
  # A flat draw reshaped costs about half of drawing the 4-D shape directly on CPU.
  noise = jax.random.normal(key, (math.prod(shape),), x.dtype).reshape(shape) * std
  return _with_coords(x, x[..., :coord_dims] + noise, coord_dims)


def joint_mask(key, x, prob: float, coord_dims: int):
  """Zeroes each joint's coordinates in the whole clip with probability prob."""
  drop = jax.random.bernoulli(key, prob, (x.shape[-2], 1))
  return jnp.where(drop & _coord_mask(x, coord_dims), 0, x)


def axis_mask(key, x, prob: float, coord_dims: int):
  """With probability prob, zeroes one uniformly chosen coordinate axis of the clip."""
  k_do, k_axis = jax.random.split(key)
  axis = jax.random.randint(k_axis, (), 0, coord_dims)
  drop = jax.random.bernoulli(k_do, prob) & (jnp.arange(x.shape[-1]) == axis)
  return jnp.where(drop, 0, x)


def spatial_augment(key, x, *, aug, layout, mask=None):
  """Noise, random flip, shear/rotation/scale, joint and axis masking of one clip.

  In that order: Gaussian noise (augment.noise_std) on the entries in `mask`; left/right
  flip with probability flip_prob; one affine map scale * R @ S (random_linear); then
  joint and axis masking. Every step after the noise maps zero entries to zero.

  Args:
    x: [M, T, V, C]. mask: [M, T, V] entries kept non-zero (default presence_mask(x)).
  Returns:
    [M, T, V, C]; non-coordinate channels untouched (only moved by the flip).
  """
  p, layout = AugParams.from_config(aug), _as_layout(layout)
  _check_clip(x, layout, 'spatial_augment')
  d = layout.coord_dims
  mask = presence_mask(x) if mask is None else mask
  k_flip, k_lin, k_noise, k_joint, k_axis = jax.random.split(key, 5)
  # Noise goes first, masked, so the mask never has to follow the flip's joint permutation.
  # This order is also the fast one: with noise last, XLA fuses the flip's joint gather into
  # the noise loop and the whole view gets ~3x slower on CPU.
  if p.noise_std > 0:
    x = jnp.where(mask[..., None], gaussian_noise(k_noise, x, p.noise_std, d), 0)
  else:
    x = jnp.where(mask[..., None], x, 0)
  matrix, linear = jnp.eye(d), False
  if p.flip_prob > 0:
    do = jax.random.bernoulli(k_flip, p.flip_prob)
    x = jnp.where(do, x[..., np.asarray(layout.flip), :], x)
    # The mirror of x rides on the linear map so the clip is traversed once.
    matrix, linear = matrix.at[0, 0].set(jnp.where(do, -1.0, 1.0)), True
  if p.shear > 0 or any(p.rotate) or p.scale != (1.0, 1.0):
    rand = random_linear(k_lin, d, rotate=p.rotate, shear=p.shear, scale=p.scale)
    matrix, linear = rand @ matrix, True
  if linear:
    x = apply_linear(x, matrix, d)
  if p.joint_mask_prob > 0:
    x = joint_mask(k_joint, x, p.joint_mask_prob, d)
  if p.axis_mask_prob > 0:
    x = axis_mask(k_axis, x, p.axis_mask_prob, d)
  return x


# ---------------------------------------------------------------- normalisation


def normalise(x, *, layout, centre: str = 'clip', view_align: bool = False, n=None, mask=None):
  """Centres and optionally view-aligns one clip [M, T, V, C].

  centre: 'clip' subtracts person 0's centre joint (layout.center) at the first
    frame where it is present, from every coordinate of the clip; 'frame'
    subtracts person 0's centre joint frame by frame; 'none' leaves it.
  view_align: rotates about the vertical (y) axis so that the shoulder vector
    (right minus left, layout.shoulders) of person 0 at that first frame lies
    along +x; for 2-D layouts the in-plane rotation doing the same.
  Entries outside `mask` (default: presence_mask(x, n)) stay exactly zero.
  """
  layout = _as_layout(layout)
  _check_clip(x, layout, 'normalise')
  _need(centre in CENTRES, f'normalise: centre {centre!r} not in {CENTRES}')
  d = layout.coord_dims
  mask = presence_mask(x, n) if mask is None else mask
  first = jnp.argmax(mask[0, :, layout.center])
  coords = x[..., :d]
  if centre == 'clip':
    coords = coords - coords[0, first, layout.center]
  elif centre == 'frame':
    coords = coords - coords[0, :, layout.center][None, :, None]
  if view_align:
    left, right = layout.shoulders
    v = coords[0, first, right] - coords[0, first, left]
    if d == 3:
      rot = rotation_matrix(jnp.stack([0.0, jnp.arctan2(v[2], v[0]), 0.0]))
    else:
      rot = rotation_matrix(-jnp.arctan2(v[1], v[0]))
    coords = apply_linear(coords, rot, d)
  x = _with_coords(x, coords, d)
  return jnp.where(mask[..., None], x, 0)


# ---------------------------------------------------------------- views


def _view(key, x, n, start, length, *, p: AugParams, layout, frames: int, order=None):
  """Resample -> (frame order) -> normalise -> spatial augmentation of one clip.

  A broken `order` is applied before normalising, so the permuted clip is centred on its
  own first frame like every other view (no off-centre first frame as a static cue).
  """
  clip = resample(x, n, start, length, frames, p.pad_mode)
  if order is not None:
    clip = jnp.take(clip, order, axis=1)
  mask = presence_mask(clip)
  clip = normalise(clip, layout=layout, centre=p.centre, view_align=p.view_align, mask=mask)
  return spatial_augment(key, clip, aug=p, layout=layout, mask=mask)


def _sample_views(key, x, n, *, p, layout, frames, speed_positive, broken_negative, interpolation):
  k_crop, k_pos, k_aug_a, k_aug_p, k_neg, k_interp, k_aug_n = jax.random.split(key, 7)
  start, length = random_crop(k_crop, n, p.crop_ratio)
  if speed_positive and p.positive_window == 'own':
    # Its own crop (SkeletonCLR's second view), then played at the sampled speed; with a
    # speed of 1 this is exactly the baseline's positive.
    p_start, p_length = random_crop(k_pos, n, p.crop_ratio)
    speed = sample_speed(jax.random.fold_in(k_pos, 1), p.speeds, p.speed_range)
    p_start, p_length = speed_window(p_start, p_length, speed)
  elif speed_positive:  # the anchor's window centre, played at the sampled speed
    speed = sample_speed(k_pos, p.speeds, p.speed_range)
    p_start, p_length = speed_window(start, length, speed)
  else:  # SkeletonCLR's second view: same speed, its own crop
    speed = jnp.float32(1.0)
    p_start, p_length = random_crop(k_pos, n, p.crop_ratio)
  view = dict(p=p, layout=layout, frames=frames)
  anchor = _view(k_aug_a, x, n, start, length, **view)
  out = {
    'anchor': anchor,
    'positive': _view(k_aug_p, x, n, p_start, p_length, **view),
    'speed': speed,
  }
  if broken_negative:
    order = broken_order(k_neg, frames, p.negative, p.segments, p.local_window)
    if p.negative_source == 'anchor_shared':
      out['negative'] = jnp.take(anchor, order, axis=1)
    else:
      n_start, n_length = (
        (p_start, p_length) if p.negative_source == 'positive' else (start, length)
      )
      out['negative'] = _view(k_aug_n, x, n, n_start, n_length, order=order, **view)
  if interpolation:
    sparse, dropped = interpolation_input(
      k_interp,
      anchor,
      drop=p.interp_drop,
      stride=p.interp_stride,
      keep_rate=p.interp_keep_rate,
      fill=p.interp_fill,
    )
    out.update(interp_input=sparse, interp_target=anchor, interp_mask=dropped)
  return out


def _check_batch(x, n, layout, frames, where):
  _check_clip(x, layout, where, rank=5)
  _need(jnp.shape(n) == x.shape[:1], f'{where}: n must be [B] = {x.shape[:1]}, got {jnp.shape(n)}')
  _need(isinstance(frames, int) and frames >= 2, f'{where}: frames must be an int >= 2')


def make_views(
  key,
  x,
  n,
  *,
  aug,
  layout,
  frames: int,
  speed_positive: bool = True,
  broken_negative: bool = True,
  interpolation: bool = True,
):
  """The MCC views of a batch (per-sample keys, vmapped).

  Args:
    key: PRNG key for the whole batch.
    x: [B, M, Tmax, V, C] padded sequences. n: [B] valid frames.
    aug: `config.augment` (ConfigDict) or AugParams. layout: Layout or its name.
    frames: T, the clip length (config.data.frames).
  Returns a dict:
    'anchor' [B, M, T, V, C]: random crop (ratio ~ U(crop_ratio) of n),
      resampled to T, normalised, spatially augmented.
    'positive' [B, M, T, V, C]: same centre, playback speed s (window s times as
      long), own spatial augmentation; with speed_positive=False, speed 1 and
      its own independent crop (the SkeletonCLR baseline).
    'speed' [B]: the speeds used.
    'negative' [B, M, T, V, C] (broken_negative): a clip in a non-identity frame
      order (augment.negative). Its frames come from augment.negative_source: the
      positive's window ('positive') or the anchor's ('anchor'), resampled, permuted,
      then normalised and augmented with its own draw; or the anchor's augmented clip
      permuted ('anchor_shared').
    'interp_input', 'interp_target' [B, M, T, V, C], 'interp_mask' [B, T]
      (interpolation): sparse anchor, the anchor, 1.0 at dropped frames.
  """
  p, layout = AugParams.from_config(aug), _as_layout(layout)
  _check_batch(x, n, layout, frames, 'make_views')
  if broken_negative and p.negative == 'segment_shuffle':
    _need(p.segments <= frames, f'augment.segments={p.segments} exceeds frames={frames}')
  fn = lambda k, xi, ni: _sample_views(
    k,
    xi,
    ni,
    p=p,
    layout=layout,
    frames=frames,
    speed_positive=speed_positive,
    broken_negative=broken_negative,
    interpolation=interpolation,
  )
  keys = jax.random.split(key, x.shape[0])
  n = jnp.clip(jnp.asarray(n), 1, x.shape[2])  # views read only frames [0, n)
  return jax.vmap(fn)(keys, jnp.asarray(x, jnp.float32), n)


def eval_clip(x, n, *, aug, layout, frames: int):
  """Deterministic clip for evaluation: the whole valid range resampled to T, normalised.

  x: [B, M, Tmax, V, C], n: [B] -> [B, M, T, V, C]. No random augmentation.
  """
  p, layout = AugParams.from_config(aug), _as_layout(layout)
  _check_batch(x, n, layout, frames, 'eval_clip')

  def one(xi, ni):
    clip = resample(xi, ni, 0.0, ni, frames, 'clip')
    return normalise(clip, layout=layout, centre=p.centre, view_align=p.view_align)

  return jax.vmap(one)(jnp.asarray(x, jnp.float32), jnp.clip(jnp.asarray(n), 1, x.shape[2]))
