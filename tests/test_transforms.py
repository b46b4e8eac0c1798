"""Properties of skeljax.transforms: resampling, spatial transforms, normalisation."""

import jax
import numpy as np
import pytest

from skeljax import skeleton, transforms

NTU = skeleton.get_layout('ntu25')
T = 16  # clip length used throughout


def smooth_batch(seed=0, b=3, m=2, t_max=60, layout=NTU, n=(60, 31, 9)):
  """Smooth motion like real skeletons; zero after n; person 1 absent in sample 0."""
  rng = np.random.default_rng(seed)
  v, c = layout.num_joints, layout.num_channels
  t = np.arange(t_max)[None, None, :, None, None]
  pose = rng.normal(size=(b, m, 1, v, c))
  amp = 0.05 * rng.normal(size=(b, m, 1, v, c))
  phase = rng.uniform(0, 2 * np.pi, size=(b, m, 1, v, c))
  x = pose + amp * np.sin(0.2 * t + phase)
  x = np.where(t < np.asarray(n)[:, None, None, None, None], x, 0.0)
  x[0, 1] = 0.0
  return x.astype(np.float32), np.asarray(n, np.int32)


def linear_clip(seed, m, t, v, c, slope=0.05):
  """x[:, t] = a + b * t, and (a, b)."""
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(m, 1, v, c))
  b = slope * rng.normal(size=(m, 1, v, c))
  return (a + b * np.arange(t)[None, :, None, None]).astype(np.float32), a, b


# ---------------------------------------------------------------- resampling


def test_resample_speed1_full_range_is_identity_eager_and_jit():
  x = np.random.default_rng(0).normal(size=(2, 45, 4, 3)).astype(np.float32)
  jitted = jax.jit(transforms.resample, static_argnums=(4,))
  for n in (1, 30, 41, 45):
    want = x[:, :n]
    np.testing.assert_array_equal(transforms.resample(x, n, 0.0, n, n), want)
    np.testing.assert_array_equal(jitted(x, n, 0.0, float(n), n), want)


def test_resample_linear_sequence_exact_at_any_speed():
  n = 80
  x, a, b = linear_clip(1, 2, n + 10, 3, 3)
  x[:, n:] = 1e6  # padding is never read
  windows = [(40 - 10 * s, 20 * s) for s in (0.25, 0.5, 0.9, 1.0, 2.0, 3.3)]
  windows += [(10.3, 0.4), (0.0, float(n)), (5.5, 70.0)]
  for start, length in windows:
    out = np.asarray(transforms.resample(x, n, start, length, T))
    pos = start + (np.arange(T) + 0.5) * length / T - 0.5
    assert pos.min() >= 0 and pos.max() <= n - 1
    np.testing.assert_allclose(out, a + b * pos[None, :, None, None], atol=1e-5)


def test_resample_clip_holds_edges_and_shift_slides_window():
  n = 30
  x, a, b = linear_clip(2, 1, 40, 2, 3)
  start, length = -12.0, n + 24.0
  pos = np.clip(start + (np.arange(T) + 0.5) * length / T - 0.5, 0, n - 1)
  out = transforms.resample(x, n, start, length, T, 'clip')
  np.testing.assert_allclose(out, a + b * pos[None, :, None, None], atol=1e-5)
  np.testing.assert_array_equal(out, transforms.resample(x, n, start, length, T, 'edge'))
  # 'shift' keeps the length (speed) and slides the window inside [0, n).
  np.testing.assert_array_equal(
    transforms.resample(x, n, n - 4.0, 10.0, T, 'shift'),
    transforms.resample(x, n, n - 10.0, 10.0, T),
  )
  np.testing.assert_array_equal(
    transforms.resample(x, n, -3.0, 10.0, T, 'shift'), transforms.resample(x, n, 0.0, 10.0, T)
  )


def test_resample_rejects_bad_input():
  x = np.zeros((2, 10, 4, 3), np.float32)
  with pytest.raises(ValueError, match='pad_mode'):
    transforms.resample(x, 5, 0, 5, 4, pad_mode='wrap')
  with pytest.raises(ValueError, match=r'\[M, T, V, C\]'):
    transforms.resample(x[0], 5, 0, 5, 4)


# ---------------------------------------------------------------- spatial


