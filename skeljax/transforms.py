"""Reusable skeleton transforms: temporal resampling and crops, spatial augmentation, normalisation.

Pure JAX, with nothing specific to MCC: skeljax.augment builds the MCC views from
these, and any other pipeline may use them alone.

Shapes. One sample is `x: [M, T, V, C]` (persons, frames, joints, channels) with
`n` valid frames; frames `>= n` are zero padding and an absent person is all
zeros. Only the first `layout.coord_dims` channels are spatial; the rest
(OpenPose confidence) are never changed by a spatial transform (flip moves them
with their joint).

Every stochastic function takes `key` first, is side-effect free and works
eagerly and under jit/vmap. Settings (`layout`, `t_out`, the augmentation
amplitudes) are static Python values: close over them (`functools.partial`)
before `jax.jit`.

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
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from skeljax import skeleton

PAD_MODES = ('clip', 'edge', 'shift')
STREAMS = ('joint', 'motion', 'bone')
CENTRES = ('clip', 'frame', 'none')
_EPS = float(np.finfo(np.float32).eps)
_SNAP_ULPS = 8


def need(cond, msg: str) -> None:
  """Raises ValueError(msg) unless cond: the one-line check of every transform's input."""
  if not cond:
    raise ValueError(msg)


def as_layout(layout) -> skeleton.Layout:
  return skeleton.get_layout(layout) if isinstance(layout, str) else layout


