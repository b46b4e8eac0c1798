"""The MCC views of a batch: anchor, speed positive, motion-broken negative, interpolation.

`make_views` builds every view a pretraining step trains on from one key, out of the
reusable transforms in skeljax.transforms (resampling, crops, spatial augmentation,
normalisation); this module adds what is MCC's own: the motion-broken frame orders, the
frame- or span-dropped interpolation input, and `AugParams`, the one place where `config.augment`
is read and checked.

Shapes. A batch is `x: [B, M, T, V, C]` (persons, frames, joints, channels) with
`n: [B]` valid frames; one sample is `[M, T, V, C]`. Frames `>= n` are zero padding
and are never read; an absent person stays all zeros in every view (only
interp_input's 'linear' fill mixes neighbouring frames, as resampling does).

Every stochastic function takes `key` first, is side-effect free and works eagerly and
under jit/vmap. Config values (`aug`, `layout`, `frames`) are static Python values: close
over them (`functools.partial`) before `jax.jit`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from skeljax import transforms
from skeljax.transforms import need

NEGATIVES = ('segment_shuffle', 'reverse', 'local_shuffle')
NEGATIVE_SOURCES = ('positive', 'anchor', 'anchor_twin', 'anchor_shared')
POSITIVE_WINDOWS = ('centred', 'own')
SPEED_FITS = ('fit', 'cap', 'clip')
MAX_SPEED = 8.0  # a speed beyond 8x leaves too few source frames per output frame
INTERP_DROPS = ('stride', 'random', 'span')
INTERP_FILLS = ('linear', 'zero')
VIEWS = ('anchor', 'positive')  # augment.extreme_views: the views given the extreme set


# ---------------------------------------------------------------- parameters


def _one_of(field: str, value: str, choices: tuple[str, ...]) -> None:
  need(value in choices, f'augment.{field} {value!r} is not one of {", ".join(choices)}')


@dataclasses.dataclass(frozen=True)
class AugParams:
  """`config.augment` read once into hashable, validated Python values.

  The one home of the augmentation checks: config.validate builds it (with data.frames)
  before a run starts, and make_views / eval_clip build it again for direct callers.
  """

  crop_ratio: tuple[float, ...]
  speeds: tuple[float, ...]
  speed_range: tuple[float, ...]
  positive_window: str
  speed_fit: str
  independent_speeds: bool
  resample_noise_std: float
  pad_mode: str
  negative: str
  negative_source: str
  segments: int
  local_window: int
  interp_drop: str
  interp_stride: int
  interp_keep_rate: float
  interp_fill: str
  span_frames: tuple[int, ...]
  span_count: int
  span_joint_prob: float
  shear: float
  rotate: tuple[float, ...]
  scale: tuple[float, ...]
  flip_prob: float
  noise_std: float
  joint_mask_prob: float
  axis_mask_prob: float
  centre: str
  view_align: bool
  level_spine: bool
  extreme_views: tuple[str, ...] = VIEWS

  @classmethod
  def from_config(cls, aug, frames: int | None = None) -> AugParams:
    """Builds from a `config.augment` ConfigDict (or checks an AugParams as is).

    Raises ValueError (one line) for a value the views cannot use; with `frames`
    (data.frames) also for one that does not fit clips of that length.
    """
    if isinstance(aug, cls):
      aug.check(frames)
      return aug
    rotate = aug.rotate
    rotate = tuple(float(r) for r in rotate) if np.ndim(rotate) else (float(rotate),) * 3
    p = cls(
      crop_ratio=tuple(float(r) for r in aug.crop_ratio),
      speeds=tuple(float(s) for s in aug.speeds),
      speed_range=tuple(float(s) for s in aug.speed_range),
      positive_window=str(aug.get('positive_window', 'centred')),
      speed_fit=str(aug.get('speed_fit', 'clip')),
      independent_speeds=bool(aug.get('independent_speeds', False)),
      resample_noise_std=float(aug.get('resample_noise_std', 0.0)),
      pad_mode=str(aug.pad_mode),
      negative=str(aug.negative),
      negative_source=str(aug.get('negative_source', 'positive')),
      segments=int(aug.segments),
      local_window=int(aug.local_window),
      interp_drop=str(aug.interp_drop),
      interp_stride=int(aug.interp_stride),
      interp_keep_rate=float(aug.interp_keep_rate),
      interp_fill=str(aug.interp_fill),
      # .get: configs (and exported encoders' metadata) saved before the span fields.
      span_frames=tuple(aug.get('span_frames', (4, 8))),  # whole frames: checked, not cast
      span_count=int(aug.get('span_count', 2)),
      span_joint_prob=float(aug.get('span_joint_prob', 1.0)),
      shear=float(aug.shear),
      rotate=rotate,
      scale=tuple(float(s) for s in aug.scale),
      flip_prob=float(aug.flip_prob),
      noise_std=float(aug.noise_std),
      joint_mask_prob=float(aug.joint_mask_prob),
      axis_mask_prob=float(aug.axis_mask_prob),
      centre=str(aug.centre),
      view_align=bool(aug.view_align),
      level_spine=bool(aug.get('level_spine', True)),
      extreme_views=tuple(str(v) for v in aug.get('extreme_views', VIEWS)),
    )
    p.check(frames)
    return p

  def check(self, frames: int | None = None) -> None:
    """Raises ValueError (one line) for the first value the views cannot use."""
    crop = self.crop_ratio
    need(
      len(crop) == 2 and 0 < crop[0] <= crop[1] <= 1,
      f'augment.crop_ratio must be (lo, hi) with 0 < lo <= hi <= 1, got {crop}',
    )
    need(
      all(0 < s <= MAX_SPEED for s in self.speeds),
      f'augment.speeds must lie in (0, {MAX_SPEED:g}], got {self.speeds}',
    )
    sr = self.speed_range
    need(
      not sr or (len(sr) == 2 and 0 < sr[0] <= sr[1] <= MAX_SPEED),
      f'augment.speed_range must be () or (lo, hi) with 0 < lo <= hi <= {MAX_SPEED:g}, got {sr}',
    )
    need(sr or self.speeds, 'augment.speeds is empty; give speeds or a speed_range')
    _one_of('positive_window', self.positive_window, POSITIVE_WINDOWS)
    _one_of('speed_fit', self.speed_fit, SPEED_FITS)
    need(
      not self.independent_speeds or self.speed_fit == 'fit',
      "augment.independent_speeds needs augment.speed_fit='fit' (the clipped windows "
      'cannot keep a relative speed)',
    )
    need(
      self.resample_noise_std >= 0,
      f'augment.resample_noise_std must be >= 0, got {self.resample_noise_std}',
    )
    _one_of('pad_mode', self.pad_mode, transforms.PAD_MODES)
    _one_of('negative', self.negative, NEGATIVES)
    _one_of('negative_source', self.negative_source, NEGATIVE_SOURCES)
    need(
      self.segments >= 2,
      f'augment.segments must be >= 2 (one segment cannot be shuffled), got {self.segments}',
    )
    if frames is not None:
      need(
        self.segments <= frames,
        f'augment.segments={self.segments} must be <= data.frames={frames}',
      )
    need(self.local_window >= 2, f'augment.local_window must be >= 2, got {self.local_window}')
    _one_of('interp_drop', self.interp_drop, INTERP_DROPS)
    need(self.interp_stride >= 2, f'augment.interp_stride must be >= 2, got {self.interp_stride}')
    need(
      0 < self.interp_keep_rate < 1,
      f'augment.interp_keep_rate must be in (0, 1), got {self.interp_keep_rate}',
    )
    _one_of('interp_fill', self.interp_fill, INTERP_FILLS)
    # The span lengths must fit the clip only when spans are drawn (inert otherwise).
    fit = frames if self.interp_drop == 'span' else None
    check_spans(self.span_frames, self.span_count, self.span_joint_prob, fit, 'data.frames')
    need(self.shear >= 0, f'augment.shear must be >= 0, got {self.shear}')
    need(len(self.rotate) == 3, f'augment.rotate needs 3 angles (x, y, z), got {self.rotate}')
    need(
      len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1],
      f'augment.scale must be (lo, hi) with 0 < lo <= hi, got {self.scale}',
    )
    for name in ('flip_prob', 'joint_mask_prob', 'axis_mask_prob'):
      value = getattr(self, name)
      need(0 <= value <= 1, f'augment.{name} is a probability in [0, 1], got {value}')
    need(self.noise_std >= 0, f'augment.noise_std must be >= 0, got {self.noise_std}')
    _one_of('centre', self.centre, transforms.CENTRES)
    for v in self.extreme_views:
      _one_of('extreme_views entry', v, VIEWS)

  def spatial(self, extreme: bool = True) -> dict:
    """The keyword settings of transforms.spatial_augment.

    The normal set is SkeletonCLR's spatial part, shear and scale (the crop is temporal);
    `extreme` adds rotation, flip, noise and joint/axis masking (AimCLR's split: its
    extreme augmentations stay out of the plain InfoNCE pair).
    """
    normal = dict(shear=self.shear, scale=self.scale)
    if not extreme:
      return normal
    return dict(
      normal,
      noise_std=self.noise_std,
      flip_prob=self.flip_prob,
      rotate=self.rotate,
      joint_mask_prob=self.joint_mask_prob,
      axis_mask_prob=self.axis_mask_prob,
    )


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
  need(2 <= k <= t, f'segment_shuffle needs 2 <= segments <= frames, got {k} and {t}')
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
  need(window >= 2 and t >= 2, f'local_shuffle needs window >= 2 and frames >= 2, got {window}')
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
    need(t >= 2, 'reverse needs at least 2 frames')
    return jnp.arange(t - 1, -1, -1, dtype=jnp.int32)
  if method == 'local_shuffle':
    return local_shuffle_order(key, t, local_window)
  raise ValueError(f'unknown negative {method!r}; choose from {", ".join(NEGATIVES)}')


# ---------------------------------------------------------------- interpolation (continuity)


def check_spans(span_frames, count: int, joint_prob: float, frames=None, where='frames') -> None:
  """Raises ValueError (one line) for span settings that cannot be drawn.

  A span lies inside [1, T - 2] (the fill needs a kept frame on either side), so its
  longest length is T - 2; `frames` (T, named `where` in the message) checks that.
  """
  sf = tuple(span_frames)
  need(
    len(sf) == 2 and all(isinstance(f, int | np.integer) for f in sf) and 1 <= sf[0] <= sf[1],
    f'augment.span_frames must be (lo, hi) whole frames with 1 <= lo <= hi, got {sf}',
  )
  need(
    isinstance(count, int | np.integer) and count >= 1,
    f'augment.span_count must be a whole number >= 1, got {count}',
  )
  need(0 < joint_prob <= 1, f'augment.span_joint_prob must be in (0, 1], got {joint_prob}')
  if frames is not None:
    need(
      sf[1] <= frames - 2,
      f'augment.span_frames={sf}: a span of {sf[1]} frames does not fit {where}={frames} '
      f'(spans lie inside frames 1..T-2, so at most {frames - 2} frames)',
    )


def span_mask(key, t: int, v: int, *, span_frames=(4, 8), count: int = 2, joint_prob=1.0):
  """[T, V] bool, True at the (frame, joint) entries of `count` masked spans.

  Each span has a length drawn uniformly from span_frames = (lo, hi) (inclusive) and a
  uniform start such that it lies inside frames [1, T - 2]: frames 0 and T - 1 stay kept,
  so every masked entry has a kept frame on either side to fill from. Within each span,
  each joint is masked with probability `joint_prob` (at least one joint per span); the
  other joints keep their true values. Spans may overlap.
  """
  check_spans(span_frames, count, joint_prob, t, 'T')
  lo, hi = span_frames
  frame = jnp.arange(t)
  mask = jnp.zeros((t, v), bool)
  for k in jax.random.split(key, count):
    k_len, k_start, k_joints, k_one = jax.random.split(k, 4)
    length = jax.random.randint(k_len, (), lo, hi + 1)
    start = jax.random.randint(k_start, (), 1, t - length)  # last frame <= T - 2
    frames = (frame >= start) & (frame < start + length)
    joints = jax.random.bernoulli(k_joints, joint_prob, (v,))
    # No joint drawn: one chosen uniformly instead, so every span masks something.
    one = jnp.arange(v) == jax.random.randint(k_one, (), 0, v)
    joints = jnp.where(joints.any(), joints, one)
    mask = mask | (frames[:, None] & joints[None, :])
  return mask


def linear_fill(clip, kept):
  """Fills the entries of `clip` [M, T, V, C] where `kept` [T, V] is False, per joint.

  Each dropped (frame, joint) entry becomes the linear interpolation, in time, of that
  joint's nearest kept frames before and after it (frames 0 and T - 1 must be kept);
  kept entries are returned unchanged. Exact on motion linear in time.
  """
  t = clip.shape[1]
  frame = jnp.arange(t)[:, None]
  prev = jax.lax.cummax(jnp.where(kept, frame, 0), axis=0)  # [T, V]
  nxt = jax.lax.cummin(jnp.where(kept, frame, t - 1), axis=0, reverse=True)
  w = ((frame - prev) / jnp.maximum(nxt - prev, 1)).astype(clip.dtype)
  x0 = jnp.take_along_axis(clip, prev[None, :, :, None], axis=1)
  x1 = jnp.take_along_axis(clip, nxt[None, :, :, None], axis=1)
  return x0 + w[None, :, :, None] * (x1 - x0)


def interpolation_input(
  key,
  clip,
  *,
  drop: str = 'stride',
  stride: int = 2,
  keep_rate: float = 0.5,
  fill='linear',
  span_frames=(4, 8),
  span_count: int = 2,
  span_joint_prob: float = 1.0,
):
  """Drops frames (or spans of joints) of `clip` [M, T, V, C]; returns (sparse input, mask).

  'stride' keeps frames 0, r, 2r, ...; 'random' keeps each with prob keep_rate; both drop
  whole frames and return the dropped mask [T] float32. 'span' masks span_count spans of
  span_frames = (lo, hi) frames, within each a random subset of joints (each with
  probability span_joint_prob; `span_mask`), and returns the mask [T, V] float32.
  The first and last frames are always kept. Dropped entries are filled by linear
  interpolation of the same joint's nearest kept frames on either side ('linear') or
  zeros ('zero'); kept entries are returned unchanged. The target is `clip` itself.
  """
  t, v = clip.shape[1], clip.shape[2]
  frame = jnp.arange(t)
  if drop == 'stride':
    kept = frame % stride == 0
  elif drop == 'random':
    kept = jax.random.bernoulli(key, keep_rate, (t,))
  elif drop == 'span':
    kept = ~span_mask(
      key, t, v, span_frames=span_frames, count=span_count, joint_prob=span_joint_prob
    )
  else:
    raise ValueError(f'unknown interp_drop {drop!r}; use {", ".join(INTERP_DROPS)}')
  ends = (frame == 0) | (frame == t - 1)
  kept = kept | (ends if kept.ndim == 1 else ends[:, None])
  kept_tv = jnp.broadcast_to(kept[:, None], (t, v)) if kept.ndim == 1 else kept
  if fill == 'linear':
    sparse = linear_fill(clip, kept_tv)
  elif fill == 'zero':
    sparse = jnp.where(kept_tv[None, :, :, None], clip, 0)
  else:
    raise ValueError(f'unknown interp_fill {fill!r}; use {" or ".join(INTERP_FILLS)}')
  return sparse, (~kept).astype(jnp.float32)


# ---------------------------------------------------------------- views


def _view(key, x, n, start, length, *, p: AugParams, layout, frames: int, order=None, extreme=True):
  """Resample -> (noise) -> (frame order) -> normalise -> spatial augmentation of one clip.

  `extreme`: the full spatial set, or only the normal one (AugParams.spatial).

  `resample_noise_std` > 0 adds Gaussian noise to the resampled frames of every view, so a
  slowed-down clip (linearly interpolated between source frames, hence smoother) cannot be
  told from a sped-up one by its smoothness alone.
  A broken `order` is applied before normalising, so the permuted clip is centred on its
  own first frame like every other view (no off-centre first frame as a static cue).
  """
  clip = transforms.resample(x, n, start, length, frames, p.pad_mode)
  mask = transforms.presence_mask(clip)
  if p.resample_noise_std > 0:
    noisy = transforms.gaussian_noise(
      jax.random.fold_in(key, 1), clip, p.resample_noise_std, layout.coord_dims
    )
    clip = jnp.where(mask[..., None], noisy, 0)
  if order is not None:
    clip = jnp.take(clip, order, axis=1)
    mask = jnp.take(mask, order, axis=1)
  clip = transforms.normalise(
    clip,
    layout=layout,
    centre=p.centre,
    view_align=p.view_align,
    mask=mask,
    level_spine=p.level_spine,
  )
  return transforms.spatial_augment(key, clip, layout=layout, mask=mask, **p.spatial(extreme))


def _longest_fit(n, frames: int):
  """The longest window whose `frames` sample positions (transforms.resample: p_i = start +
  (i + 0.5) * length / frames - 0.5) all lie in [0, n - 1]: length * (1 - 1/frames) <= n - 1."""
  return jnp.maximum(n - 1.0, 0.0) * frames / (frames - 1)


def _fitting_starts(length, n, frames: int):
  """The first and last start at which a window of `length` keeps its positions in [0, n - 1]."""
  lo = 0.5 - 0.5 * length / frames
  return lo, jnp.maximum(n - 1.0 - length * (1.0 - 1.0 / frames), 0.0) + lo


def fitted_windows(key, n, p: AugParams, frames: int):
  """The anchor's and the speed clip's windows with an exact relative speed ('fit').

  One crop length L ~ U(crop_ratio) * n is played at the anchor's speed s_a (1, or drawn
  like the positive's with `independent_speeds`) and at the speed clip's s: windows of
  L * s_a and L * s frames, shortened together where the longer one would not fit. So the
  relative speed s / s_a is exactly what was drawn, and no frame is a held copy of the
  edge frame ('clip' holds about 32% of a speed-2 clip's frames and compounds the speed
  with an independent crop).
  A window fits when every sample position of its `frames` output frames (transforms.
  resample: p_i = start + (i + 0.5) * length / frames - 0.5) lies in [0, n - 1], so even a
  slowed window (length < frames) reads no frame past the valid ones: that needs
  length * (1 - 1 / frames) <= n - 1. Starts are uniform over the positions that fit;
  `positive_window='centred'` puts the speed clip on the anchor's centre instead, slid
  inside.

  Returns ((anchor start, length), (speed start, length), (same-speed start, length),
  relative speed): the same-speed window has the anchor's length at its own start.
  """
  k_u, k_s, k_a = jax.random.split(key, 3)
  u = jax.random.uniform(k_u, (4,))
  n = jnp.asarray(n, jnp.float32)
  base = (p.crop_ratio[0] + (p.crop_ratio[1] - p.crop_ratio[0]) * u[0]) * n
  s = transforms.sample_speed(k_s, p.speeds, p.speed_range)
  s_a = transforms.sample_speed(k_a, p.speeds, p.speed_range) if p.independent_speeds else 1.0
  la, ls = base * s_a, base * s
  fit = jnp.minimum(1.0, _longest_fit(n, frames) / jnp.maximum(la, ls))
  la, ls = la * fit, ls * fit
  a_lo, a_hi = _fitting_starts(la, n, frames)
  s_lo, s_hi = _fitting_starts(ls, n, frames)
  a_start = a_lo + u[1] * (a_hi - a_lo)
  if p.positive_window == 'centred':
    s_start = jnp.clip(a_start + 0.5 * (la - ls), s_lo, s_hi)
  else:
    s_start = s_lo + u[2] * (s_hi - s_lo)
  same = (a_lo + u[3] * (a_hi - a_lo), la)
  return (a_start, la), (s_start, ls), same, s / s_a


def capped_window(start, length, n, frames: int):
  """The window cut to the valid frames ('cap'): no longer than they allow, slid inside.

  A window fits when every sample position of its `frames` output frames lies in
  [0, n - 1] (the rule fitted_windows uses). A longer one is shortened to the longest that
  fits, keeping its centre as far as the valid frames allow: a speed-2 clip of a long crop
  plays the whole sequence at a lower speed instead of holding its edge frame (the old
  'clip' window) or shortening the anchor ('fit'). Returns (start, length).
  """
  n = jnp.asarray(n, jnp.float32)
  capped = jnp.minimum(length, _longest_fit(n, frames))
  lo, hi = _fitting_starts(capped, n, frames)
  return jnp.clip(start + 0.5 * (length - capped), lo, hi), capped


def _sample_views(
  key, x, n, *, p, layout, frames, speed_positive, broken_negative, interpolation, speed_pair=False
):
  k_crop, k_pos, k_aug_a, k_aug_p, k_neg, k_interp, k_aug_n = jax.random.split(key, 7)
  if speed_positive and p.speed_fit == 'fit':
    (start, length), (s_start, s_length), same, speed = fitted_windows(k_pos, n, p, frames)
  else:
    start, length = transforms.random_crop(k_crop, n, p.crop_ratio)
    same = transforms.random_crop(k_pos, n, p.crop_ratio)  # SkeletonCLR's second view
    if speed_positive and p.positive_window == 'own':
      # Its own crop, then played at the sampled speed, the window clipped at the valid
      # frames: with a speed of 1 this is exactly the baseline's positive.
      s_start, s_length = same
      speed = transforms.sample_speed(jax.random.fold_in(k_pos, 1), p.speeds, p.speed_range)
      s_start, s_length = transforms.speed_window(s_start, s_length, speed)
    elif speed_positive:  # the anchor's window centre, played at the sampled speed
      speed = transforms.sample_speed(k_pos, p.speeds, p.speed_range)
      s_start, s_length = transforms.speed_window(start, length, speed)
    if speed_positive and p.speed_fit == 'cap':
      # The speed actually played: the window's length over its length at speed 1.
      unscaled = s_length / speed
      s_start, s_length = capped_window(s_start, s_length, n, frames)
      speed = s_length / unscaled
    if not speed_positive:
      speed = jnp.float32(1.0)
      s_start, s_length = same
  # The positive is the speed clip, or (speed_pair: RSPNet's two positives) the same-speed
  # clip, the speed clip coming apart as 'speed_clip'.
  p_start, p_length = same if speed_pair else (s_start, s_length)
  view = dict(p=p, layout=layout, frames=frames)
  anchor_extreme = 'anchor' in p.extreme_views
  anchor = _view(k_aug_a, x, n, start, length, extreme=anchor_extreme, **view)
  # The broken clip stands in the positive's place, so it gets the positive's set.
  view_p = dict(view, extreme='positive' in p.extreme_views)
  out = {
    'anchor': anchor,
    'positive': _view(k_aug_p, x, n, p_start, p_length, **view_p),
    'speed': jnp.asarray(speed, jnp.float32),
  }
  if speed_pair:
    k_aug_s = jax.random.fold_in(key, 7)
    out['speed_clip'] = _view(k_aug_s, x, n, s_start, s_length, **view_p)
  if broken_negative:
    order = broken_order(k_neg, frames, p.negative, p.segments, p.local_window)
    if p.negative_source == 'anchor_shared':
      out['negative'] = jnp.take(anchor, order, axis=1)
    elif p.negative_source == 'anchor_twin':
      # The anchor's window and its augmentation draw: only the frame order differs (it is
      # centred and aligned on its own first frames, as every view is).
      out['negative'] = _view(
        k_aug_a, x, n, start, length, order=order, extreme=anchor_extreme, **view
      )
    else:
      n_start, n_length = (
        (p_start, p_length) if p.negative_source == 'positive' else (start, length)
      )
      out['negative'] = _view(k_aug_n, x, n, n_start, n_length, order=order, **view_p)
  if interpolation:
    sparse, dropped = interpolation_input(
      k_interp,
      anchor,
      drop=p.interp_drop,
      stride=p.interp_stride,
      keep_rate=p.interp_keep_rate,
      fill=p.interp_fill,
      span_frames=p.span_frames,
      span_count=p.span_count,
      span_joint_prob=p.span_joint_prob,
    )
    out.update(interp_input=sparse, interp_target=anchor, interp_mask=dropped)
  return out


def _check_batch(x, n, layout, frames, where):
  transforms.check_clip(x, layout, where, rank=5)
  need(jnp.shape(n) == x.shape[:1], f'{where}: n must be [B] = {x.shape[:1]}, got {jnp.shape(n)}')
  need(isinstance(frames, int) and frames >= 2, f'{where}: frames must be an int >= 2')


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
  speed_pair: bool = False,
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
    'positive' [B, M, T, V, C]: the clip at playback speed s relative to the anchor,
      own spatial augmentation. Its window: augment.speed_fit='fit' (fitted_windows)
      the anchor's crop length times s, within the valid frames; 'clip' its own crop
      (positive_window='own') or the anchor's centre ('centred'), s times as long and
      clipped at the valid frames. With speed_positive=False, speed 1 and its own
      independent crop (the SkeletonCLR baseline).
      With speed_pair, the positive is at the anchor's speed (its own crop: the
      anchor's length under speed_fit='fit') and the speed-changed clip is
      'speed_clip' [B, M, T, V, C] (RSPNet / RVTCLR: both are positives).
    'speed' [B]: the speed clip's playback speed relative to the anchor's.
    'negative' [B, M, T, V, C] (broken_negative): a clip in a non-identity frame
      order (augment.negative). Its frames come from augment.negative_source: the
      positive's window ('positive') or the anchor's ('anchor'), resampled, permuted,
      then normalised and augmented with its own draw; or the anchor's augmented clip
      permuted ('anchor_shared').
    'interp_input', 'interp_target' [B, M, T, V, C], 'interp_mask' [B, T] or, for
      interp_drop='span', [B, T, V] (interpolation): sparse anchor, the anchor, 1.0 at
      dropped frames (or (frame, joint) entries).
  """
  p, layout = AugParams.from_config(aug), transforms.as_layout(layout)
  _check_batch(x, n, layout, frames, 'make_views')
  if broken_negative and p.negative == 'segment_shuffle':
    need(p.segments <= frames, f'augment.segments={p.segments} exceeds frames={frames}')
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
    speed_pair=speed_pair,
  )
  keys = jax.random.split(key, x.shape[0])
  n = jnp.clip(jnp.asarray(n), 1, x.shape[2])  # views read only frames [0, n)
  return jax.vmap(fn)(keys, jnp.asarray(x, jnp.float32), n)


def eval_clip(x, n, *, aug, layout, frames: int):
  """Deterministic clip for evaluation: the whole valid range resampled to T, normalised.

  x: [B, M, Tmax, V, C], n: [B] -> [B, M, T, V, C]. No random augmentation.
  """
  p, layout = AugParams.from_config(aug), transforms.as_layout(layout)
  _check_batch(x, n, layout, frames, 'eval_clip')

  def one(xi, ni):
    clip = transforms.resample(xi, ni, 0.0, ni, frames, 'clip')
    return transforms.normalise(
      clip, layout=layout, centre=p.centre, view_align=p.view_align, level_spine=p.level_spine
    )

  return jax.vmap(one)(jnp.asarray(x, jnp.float32), jnp.clip(jnp.asarray(n), 1, x.shape[2]))
