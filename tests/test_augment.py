"""Properties of skeljax.augment: the MCC views, broken orders, interpolation input, checks."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skeljax import augment, config, plot_views, skeleton, transforms

from .test_transforms import linear_clip, smooth_batch

NTU = skeleton.get_layout('ntu25')
T = 16  # clip length used throughout


def aug_config(**overrides):
  a = config.base_config().augment
  for k, v in overrides.items():
    a[k] = v
  return a


NO_SPATIAL = dict(
  shear=0.0, rotate=(0.0, 0.0, 0.0), scale=(1.0, 1.0), flip_prob=0.0, noise_std=0.0, centre='none'
)


# Tests share these so each compiles make_views once.
DEFAULT = dict()
RANGED = dict(speed_range=(0.7, 1.4), interp_drop='random', negative='local_shuffle')
EXTRAS = dict(
  negative='reverse',
  centre='frame',
  view_align=True,
  noise_std=0.05,
  joint_mask_prob=0.1,
  axis_mask_prob=0.3,
)


def views_fn(aug, layout=NTU, frames=T, **flags):
  """The jitted make_views, cached so tests with equal settings share one compile."""
  return _views_fn(augment.AugParams.from_config(aug), layout, frames, tuple(sorted(flags.items())))


@functools.cache
def _views_fn(params, layout, frames, flags):
  return jax.jit(
    functools.partial(augment.make_views, aug=params, layout=layout, frames=frames, **dict(flags))
  )


# ---------------------------------------------------------------- motion-broken order


@pytest.mark.parametrize('method', augment.NEGATIVES)
@pytest.mark.parametrize('t', [4, 7, 16])
def test_broken_order_is_a_non_identity_permutation(method, t):
  keys = jax.random.split(jax.random.key(t), 300)
  orders = np.asarray(jax.vmap(lambda k: augment.broken_order(k, t, method, 4, 3))(keys))
  np.testing.assert_array_equal(np.sort(orders, axis=1), np.tile(np.arange(t), (300, 1)))
  assert not (orders == np.arange(t)).all(axis=1).any()
  if method == 'local_shuffle':  # frames never leave their block
    np.testing.assert_array_equal(orders // 3, np.tile(np.arange(t) // 3, (300, 1)))


def test_segment_shuffle_uniform_over_non_identity_permutations():
  keys = jax.random.split(jax.random.key(0), 1200)
  orders = np.asarray(jax.vmap(lambda k: augment.segment_shuffle_order(k, 9, 3))(keys))
  segments = {tuple(o[::3] // 3) for o in orders}
  expected = set(itertools.permutations(range(3))) - {(0, 1, 2)}
  assert segments == expected
  counts = np.unique([tuple(o[::3] // 3) for o in orders], axis=0, return_counts=True)[1]
  assert counts.min() > 150  # 240 expected each
  # Segments move whole: consecutive frames inside a segment stay consecutive.
  assert (np.diff(orders.reshape(-1, 3, 3), axis=2) == 1).all()


def test_segment_shuffle_needs_enough_frames():
  with pytest.raises(ValueError, match='segments'):
    augment.segment_shuffle_order(jax.random.key(0), 3, 4)


# ---------------------------------------------------------------- interpolation inputs


@pytest.mark.parametrize(
  'drop,stride', [('stride', 2), ('stride', 3), ('stride', 5), ('random', 2)]
)
def test_interpolation_reconstructs_linear_motion(drop, stride):
  clip, _, _ = linear_clip(3, 2, 17, 25, 3)
  for seed in range(3):
    sparse, dropped = augment.interpolation_input(
      jax.random.key(seed), clip, drop=drop, stride=stride, keep_rate=0.4
    )
    dropped = np.asarray(dropped)
    assert dropped[0] == 0 and dropped[-1] == 0
    kept = dropped == 0
    np.testing.assert_array_equal(np.asarray(sparse)[:, kept], clip[:, kept])
    np.testing.assert_allclose(sparse, clip, atol=1e-5)
    if drop == 'stride':
      t = np.arange(17)
      np.testing.assert_array_equal(dropped, ((t % stride != 0) & (t != 16)).astype(np.float32))


def test_interpolation_zero_fill_and_bad_mode():
  clip, _, _ = linear_clip(4, 1, 9, 3, 3)
  sparse, dropped = augment.interpolation_input(None, clip, drop='stride', stride=2, fill='zero')
  dropped = np.asarray(dropped) > 0
  assert dropped.any()
  assert (np.asarray(sparse)[:, dropped] == 0).all()
  np.testing.assert_array_equal(np.asarray(sparse)[:, ~dropped], clip[:, ~dropped])
  with pytest.raises(ValueError, match='interp_fill'):
    augment.interpolation_input(None, clip, fill='cubic')


def test_span_mask_has_drawn_lengths_inside_the_ends_and_whole_joint_sets():
  t, v, lo, hi = 16, 6, 3, 7
  keys = jax.random.split(jax.random.key(0), 400)
  draw = jax.vmap(lambda k: augment.span_mask(k, t, v, span_frames=(lo, hi), count=1))
  masks = np.asarray(draw(keys))  # [400, T, V]
  assert masks.shape == (400, t, v) and masks.dtype == bool
  frames = masks.any(axis=2)
  assert not frames[:, 0].any() and not frames[:, -1].any()  # the fill needs kept ends
  lengths = frames.sum(axis=1)
  starts = frames.argmax(axis=1)
  # One contiguous run of frames, every joint masked on it (span_joint_prob = 1).
  np.testing.assert_array_equal(np.diff(frames.astype(int), axis=1).clip(0).sum(1), 1)
  np.testing.assert_array_equal(masks, np.repeat(frames[:, :, None], v, axis=2))
  assert set(lengths.tolist()) == set(range(lo, hi + 1))  # every length in (lo, hi) drawn
  assert starts.min() == 1 and (starts + lengths).max() == t - 1  # reaches both ends

  # A joint subset per span, the same on every frame of it, never empty.
  draw = jax.vmap(
    lambda k: augment.span_mask(k, t, v, span_frames=(lo, hi), count=1, joint_prob=0.3)
  )
  masks = np.asarray(draw(keys))
  frames = masks.any(axis=2)
  joints = masks.any(axis=1)  # [400, V]
  np.testing.assert_array_equal(masks, frames[:, :, None] & joints[:, None, :])
  assert (joints.sum(axis=1) >= 1).all() and not joints.all(axis=1).all()
  assert 0.25 < joints.mean() < 0.45  # ~0.3, plus the forced joint of an empty draw

  two = np.asarray(
    jax.vmap(lambda k: augment.span_mask(k, t, v, span_frames=(lo, hi), count=2))(keys)
  )
  covered = two.any(axis=2).sum(axis=1)
  assert covered.max() > hi and covered.min() >= lo and not two[:, [0, -1]].any()


def test_span_fill_is_per_joint_linear_and_keeps_the_kept_entries():
  # Motion linear in time is restored exactly, whatever joints the spans hide.
  clip, _, _ = linear_clip(5, 2, 20, 7, 3)
  kw = dict(drop='span', span_frames=(2, 9), span_count=3, span_joint_prob=0.5)
  for seed in range(3):
    sparse, dropped = augment.interpolation_input(jax.random.key(seed), clip, **kw)
    dropped = np.asarray(dropped)
    assert dropped.shape == (20, 7) and dropped.any() and not dropped.all(axis=1).any()
    np.testing.assert_allclose(sparse, clip, atol=1e-5)
  # On curved motion each hidden entry is np.interp over that joint's own kept frames.
  rng = np.random.default_rng(1)
  curved = rng.normal(size=(2, 20, 7, 3)).astype(np.float32)
  sparse, dropped = augment.interpolation_input(jax.random.key(4), curved, **kw)
  sparse, kept = np.asarray(sparse), np.asarray(dropped) == 0
  frame = np.arange(20)
  for j in range(7):
    want = np.stack(
      [
        [np.interp(frame, frame[kept[:, j]], curved[m, kept[:, j], j, c]) for c in range(3)]
        for m in range(2)
      ]
    ).transpose(0, 2, 1)
    np.testing.assert_allclose(sparse[:, :, j], want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(
    sparse.transpose(1, 2, 0, 3)[kept], curved.transpose(1, 2, 0, 3)[kept]
  )
  zero, _ = augment.interpolation_input(jax.random.key(4), curved, fill='zero', **kw)
  np.testing.assert_array_equal(np.asarray(zero), np.where(kept[None, :, :, None], curved, 0))


def test_span_views_mask_per_frame_and_joint():
  x, n = smooth_batch()
  out = views_fn(aug_config(interp_drop='span', span_joint_prob=0.5))(jax.random.key(2), x, n)
  mask = np.asarray(out['interp_mask'])
  assert mask.shape == (x.shape[0], T, x.shape[3])
  assert not mask[:, [0, -1]].any() and mask.any()
  kept = mask == 0  # [B, T, V]
  sparse = np.asarray(out['interp_input']).transpose(0, 2, 3, 1, 4)  # [B, T, V, M, C]
  anchor = np.asarray(out['anchor']).transpose(0, 2, 3, 1, 4)
  np.testing.assert_array_equal(sparse[kept], anchor[kept])


# ---------------------------------------------------------------- spatial


def test_openpose_confidence_channel_untouched():
  layout = skeleton.get_layout('openpose18')
  x, n = smooth_batch(layout=layout)
  present = np.any(x != 0, axis=-1)
  x[..., 2] = np.where(present, 0.7, 0.0)  # constant confidence: interpolation keeps it
  full = dict(noise_std=0.01, shear=0.5, scale=(0.8, 1.2), joint_mask_prob=0.2, axis_mask_prob=1)
  views = views_fn(aug_config(flip_prob=0.5, **full), layout=layout)(jax.random.key(2), x, n)
  for name in ('anchor', 'positive', 'negative'):
    conf = np.asarray(views[name])[..., 2]
    assert set(np.unique(conf)) <= {0.0, np.float32(0.7)}
    np.testing.assert_array_equal(conf[1:], np.float32(0.7))  # samples with both persons
  # A flip moves confidence with its joint and changes nothing else in it.
  clip = np.random.default_rng(0).uniform(0.1, 1, size=(2, 5, 18, 3)).astype(np.float32)
  p = augment.AugParams.from_config(aug_config(flip_prob=1.0, **full))
  out = transforms.spatial_augment(jax.random.key(0), clip, layout=layout, **p.spatial())
  np.testing.assert_array_equal(np.asarray(out)[..., 2], clip[..., np.asarray(layout.flip), 2])


# ---------------------------------------------------------------- make_views


def test_make_views_shapes_flags_and_speeds():
  x, n = smooth_batch()
  b, m, _, v, c = x.shape
  out = views_fn(aug_config())(jax.random.key(0), x, n)
  assert set(out) == {
    'anchor',
    'positive',
    'negative',
    'interp_input',
    'interp_target',
    'interp_mask',
    'speed',
  }
  for k in ('anchor', 'positive', 'negative', 'interp_input', 'interp_target'):
    assert out[k].shape == (b, m, T, v, c) and out[k].dtype == jnp.float32
  assert out['interp_mask'].shape == (b, T) and out['speed'].shape == (b,)
  # The capped window (the default) reports the speed it plays: a speed-2 window cut to the
  # valid frames plays between 1 and 2; the old clipped window reports the drawn speed.
  speed = np.asarray(out['speed'])
  assert ((speed == 0.5) | ((speed >= 1.0) & (speed <= 2.0))).all()
  clipped = views_fn(aug_config(speed_fit='clip'))(jax.random.key(0), x, n)
  assert set(np.asarray(clipped['speed']).tolist()) <= {0.5, 2.0}
  base = views_fn(aug_config(), speed_positive=False, broken_negative=False, interpolation=False)(
    jax.random.key(0), x, n
  )
  assert set(base) == {'anchor', 'positive', 'speed'}
  np.testing.assert_array_equal(base['speed'], 1.0)
  ranged = views_fn(aug_config(**RANGED))(jax.random.key(0), x, n)
  s = np.asarray(ranged['speed'])
  assert (s >= 0.7).all() and (s <= 1.4).all() and len(np.unique(s)) == len(s)


def _assert_permutation_of(neg, ref, negative):
  for i in range(ref.shape[0]):
    a = ref[i].transpose(1, 0, 2, 3).reshape(T, -1)
    g = neg[i].transpose(1, 0, 2, 3).reshape(T, -1)
    same = (g[:, None, :] == a[None, :, :]).all(-1)  # [T neg, T ref]
    assert (same.sum(1) == 1).all() and (same.sum(0) == 1).all(), negative
    assert (same.argmax(1) != np.arange(T)).any(), negative


def _rows(clip):
  """[M, T, V, C] -> its T frames as rows, in lexicographic order."""
  r = clip.transpose(1, 0, 2, 3).reshape(clip.shape[1], -1)
  return r[np.lexsort(r.T[::-1])]


def test_negative_permutes_the_frames_of_its_source_view():
  x, n = smooth_batch()
  # Without spatial augmentation or centring, the broken clip holds exactly the frames of
  # the view it is built from (a resampled window may repeat an edge frame), reordered.
  for source, ref in (('positive', 'positive'), ('anchor', 'anchor')):
    for negative in ('segment_shuffle', 'reverse', 'local_shuffle'):
      aug = aug_config(**NO_SPATIAL, negative=negative, negative_source=source)
      out = views_fn(aug)(jax.random.key(1), x, n)
      neg, want = np.asarray(out['negative']), np.asarray(out[ref])
      for i in range(x.shape[0]):
        np.testing.assert_array_equal(_rows(neg[i]), _rows(want[i]), err_msg=negative)
      assert (neg != want).any(axis=(1, 2, 3, 4)).all(), (source, negative)


def test_negative_is_centred_after_the_permutation_with_its_own_augmentation():
  x, n = smooth_batch()
  centred = dict(NO_SPATIAL, centre='clip')
  out = views_fn(aug_config(**centred))(jax.random.key(3), x, n)
  centre = NTU.center
  # Its first frame's centre joint sits at the origin, as for every other view.
  np.testing.assert_allclose(np.asarray(out['negative'])[:, 0, 0, centre], 0.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(out['positive'])[:, 0, 0, centre], 0.0, atol=1e-6)
  # With an affine augmentation on (no noise), it is not the positive's augmentation
  # permuted: sharing the positive's draw would make the sorted frames equal.
  out = views_fn(aug_config(flip_prob=0.0, noise_std=0.0, centre='none'))(jax.random.key(3), x, n)
  pos = np.sort(np.asarray(out['positive']), axis=2)
  neg = np.sort(np.asarray(out['negative']), axis=2)
  assert np.abs(pos - neg).max() > 1e-3


def test_shared_negative_is_a_non_identity_permutation_of_the_anchor_frames():
  x, n = smooth_batch()
  for settings in (DEFAULT, RANGED, EXTRAS):  # segment_shuffle, local_shuffle, reverse
    negative = aug_config(**settings).negative
    out = views_fn(aug_config(**settings, negative_source='anchor_shared'))(jax.random.key(1), x, n)
    anchor, neg = np.asarray(out['anchor']), np.asarray(out['negative'])
    for i in range(x.shape[0]):
      a = anchor[i].transpose(1, 0, 2, 3).reshape(T, -1)
      g = neg[i].transpose(1, 0, 2, 3).reshape(T, -1)
      same = (g[:, None, :] == a[None, :, :]).all(-1)  # [T neg, T anchor]
      assert (same.sum(1) == 1).all() and (same.sum(0) == 1).all(), negative
      assert (same.argmax(1) != np.arange(T)).any(), negative
      np.testing.assert_array_equal(np.sort(g, axis=0), np.sort(a, axis=0))


def test_interp_views_come_from_the_anchor():
  x, n = smooth_batch()
  for settings in (DEFAULT, RANGED):  # stride, random
    out = views_fn(aug_config(**settings))(jax.random.key(2), x, n)
    np.testing.assert_array_equal(out['interp_target'], out['anchor'])
    mask = np.asarray(out['interp_mask'])
    assert (mask[:, 0] == 0).all() and (mask[:, -1] == 0).all() and mask.any()
    kept = np.asarray(out['interp_input']).transpose(0, 2, 1, 3, 4)[mask == 0]
    np.testing.assert_array_equal(
      kept, np.asarray(out['anchor']).transpose(0, 2, 1, 3, 4)[mask == 0]
    )


def test_centred_positive_has_same_centre_and_speed_times_the_anchor_rate():
  n = 300
  x, a, b = linear_clip(6, 1, n, 25, 3, slope=0.01)
  x = np.tile(x[None], (8, 1, 1, 1, 1))
  aug = aug_config(
    crop_ratio=(0.2, 0.3),
    speeds=(0.5, 2.0),
    positive_window='centred',
    speed_fit='clip',  # the fitted window slides inside the valid frames instead
    **NO_SPATIAL,
  )
  out = views_fn(aug, broken_negative=False, interpolation=False)(
    jax.random.key(3), x, np.full(8, n)
  )
  anchor, positive, speed = map(np.asarray, (out['anchor'], out['positive'], out['speed']))
  mid = lambda v: 0.5 * (v[:, :, T // 2 - 1] + v[:, :, T // 2])
  np.testing.assert_allclose(mid(positive), mid(anchor), atol=1e-4)
  rate = lambda v: v[:, :, T // 2] - v[:, :, T // 2 - 1]
  np.testing.assert_allclose(rate(positive), speed[:, None, None, None] * rate(anchor), atol=1e-5)
  assert set(speed.tolist()) == {0.5, 2.0}


def test_own_positive_window_is_the_baseline_view_at_the_speed():
  n = 300
  x, _, _ = linear_clip(6, 1, n, 25, 3, slope=0.01)
  x = np.tile(x[None], (8, 1, 1, 1, 1))
  nn = np.full(8, n)
  flags = dict(broken_negative=False, interpolation=False)
  # At speed 1 the 'own' clipped window is exactly the contrastive baseline's second view.
  one = aug_config(speeds=(1.0,), positive_window='own', speed_fit='clip')
  own = views_fn(one, **flags)(jax.random.key(3), x, nn)
  base = views_fn(aug_config(), speed_positive=False, **flags)(jax.random.key(3), x, nn)
  np.testing.assert_array_equal(own['positive'], base['positive'])
  np.testing.assert_array_equal(own['anchor'], base['anchor'])
  # At other speeds its own centre moves away from the anchor's, and (crops of one length)
  # the rate is the speed times the anchor's.
  aug = aug_config(
    crop_ratio=(0.25, 0.25),
    speeds=(0.5, 2.0),
    positive_window='own',
    speed_fit='clip',
    **NO_SPATIAL,
  )
  out = views_fn(aug, **flags)(jax.random.key(3), x, nn)
  anchor, positive, speed = map(np.asarray, (out['anchor'], out['positive'], out['speed']))
  mid = lambda v: 0.5 * (v[:, :, T // 2 - 1] + v[:, :, T // 2])
  assert np.abs(mid(positive) - mid(anchor)).max() > 1e-2
  rate = lambda v: v[:, :, T // 2] - v[:, :, T // 2 - 1]
  np.testing.assert_allclose(rate(positive), speed[:, None, None, None] * rate(anchor), atol=1e-5)


@pytest.mark.parametrize('extreme', [(), ('anchor',), ('positive',), ('anchor', 'positive')])
def test_extreme_views_get_the_extreme_set_and_the_others_only_the_normal_one(extreme):
  x, n = smooth_batch()
  flags = dict(interpolation=False)
  wild = dict(rotate=(1.0, 1.0, 1.0), flip_prob=1.0, noise_std=0.1, shear=0.0, scale=(1.0, 1.0))
  tame = dict(wild, rotate=(0.0, 0.0, 0.0), flip_prob=0.0, noise_std=0.0)
  # The broken clip gets the set of the view whose window it permutes: the positive's
  # (negative_source='positive'), or the anchor's (its twin, the default).
  for source, like in (('positive', 'positive'), ('anchor_twin', 'anchor')):
    wild_aug = aug_config(extreme_views=extreme, negative_source=source, **wild)
    out = views_fn(wild_aug, **flags)(jax.random.key(5), x, n)
    plain = views_fn(aug_config(negative_source=source, **tame), **flags)(jax.random.key(5), x, n)
    for view in ('anchor', 'positive', 'negative'):
      same = np.array_equal(out[view], plain[view])
      wanted = (like if view == 'negative' else view) in extreme
      assert same != wanted, (view, source)


def test_same_key_same_views_different_keys_differ():
  x, n = smooth_batch()
  fn = views_fn(aug_config())
  one, again, other = (fn(jax.random.key(k), x, n) for k in (7, 7, 8))
  for k in one:
    np.testing.assert_array_equal(one[k], again[k])
  assert not np.array_equal(one['anchor'], other['anchor'])
  assert not np.array_equal(one['positive'], other['positive'])
  assert not np.array_equal(one['anchor'][0], one['anchor'][1])  # per-sample keys


def test_jit_matches_eager():
  # Eager = one sample through the per-sample pipeline op by op; jit = the vmapped batch.
  x, n = smooth_batch()
  aug = aug_config(**EXTRAS)
  key = jax.random.key(4)
  jitted = views_fn(aug)(key, x, n)
  i = 1
  eager = augment._sample_views(
    jax.random.split(key, x.shape[0])[i],
    x[i],
    n[i],
    p=augment.AugParams.from_config(aug),
    layout=NTU,
    frames=T,
    speed_positive=True,
    broken_negative=True,
    interpolation=True,
  )
  for k in eager:
    np.testing.assert_allclose(eager[k], jitted[k][i], atol=1e-6, rtol=0, err_msg=k)


@pytest.mark.slow
def test_jit_matches_eager_whole_batch():
  x, n = smooth_batch()
  key = jax.random.key(4)
  eager = augment.make_views(key, x, n, aug=aug_config(), layout=NTU, frames=T)
  jitted = views_fn(aug_config())(key, x, n)
  for k in eager:
    np.testing.assert_allclose(eager[k], jitted[k], atol=1e-6, rtol=0, err_msg=k)


def test_padding_is_never_read_and_absent_persons_stay_zero():
  x, n = smooth_batch()
  garbage = x.copy()
  t = np.arange(x.shape[2])[None, None, :, None, None]
  garbage = np.where(t >= n[:, None, None, None, None], 1e3, garbage).astype(np.float32)
  garbage[0, 1] = 0.0  # an absent person stays all-zero
  fn = views_fn(aug_config(**EXTRAS))
  clean, dirty = fn(jax.random.key(5), x, n), fn(jax.random.key(5), garbage, n)
  for k in clean:
    np.testing.assert_array_equal(clean[k], dirty[k])
  for k in ('anchor', 'positive', 'negative', 'interp_input', 'interp_target'):
    assert (np.asarray(clean[k])[0, 1] == 0).all(), k
    assert (np.asarray(clean[k])[0, 0] != 0).any(), k


def test_eval_clip_is_deterministic_normalised_resampling():
  x, n = smooth_batch(n=(16, 40, 60))
  aug = aug_config()
  fn = jax.jit(functools.partial(augment.eval_clip, aug=aug, layout=NTU, frames=T))
  out = np.asarray(fn(x, n))
  assert out.shape == (3, 2, T, 25, 3)
  np.testing.assert_array_equal(out, fn(x, n))
  # n == T: the whole range at speed 1 is the clip itself, only normalised.
  np.testing.assert_array_equal(out[0], transforms.normalise(x[0, :, :T], layout=NTU))


@pytest.mark.parametrize(
  'shape,match',
  [
    ((3, 2, 60, 20, 3), 'joints'),
    ((3, 2, 60, 25, 2), 'channels'),
    ((2, 60, 25, 3), r'\[B, M, T, V, C\]'),
  ],
)
def test_bad_input_raises_at_trace_time(shape, match):
  fn = views_fn(aug_config())
  with pytest.raises(ValueError, match=match):
    fn(jax.random.key(0), jnp.zeros(shape), jnp.full(shape[:1], 10))
  with pytest.raises(ValueError, match=match):
    jax.jit(functools.partial(augment.eval_clip, aug=aug_config(), layout=NTU, frames=T))(
      jnp.zeros(shape), jnp.full(shape[:1], 10)
    )


def test_bad_config_and_n_raise():
  x, n = smooth_batch()
  with pytest.raises(ValueError, match='pad_mode'):
    augment.make_views(
      jax.random.key(0), x, n, aug=aug_config(pad_mode='wrap'), layout=NTU, frames=T
    )
  with pytest.raises(ValueError, match='n must be'):
    augment.make_views(jax.random.key(0), x, n[:2], aug=aug_config(), layout=NTU, frames=T)
  with pytest.raises(ValueError, match='segments'):
    augment.make_views(
      jax.random.key(0),
      x,
      n,
      aug=aug_config(negative='segment_shuffle', segments=20),
      layout=NTU,
      frames=T,
    )


# ---------------------------------------------------------------- AugParams


@pytest.mark.parametrize(
  'field,value',
  [
    ('crop_ratio', (0.5,)),
    ('crop_ratio', (0.9, 0.5)),
    ('speeds', ()),
    ('speeds', (0.0, 1.0)),
    ('speed_range', (2.0, 1.0)),
    ('speed_range', (1.0, 9.0)),
    ('speeds', (0.5, 8.5)),
    ('positive_window', 'anchor'),
    ('speed_fit', 'hold'),
    ('resample_noise_std', -0.1),
    ('pad_mode', 'wrap'),
    ('negative', 'shuffle'),
    ('negative_source', 'query'),
    ('segments', 1),
    ('local_window', 1),
    ('interp_drop', 'every'),
    ('interp_stride', 1),
    ('interp_keep_rate', 1.0),
    ('interp_fill', 'cubic'),
    ('span_frames', (0, 4)),
    ('span_frames', (6, 4)),
    ('span_frames', (4,)),
    ('span_frames', (4.5, 8)),
    ('span_count', 0),
    ('span_joint_prob', 0.0),
    ('span_joint_prob', 1.5),
    ('shear', -0.1),
    ('rotate', (0.1, 0.2)),
    ('scale', (1.2, 0.9)),
    ('flip_prob', 1.5),
    ('joint_mask_prob', -0.1),
    ('axis_mask_prob', 2.0),
    ('noise_std', -1.0),
    ('centre', 'hip'),
    ('extreme_views', ('query',)),
  ],
)
def test_aug_params_rejects_each_bad_value_in_one_line(field, value):
  with pytest.raises(ValueError, match=rf'augment\.{field}\b') as e:
    augment.AugParams.from_config(aug_config(**{field: value}))
  assert '\n' not in str(e.value)


@pytest.mark.parametrize(
  'field,choices',
  [
    ('negative', augment.NEGATIVES),
    ('negative_source', augment.NEGATIVE_SOURCES),
    ('positive_window', augment.POSITIVE_WINDOWS),
    ('speed_fit', augment.SPEED_FITS),
    ('interp_drop', augment.INTERP_DROPS),
    ('interp_fill', augment.INTERP_FILLS),
    ('pad_mode', transforms.PAD_MODES),
    ('centre', transforms.CENTRES),
  ],
)
def test_aug_params_choices_are_the_module_constants(field, choices):
  for value in choices:
    augment.AugParams.from_config(aug_config(**{field: value}))
  with pytest.raises(ValueError, match=', '.join(choices)):
    augment.AugParams.from_config(aug_config(**{field: 'nonsense'}))


def test_aug_params_checks_span_lengths_against_the_clip_length_only_for_spans():
  augment.AugParams.from_config(aug_config(interp_drop='span', span_frames=(4, 14)), frames=16)
  with pytest.raises(ValueError, match=r'augment.span_frames=\(4, 15\).*data.frames=16') as e:
    augment.AugParams.from_config(aug_config(interp_drop='span', span_frames=(4, 15)), frames=16)
  assert '\n' not in str(e.value)
  # Inert under another interp_drop: a clip too short for the spans is no error then.
  augment.AugParams.from_config(aug_config(span_frames=(4, 15)), frames=16)
  with pytest.raises(ValueError, match='span_frames'):  # direct callers: checked at the draw
    augment.span_mask(jax.random.key(0), 16, 3, span_frames=(4, 15))


def test_aug_params_checks_segments_against_the_clip_length():
  augment.AugParams.from_config(aug_config(segments=16), frames=16)
  with pytest.raises(ValueError, match='augment.segments=17 must be <= data.frames=16'):
    augment.AugParams.from_config(aug_config(segments=17), frames=16)


# ---------------------------------------------------------------- rendering


def test_render_views_writes_png(tmp_path):
  x, n = smooth_batch()
  views = views_fn(aug_config())(jax.random.key(0), x, n)
  path = plot_views.render_views(views, 'ntu25', tmp_path / 'sub' / 'views.png', every=4)
  data = (tmp_path / 'sub' / 'views.png').read_bytes()
  assert str(path).endswith('views.png')
  assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 10_000
  with pytest.raises(ValueError, match='joints'):
    plot_views.render_views({'a': np.zeros((1, 4, 20, 3))}, 'ntu25', tmp_path / 'x.png')