@pytest.mark.parametrize('name', sorted(skeleton.LAYOUTS))
def test_flip_twice_is_identity_and_mirrors_x(name):
  layout = skeleton.get_layout(name)
  x = np.random.default_rng(5).normal(size=(2, 3, layout.num_joints, layout.num_channels))
  x = x.astype(np.float32)
  once = np.asarray(transforms.flip(x, layout))
  np.testing.assert_array_equal(transforms.flip(once, layout), x)
  perm = np.asarray(layout.flip)
  np.testing.assert_array_equal(once[..., 0], -x[..., perm, 0])
  np.testing.assert_array_equal(once[..., 1:], x[..., perm, 1:])
  assert (perm != np.arange(layout.num_joints)).any()


def test_spatial_augment_off_is_identity_and_rotation_keeps_bone_lengths():
  x, _ = smooth_batch()
  clip = x[1]
  key = jax.random.key(0)
  # The defaults switch every step off.
  np.testing.assert_array_equal(transforms.spatial_augment(key, clip, layout=NTU), clip)
  rotate_only = dict(rotate=(0.5, 0.5, 0.5), flip_prob=0.5)
  bones = np.asarray(NTU.bones)
  length = lambda c: np.linalg.norm(c[..., bones[:, 0], :] - c[..., bones[:, 1], :], axis=-1)
  for seed in range(4):
    out = np.asarray(
      transforms.spatial_augment(jax.random.key(seed), clip, layout=NTU, **rotate_only)
    )
    assert not np.allclose(out, clip)
    np.testing.assert_allclose(np.sort(length(out), -1), np.sort(length(clip), -1), atol=1e-5)


def test_joint_and_axis_masking():
  clip = smooth_batch()[0][1]
  key = jax.random.key(1)
  assert (np.asarray(transforms.joint_mask(key, clip, 1.0, 3)) == 0).all()
  np.testing.assert_array_equal(transforms.joint_mask(key, clip, 0.0, 3), clip)
  out = np.asarray(transforms.axis_mask(key, clip, 1.0, 3))
  zeroed = [(out[..., c] == 0).all() for c in range(3)]
  assert sum(zeroed) == 1
  np.testing.assert_array_equal(out[..., ~np.asarray(zeroed)], clip[..., ~np.asarray(zeroed)])


# ---------------------------------------------------------------- normalisation


def _torso_vectors(clip, layout, frames=transforms.ALIGN_FRAMES):
  """NumPy reference: person 0's (spine, shoulder, hip) vectors averaged over its first
  `frames` frames with both shoulders and both hips present."""
  (ls, rs), (lh, rh) = layout.shoulders, layout.hips
  p = clip[0, ..., : layout.coord_dims]
  ok = np.flatnonzero((clip[0][:, [ls, rs, lh, rh]] != 0).any(-1).all(-1))[:frames]
  spine = 0.5 * (p[ok, ls] + p[ok, rs] - p[ok, lh] - p[ok, rh])
  return spine.mean(0), (p[ok, rs] - p[ok, ls]).mean(0), (p[ok, rh] - p[ok, lh]).mean(0)


def test_normalise_centres_and_aligns():
  x, n = smooth_batch()
  clip = x[1][:, :20]
  c = NTU.center
  out = np.asarray(transforms.normalise(clip, layout=NTU, centre='clip'))
  np.testing.assert_array_equal(out[0, 0, c], 0)
  np.testing.assert_allclose(out, clip - clip[0, 0, c], atol=1e-6)
  out = np.asarray(transforms.normalise(clip, layout=NTU, centre='frame'))
  np.testing.assert_array_equal(out[0, :, c], 0)
  out = np.asarray(transforms.normalise(clip, layout=NTU, centre='clip', view_align=True))
  spine, shoulders, hips = _torso_vectors(out, NTU)
  np.testing.assert_allclose(spine[[0, 2]], 0, atol=1e-6)  # the spine points up
  assert spine[1] > 0
  heading = shoulders / np.linalg.norm(shoulders[[0, 2]]) + hips / np.linalg.norm(hips[[0, 2]])
  assert abs(heading[2]) < 1e-5 and heading[0] > 0  # the mean heading lies along +x
  # A rotation: bone lengths kept.
  bones = np.asarray(NTU.bones)
  length = lambda a: np.linalg.norm(a[..., bones[:, 0], :] - a[..., bones[:, 1], :], axis=-1)
  np.testing.assert_allclose(length(out), length(clip), atol=1e-5)
  op = skeleton.get_layout('openpose18')
  x2 = smooth_batch(layout=op)[0][1]
  out = np.asarray(transforms.normalise(x2, layout=op, view_align=True))
  spine = _torso_vectors(out, op)[0]
  assert abs(spine[0]) < 1e-6 and spine[1] < 0  # up in image coordinates is -y
  np.testing.assert_array_equal(out[..., 2], x2[..., 2])


