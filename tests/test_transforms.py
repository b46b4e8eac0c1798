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
  left, right = NTU.shoulders
  v = out[0, 0, right] - out[0, 0, left]
  assert abs(v[2]) < 1e-6 and v[0] > 0
  op = skeleton.get_layout('openpose18')
  x2 = smooth_batch(layout=op)[0][1]
  out = np.asarray(transforms.normalise(x2, layout=op, view_align=True))
  v = out[0, 0, op.shoulders[1], :2] - out[0, 0, op.shoulders[0], :2]
  assert abs(v[1]) < 1e-6 and v[0] > 0
  np.testing.assert_array_equal(out[..., 2], x2[..., 2])


def test_normalise_keeps_padding_and_absent_persons_zero():
  x, n = smooth_batch()
  out = np.asarray(transforms.normalise(x[1], layout=NTU, n=n[1], view_align=True))
  assert (out[:, n[1] :] == 0).all()
  out = np.asarray(transforms.normalise(x[0], layout=NTU, centre='frame'))
  assert (out[1] == 0).all() and (out[0] != 0).any()