def check_clip(x, layout, where: str, rank: int = 4) -> None:
  """ValueError unless x is [M, T, V, C] (rank 4) or [B, M, T, V, C] (rank 5) for layout."""
  dims = '[B, M, T, V, C]' if rank == 5 else '[M, T, V, C]'
  need(jnp.ndim(x) == rank, f'{where}: x must be {dims}, got shape {tuple(jnp.shape(x))}')
  v, c = x.shape[-2:]
  need(
    v == layout.num_joints,
    f'{where}: x has {v} joints but layout {layout.name} has {layout.num_joints}',
  )
  need(
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
  need(jnp.ndim(x) == 4, f'resample: x must be [M, T, V, C], got shape {tuple(jnp.shape(x))}')
  need(pad_mode in PAD_MODES, f'resample: pad_mode {pad_mode!r} not in {PAD_MODES}')
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
  layout = as_layout(layout)
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


def spatial_augment(
  key,
  x,
  *,
  layout,
  noise_std: float = 0.0,
  flip_prob: float = 0.0,
  shear: float = 0.0,
  rotate: tuple[float, float, float] = (0.0, 0.0, 0.0),
  scale: tuple[float, float] = (1.0, 1.0),
  joint_mask_prob: float = 0.0,
  axis_mask_prob: float = 0.0,
  mask=None,
):
  """Noise, random flip, shear/rotation/scale, joint and axis masking of one clip.

  In that order: Gaussian noise N(0, noise_std^2) on the entries in `mask`; left/right
  flip with probability flip_prob; one affine map scale * R @ S (random_linear); then
  joint and axis masking. Every step after the noise maps zero entries to zero. The
  defaults switch every step off (the clip comes back masked, otherwise unchanged).

  Args:
    x: [M, T, V, C]. mask: [M, T, V] entries kept non-zero (default presence_mask(x)).
  Returns:
    [M, T, V, C]; non-coordinate channels untouched (only moved by the flip).
  """
  layout = as_layout(layout)
  check_clip(x, layout, 'spatial_augment')
  d = layout.coord_dims
  mask = presence_mask(x) if mask is None else mask
  k_flip, k_lin, k_noise, k_joint, k_axis = jax.random.split(key, 5)
  # Noise goes first, masked, so the mask never has to follow the flip's joint permutation.
  # This order is also the fast one: with noise last, XLA fuses the flip's joint gather into
  # the noise loop and the whole view gets ~3x slower on CPU.
  if noise_std > 0:
    x = jnp.where(mask[..., None], gaussian_noise(k_noise, x, noise_std, d), 0)
  else:
    x = jnp.where(mask[..., None], x, 0)
  matrix, linear = jnp.eye(d), False
  if flip_prob > 0:
    do = jax.random.bernoulli(k_flip, flip_prob)
    x = jnp.where(do, x[..., np.asarray(layout.flip), :], x)
    # The mirror of x rides on the linear map so the clip is traversed once.
    matrix, linear = matrix.at[0, 0].set(jnp.where(do, -1.0, 1.0)), True
  if shear > 0 or any(rotate) or tuple(scale) != (1.0, 1.0):
    rand = random_linear(k_lin, d, rotate=rotate, shear=shear, scale=scale)
    matrix, linear = rand @ matrix, True
  if linear:
    x = apply_linear(x, matrix, d)
  if joint_mask_prob > 0:
    x = joint_mask(k_joint, x, joint_mask_prob, d)
  if axis_mask_prob > 0:
    x = axis_mask(k_axis, x, axis_mask_prob, d)
  return x


# ---------------------------------------------------------------- normalisation

# Frames of person 0 that the view alignment averages its vectors over (normalise). One
# frame alone jitters: on NW-UCLA the shoulder heading ranges over 7.6 degrees (median;
# p90 32) across the first five frames (benchmarks/view_align_stats.py).
ALIGN_FRAMES = 5
# Vectors shorter than this (in coordinate units) are degenerate: no direction to align.
_ALIGN_EPS = 1e-6


def _unit(v):
  """(v / |v|, |v| > _ALIGN_EPS); a degenerate v gives zeros, never NaN."""
  norm = jnp.sqrt(jnp.sum(v * v))
  ok = norm > _ALIGN_EPS
  return jnp.where(ok, v / jnp.where(ok, norm, 1.0), 0.0), ok


def view_rotation(coords, mask, layout, frames: int = ALIGN_FRAMES, level: bool = True):
  """The [d, d] rotation that `normalise(view_align=True)` applies to a clip.

  coords: [M, T, V, d] (d = layout.coord_dims), mask: [M, T, V] present entries.
  Read from person 0 over its first `frames` frames in which both shoulders and both
  hips are present (fewer if the clip has fewer; none: the identity):
    spine    mean over those frames of (shoulder midpoint - hip midpoint),
    heading  unit(shoulder vector) + unit(hip vector), each vector (right - left)
             averaged over the frames and made horizontal (orthogonal to the spine).
  3-D: the rotation takes the spine to the data's up direction (+y, or -y when not
  layout.y_up), which removes the camera's pitch and roll, and the heading to +x, which
  removes its yaw. A degenerate spine (zero length) falls back to the vertical axis, so
  only the yaw is removed; a degenerate heading (zero, or along the spine) gives the
  identity. 2-D: only the in-plane rotation that takes the spine to the image's up
  direction (camera roll): the heading is a rotation out of the image plane, which no
  in-plane rotation undoes (the old rule, shoulders to +x, turned everyone facing the
  camera upside down, their right shoulder being on the image's left); a degenerate
  spine gives the identity.
  level=False keeps the camera's pitch and roll: the spine is taken as the vertical axis,
  so only the yaw is removed in 3-D (and nothing in 2-D).
  """
  d = layout.coord_dims
  (ls, rs), (lh, rh) = layout.shoulders, layout.hips
  p = coords[0]  # [T, V, d]
  ok = jnp.all(mask[0][:, np.asarray([ls, rs, lh, rh])], axis=-1)  # [T]
  use = ok & (jnp.cumsum(ok) <= frames)
  w = use.astype(p.dtype) / jnp.maximum(jnp.sum(use), 1).astype(p.dtype)

  def mean(v):  # [T, d] -> [d], over the used frames
    return jnp.sum(w[:, None] * v, axis=0)

  spine = mean(0.5 * (p[:, ls] + p[:, rs]) - 0.5 * (p[:, lh] + p[:, rh]))
  up = 1.0 if layout.y_up else -1.0
  u, spine_ok = _unit(spine)
  if not level:
    if d == 2:
      return jnp.eye(2, dtype=p.dtype)
    u, spine_ok = jnp.asarray([0.0, up, 0.0], p.dtype), jnp.bool_(False)
  if d == 2:
    # The rotation taking u to (0, up): cos = u . (0, up), sin = u x (0, up).
    c, sn = u[1] * up, u[0] * up
    rot = jnp.stack([jnp.stack([c, -sn]), jnp.stack([sn, c])])
    return jnp.where(spine_ok, rot, jnp.eye(2, dtype=rot.dtype))
  u = jnp.where(spine_ok, u, jnp.asarray([0.0, up, 0.0], p.dtype))

  def horizontal(v):
    return _unit(v - jnp.dot(v, u) * u)[0]

  shoulders = mean(p[:, rs] - p[:, ls])
  hips = mean(p[:, rh] - p[:, lh])
  h, heading_ok = _unit(horizontal(shoulders) + horizontal(hips))
  # Rows: the heading, the spine (signed to the data's up) and their cross product, a
  # right-handed orthonormal basis, so a proper rotation (no mirror).
  rot = jnp.stack([h, up * u, jnp.cross(h, up * u)])
  return jnp.where(heading_ok, rot, jnp.eye(3, dtype=rot.dtype))


def normalise(
  x,
  *,
  layout,
  centre: str = 'clip',
  view_align: bool = False,
  n=None,
  mask=None,
  level_spine: bool = True,
):
  """Centres and optionally view-aligns one clip [M, T, V, C].

  centre: 'clip' subtracts person 0's centre joint (layout.center) at the first
    frame where it is present, from every coordinate of the clip; 'frame'
    subtracts person 0's centre joint frame by frame; 'none' leaves it.
  view_align: rotates the clip (about the origin, after centring) by
    view_rotation: 3-D clips so that person 0's spine points up and the average of
    its shoulder and hip headings lies along +x, both averaged over its first
    ALIGN_FRAMES present frames; 2-D clips so that the spine points up in the image.
  level_spine: False turns the view alignment into a yaw-only rotation (view_rotation's
    `level`).
  Entries outside `mask` (default: presence_mask(x, n)) stay exactly zero.
  """
  layout = as_layout(layout)
  check_clip(x, layout, 'normalise')
  need(centre in CENTRES, f'normalise: centre {centre!r} not in {CENTRES}')
  d = layout.coord_dims
  mask = presence_mask(x, n) if mask is None else mask
  first = jnp.argmax(mask[0, :, layout.center])
  coords = x[..., :d]
  if centre == 'clip':
    coords = coords - coords[0, first, layout.center]
  elif centre == 'frame':
    coords = coords - coords[0, :, layout.center][None, :, None]
  if view_align:
    coords = apply_linear(coords, view_rotation(coords, mask, layout, level=level_spine), d)
  x = _with_coords(x, coords, d)
  return jnp.where(mask[..., None], x, 0)


# ---------------------------------------------------------------- input streams


def to_stream(x, layout, stream: str, n=None):
  """The joint, motion or bone stream of clips (the '3s' inputs of SkeletonCLR, AimCLR, CMD).

  'joint' is x itself. 'motion' at frame t is x[t+1] - x[t] (per person and joint); the
  last frame's motion is 0. 'bone' at joint v is x[v] - x[parent(v)] (layout.parents);
  the root's bone is the zero vector, as in pyskl and SkeletonCLR, so the bone stream,
  like the motion stream, does not see where the skeleton stands.
  Only the first layout.coord_dims channels are differenced; the others (OpenPose
  confidence) pass through. Zeros stay zeros: an all-zero entry stays all-zero, and a
  difference with an absent entry (the frame after the last valid one, an undetected
  parent joint) is 0 rather than a jump to the origin.

  Args:
    x: [..., M, T, V, C] for layout.
    n: [...] valid frames, or None when all T are; frames >= n count as absent.
  Returns:
    [..., M, T, V, C] in x's dtype.
  """
  layout = as_layout(layout)
  need(stream in STREAMS, f'to_stream: stream {stream!r} is not one of {", ".join(STREAMS)}')
  need(
    jnp.ndim(x) >= 4 and tuple(x.shape[-2:]) == (layout.num_joints, layout.num_channels),
    f'to_stream: x must be [..., M, T, {layout.num_joints}, {layout.num_channels}] for layout '
    f'{layout.name}, got shape {tuple(jnp.shape(x))}',
  )
  if stream == 'joint':
    return x
  present = jnp.any(x != 0, axis=-1)  # [..., M, T, V]
  if n is not None:
    valid = jnp.arange(x.shape[-3]) < jnp.asarray(n)[..., None]  # [..., T]
    present = present & valid[..., None, :, None]
  d = layout.coord_dims
  coords = x[..., :d]
  if stream == 'motion':
    shift = lambda a: jnp.concatenate([a[..., 1:, :, :], jnp.zeros_like(a[..., :1, :, :])], -3)
    diff = shift(coords) - coords
    both = present & shift(present[..., None])[..., 0]
  else:
    # The root is its own parent, so its bone is x - x = 0.
    parent = np.where(np.asarray(layout.parents) < 0, np.arange(layout.num_joints), layout.parents)
    diff = coords - coords[..., parent, :]
    both = present & present[..., parent]
  x = _with_coords(x, jnp.where(both[..., None], diff, 0), d)
  return jnp.where(present[..., None], x, 0)