def canonical_clip(layout, seed=0, t=12, absent=2, missing=False):
  """[2, t, V, C]: person 0 upright, torso still: spine along the layout's up, shoulder
  and hip vectors (right - left) along +x; its other joints and person 1 move at random.
  Person 0 is absent from the first `absent` frames; with `missing`, its left shoulder is
  also undetected (zero) in the next frame."""
  rng = np.random.default_rng(seed)
  v, c, d = layout.num_joints, layout.num_channels, layout.coord_dims
  x = rng.normal(size=(2, 1, v, c)) + 0.05 * rng.normal(size=(2, t, v, c))
  up = np.eye(d)[1] * (1.0 if layout.y_up else -1.0)
  side = np.eye(d)[0]
  for joints, width, height in ((layout.shoulders, 0.2, 0.5), (layout.hips, 0.1, 0.0)):
    for sign, j in zip((-1, 1), joints, strict=True):
      x[0, :, j, :d] = 0.3 * np.eye(d)[-1] + height * up + sign * width * side
  x[0, :absent] = 0
  if missing:
    x[0, absent, layout.shoulders[0]] = 0
  return x.astype(np.float32)


def _rotate(clip, matrix, d, shift):
  """matrix @ coords + shift on the present entries; absent ones stay zero."""
  present = (clip != 0).any(-1, keepdims=True)
  out = clip.copy()
  out[..., :d] = clip[..., :d] @ matrix.T + shift
  return np.where(present, out, 0).astype(np.float32)


@pytest.mark.parametrize('name', ['ntu25', 'kinect20'])
def test_view_align_undoes_a_known_camera_rotation(name):
  layout = skeleton.get_layout(name)
  clip = canonical_clip(layout, missing=True)
  aligned = np.asarray(transforms.normalise(clip, layout=layout, view_align=True))
  # The canonical clip is already aligned: only centred.
  np.testing.assert_allclose(aligned, transforms.normalise(clip, layout=layout), atol=1e-6)
  # pitch, yaw (past 90 degrees) and roll of the camera, then a translation.
  for angles in ((0.3, 2.0, -0.25), (-0.2, -2.9, 0.4), (0.0, 0.7, 0.0)):
    cam = np.asarray(transforms.rotation_matrix(np.asarray(angles)))
    seen = _rotate(clip, cam, 3, np.array([0.5, -1.0, 3.0]))
    out = np.asarray(transforms.normalise(seen, layout=layout, view_align=True))
    np.testing.assert_allclose(out, aligned, atol=1e-5)


def test_view_align_without_levelling_removes_the_yaw_only():
  layout = NTU
  clip = canonical_clip(layout, missing=True)
  aligned = np.asarray(transforms.normalise(clip, layout=layout, view_align=True))
  yaw_only = transforms.rotation_matrix(np.asarray([0.0, 2.0, 0.0]))
  seen = _rotate(clip, np.asarray(yaw_only), 3, np.array([0.5, -1.0, 3.0]))
  out = transforms.normalise(seen, layout=layout, view_align=True, level_spine=False)
  np.testing.assert_allclose(np.asarray(out), aligned, atol=1e-5)
  # A pitched camera: the levelled clip is canonical, the yaw-only one keeps the tilt.
  cam = np.asarray(transforms.rotation_matrix(np.asarray([0.3, 2.0, 0.0])))
  seen = _rotate(clip, cam, 3, np.array([0.5, -1.0, 3.0]))
  level = transforms.normalise(seen, layout=layout, view_align=True)
  tilt = transforms.normalise(seen, layout=layout, view_align=True, level_spine=False)
  np.testing.assert_allclose(np.asarray(level), aligned, atol=1e-5)
  assert np.abs(np.asarray(tilt) - aligned).max() > 0.05


@pytest.mark.parametrize('facing', [1.0, -1.0])
def test_view_align_2d_levels_the_spine_whichever_way_the_person_faces(facing):
  op = skeleton.get_layout('openpose18')
  clip = canonical_clip(op)
  clip[..., 0] *= facing  # facing -1: the right shoulder on the image's left
  aligned = np.asarray(transforms.normalise(clip, layout=op, view_align=True))
  np.testing.assert_allclose(aligned, transforms.normalise(clip, layout=op), atol=1e-6)
  a = 0.6  # camera roll
  roll = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
  seen = _rotate(clip, roll, 2, np.array([0.4, 0.2]))
  out = np.asarray(transforms.normalise(seen, layout=op, view_align=True))
  np.testing.assert_allclose(out, aligned, atol=1e-5)
  np.testing.assert_array_equal(out[..., 2], np.where((seen != 0).any(-1), seen[..., 2], 0))


def test_view_align_averages_out_one_frames_shoulder_jitter():
  clip = canonical_clip(NTU, absent=0)
  # The first frame's shoulders turn 10 degrees about the vertical (midpoint kept).
  ls, rs = NTU.shoulders
  a = np.deg2rad(10.0)
  yaw = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
  mid = 0.5 * (clip[0, 0, ls] + clip[0, 0, rs])
  for j in (ls, rs):
    clip[0, 0, j] = mid + yaw @ (clip[0, 0, j] - mid)
  out = np.asarray(transforms.normalise(clip, layout=NTU, view_align=True))
  lh, rh = NTU.hips
  hip = out[0, 3, rh] - out[0, 3, lh]  # a still frame: along +x when the heading is right
  error = np.rad2deg(np.arctan2(-hip[2], hip[0]))
  # The first-frame rule turned the clip by the full 10 degrees. Now the shoulder heading is
  # the mean of five vectors, one turned: atan2(sin 10, 4 + cos 10) = 1.995 degrees, and
  # the heading bisects it with the hips' (0 degrees).
  expected = 0.5 * np.rad2deg(np.arctan2(np.sin(a), 4 + np.cos(a)))
  assert abs(abs(error) - expected) < 1e-3 and expected < 1.0
  np.testing.assert_allclose(hip[1], 0, atol=1e-6)


def test_view_align_degenerate_clips_give_no_nan():
  norm = jax.jit(lambda x: transforms.normalise(x, layout=NTU, view_align=True))
  zeros = np.zeros((2, 8, NTU.num_joints, 3), np.float32)
  np.testing.assert_array_equal(norm(zeros), 0)
  clip = canonical_clip(NTU, absent=0)
  # Shoulders and hips on one point: no spine, no heading -> only centred.
  flat = clip.copy()
  flat[0, :, list(NTU.shoulders) + list(NTU.hips)] = 0.25
  out = np.asarray(norm(flat))
  assert np.isfinite(out).all()
  np.testing.assert_allclose(out, transforms.normalise(flat, layout=NTU), atol=1e-6)
  # Hip and shoulder midpoints on one point: no spine, so only the yaw is undone.
  level = clip.copy()
  level[0, :, list(NTU.hips), 1] = level[0, :, list(NTU.shoulders), 1]
  yaw = np.asarray(transforms.rotation_matrix(np.asarray([0.0, 1.0, 0.0])))
  out = np.asarray(norm(_rotate(level, yaw, 3, np.zeros(3))))
  assert np.isfinite(out).all()
  np.testing.assert_allclose(out, transforms.normalise(level, layout=NTU), atol=1e-5)
  # Shoulders and hips along the spine: no horizontal heading -> only centred.
  sideways = clip.copy()
  sideways[0, :, list(NTU.shoulders) + list(NTU.hips), 0] = 0.0
  sideways[0, :, list(NTU.shoulders) + list(NTU.hips), 2] = 0.3
  sideways[0, :, NTU.shoulders[0], 1] = 0.4
  out = np.asarray(norm(sideways))
  assert np.isfinite(out).all()
  np.testing.assert_allclose(out, transforms.normalise(sideways, layout=NTU), atol=1e-6)


def test_view_align_uses_what_a_short_clip_has_under_vmap():
  # Two present frames (n = 2) of a clip rotated by the camera: still brought back.
  clip = canonical_clip(NTU, absent=0)
  cam = np.asarray(transforms.rotation_matrix(np.asarray([0.3, 1.2, -0.2])))
  seen = _rotate(clip, cam, 3, np.zeros(3))
  batch = np.stack([seen, clip])
  fn = jax.jit(jax.vmap(lambda x, n: transforms.normalise(x, layout=NTU, n=n, view_align=True)))
  out = np.asarray(fn(batch, np.array([2, 12])))
  assert (out[0, :, 2:] == 0).all()
  np.testing.assert_allclose(out[0, :, :2], out[1, :, :2], atol=1e-5)


def test_normalise_keeps_padding_and_absent_persons_zero():
  x, n = smooth_batch()
  out = np.asarray(transforms.normalise(x[1], layout=NTU, n=n[1], view_align=True))
  assert (out[:, n[1] :] == 0).all()
  for align in (False, True):
    out = np.asarray(transforms.normalise(x[0], layout=NTU, centre='frame', view_align=align))
    assert (out[1] == 0).all() and (out[0] != 0).any()
    out = np.asarray(transforms.normalise(x[0], layout=NTU, centre='clip', view_align=align))
    assert (out[1] == 0).all() and (out[0] != 0).any()
