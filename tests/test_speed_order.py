"""Issue #29's forms of MCC's speed and order parts, property by property.

The speed clip without held frames and with an exact relative speed (augment.speed_fit),
RSPNet's two positives and its relative-speed head, the speed-class head, the broken clip
as a hard negative with gradient (DSM) on the anchor's own window, and its curriculum.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skeljax import augment, objectives, pretrain

from .test_augment import NO_SPATIAL, aug_config, views_fn
from .test_pretrain_step import TOTAL, setup, smooth_batch
from .test_transforms import linear_clip

FLAGS = dict(broken_negative=False, interpolation=False)


def _linear_batch(b=16, n=40, t_max=64):
  """Every sample linear in time over its n valid frames (zero after)."""
  x, _, _ = linear_clip(6, 1, t_max, 25, 3, slope=0.01)
  x = np.where(np.arange(t_max)[None, :, None, None] < n, x, 0.0)
  return np.tile(x[None], (b, 1, 1, 1, 1)).astype(np.float32), np.full(b, n, np.int32)


def _rate(v):
  """Per-frame displacement of each clip [B, M, T, V, C] -> [B, T - 1, V*C] (person 0)."""
  v = np.asarray(v)[:, 0]
  return (v[:, 1:] - v[:, :-1]).reshape(v.shape[0], v.shape[1] - 1, -1)


# ---------------------------------------------------------------- the speed clip's window


def test_fitted_windows_read_only_valid_frames_at_the_exact_relative_speed():
  frames = 32
  for settings in (
    dict(speeds=(0.5, 2.0)),
    dict(speed_range=(0.7, 1.43)),
    dict(speeds=(0.5, 1.0, 2.0), independent_speeds=True, positive_window='centred'),
  ):
    settings = dict(settings, speed_fit='fit')
    p = augment.AugParams.from_config(aug_config(**settings))
    fn = jax.jit(jax.vmap(lambda k, n, p=p: augment.fitted_windows(k, n, p, frames)))
    n = jnp.asarray(np.random.default_rng(0).integers(8, 200, 512), jnp.float32)
    (a0, la), (s0, ls), (m0, lm), speed = fn(jax.random.split(jax.random.key(0), 512), n)
    a0, la, s0, ls, m0, lm, speed, n = map(np.asarray, (a0, la, s0, ls, m0, lm, speed, n))
    for start, length in ((a0, la), (s0, ls), (m0, lm)):
      # transforms.resample's first and last sample positions, inside [0, n - 1].
      first = start + 0.5 * length / frames - 0.5
      last = start + (frames - 0.5) * length / frames - 0.5
      assert (first >= -1e-4).all() and (last <= n - 1 + 1e-4).all(), settings
    np.testing.assert_allclose(ls / la, speed, rtol=1e-5)
    np.testing.assert_allclose(lm, la)  # the same-speed clip: the anchor's length
    # Windows are shortened only as far as they must be.
    assert (np.maximum(la, ls) >= 0.99 * np.minimum((n - 1) * frames / (frames - 1), la)).all()


def _held_fraction(v):
  """Fraction of frame steps that do not move (a held copy of the edge frame)."""
  return float((np.abs(_rate(v)).max(-1) < 1e-7).mean())


def test_fit_speed_clip_holds_no_frame_and_plays_at_the_speed_times_the_anchor_rate():
  x, n = _linear_batch()
  aug = aug_config(speeds=(2.0,), speed_fit='fit', **NO_SPATIAL)
  out = views_fn(aug, **FLAGS)(jax.random.key(1), x, n)
  assert _held_fraction(out['positive']) == 0.0
  np.testing.assert_allclose(_rate(out['positive']), 2.0 * _rate(out['anchor']), atol=1e-5)
  # The old window ('clip') runs past the valid frames and holds the edge frame.
  old = views_fn(aug_config(speeds=(2.0,), speed_fit='clip', **NO_SPATIAL), **FLAGS)
  assert _held_fraction(old(jax.random.key(1), x, n)['positive']) > 0.1


def test_capped_speed_clip_holds_no_frame_and_keeps_the_anchor():
  x, n = _linear_batch()
  for window in ('centred', 'own'):
    aug = aug_config(speeds=(2.0,), speed_fit='cap', positive_window=window, **NO_SPATIAL)
    out = views_fn(aug, **FLAGS)(jax.random.key(1), x, n)
    assert _held_fraction(out['positive']) == 0.0, window
    speed = np.asarray(out['speed'])
    # Cut to the valid frames: played faster than the crop, never faster than drawn.
    assert (speed > 1.0 - 1e-5).all() and (speed <= 2.0 + 1e-5).all(), window
    assert (speed < 2.0 - 1e-3).any(), window  # some windows did not fit at speed 2
    old = views_fn(
      aug_config(speeds=(2.0,), speed_fit='clip', positive_window=window, **NO_SPATIAL), **FLAGS
    )
    old = old(jax.random.key(1), x, n)
    np.testing.assert_array_equal(out['anchor'], old['anchor'])  # the anchor is not shortened
    if window == 'centred':  # the reported speed is the one played, relative to the anchor
      np.testing.assert_allclose(
        _rate(out['positive']), speed[:, None, None] * _rate(out['anchor']), atol=1e-5
      )
  # A window that fits is not touched: speed 0.5 reads as the old window does.
  slow = dict(speeds=(0.5,), positive_window='centred', **NO_SPATIAL)
  cap = views_fn(aug_config(speed_fit='cap', **slow), **FLAGS)(jax.random.key(2), x, n)
  clip = views_fn(aug_config(speed_fit='clip', **slow), **FLAGS)(jax.random.key(2), x, n)
  np.testing.assert_allclose(cap['positive'], clip['positive'], atol=1e-6)


def test_independent_speeds_report_the_relative_speed_of_the_two_clips():
  x, n = _linear_batch()
  aug = aug_config(speeds=(0.5, 1.0, 2.0), independent_speeds=True, speed_fit='fit', **NO_SPATIAL)
  out = views_fn(aug, **FLAGS)(jax.random.key(2), x, n)
  speed = np.asarray(out['speed'])
  assert len(np.unique(speed)) >= 3  # ratios of two draws: 1/4 .. 4
  np.testing.assert_allclose(
    _rate(out['positive']), speed[:, None, None] * _rate(out['anchor']), atol=1e-5
  )


def test_speed_pair_gives_a_same_speed_positive_and_the_speed_clip():
  x, n = _linear_batch()
  aug = aug_config(speeds=(0.5, 2.0), speed_fit='fit', **NO_SPATIAL)
  out = views_fn(aug, speed_pair=True, **FLAGS)(jax.random.key(3), x, n)
  assert set(out) == {'anchor', 'positive', 'speed_clip', 'speed'}
  speed = np.asarray(out['speed'])[:, None, None]
  np.testing.assert_allclose(_rate(out['positive']), _rate(out['anchor']), atol=1e-5)
  np.testing.assert_allclose(_rate(out['speed_clip']), speed * _rate(out['anchor']), atol=1e-5)
  # The same-speed positive has its own window: not the anchor's frames.
  assert np.abs(np.asarray(out['positive']) - np.asarray(out['anchor'])).max() > 1e-3


def test_resample_noise_reaches_every_view_and_keeps_absent_entries_zero():
  from .test_transforms import smooth_batch as ragged

  x, n = ragged()  # sample 0's person 1 is absent; frames past n are padding
  flags = dict(interpolation=False, speed_pair=True)
  clean = views_fn(aug_config(**NO_SPATIAL), **flags)(jax.random.key(4), x, n)
  noisy = views_fn(aug_config(resample_noise_std=0.02, **NO_SPATIAL), **flags)(
    jax.random.key(4), x, n
  )
  for view in ('anchor', 'positive', 'speed_clip', 'negative'):
    diff = np.asarray(noisy[view]) - np.asarray(clean[view])
    present = np.asarray(clean[view]) != 0
    assert 0.01 < diff[present].std() < 0.03, view
    assert (np.asarray(noisy[view])[~present] == 0).all(), view


# ---------------------------------------------------------------- the broken clip's window


def test_anchor_twin_differs_from_the_anchor_only_in_the_arrow_of_time():
  x, n = _linear_batch()
  # Every spatial augmentation but noise on: the twin shares the anchor's draw.
  aug = aug_config(negative='reverse', negative_source='anchor_twin', noise_std=0.0, centre='none')
  out = views_fn(aug, interpolation=False)(jax.random.key(5), x, n)
  np.testing.assert_allclose(
    np.asarray(out['negative']), np.asarray(out['anchor'])[:, :, ::-1], atol=1e-5
  )
  # With its own draw ('anchor') the same window is augmented differently.
  own = views_fn(aug_config(**dict(aug, negative_source='anchor')), interpolation=False)(
    jax.random.key(5), x, n
  )
  assert np.abs(np.asarray(own['negative']) - np.asarray(out['anchor'])[:, :, ::-1]).max() > 1e-3


# ---------------------------------------------------------------- losses


def test_relative_speed_loss_and_speed_bins_on_fixed_vectors():
  e = np.eye(3, dtype=np.float32)
  anchor = jnp.asarray(e[[0, 0]])
  same = jnp.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  changed = jnp.asarray([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
  loss, parts = objectives.relative_speed_loss(anchor, same, changed, margin=0.2)
  # Row 0: max(0, 0.2 - 1 + 0) = 0; row 1: max(0, 0.2 - 0 + 1) = 1.2.
  np.testing.assert_allclose(float(loss), 0.6, rtol=1e-6)
  assert float(parts['speed_acc']) == 0.5
  lo, hi = np.log(0.5), np.log(2.0)
  labels = objectives.speed_bins(jnp.log(jnp.asarray([0.5, 0.8, 1.2, 2.0, 9.0])), lo, hi, 4)
  np.testing.assert_array_equal(labels, [0, 1, 2, 3, 3])
  logits = jnp.asarray([[3.0, 0.0], [0.0, 3.0]])
  loss, parts = objectives.speed_class_loss(logits, jnp.asarray([0, 0]))  # row 1 is wrong
  assert float(parts['speed_acc']) == 0.5
  np.testing.assert_allclose(float(loss), 0.5 * (np.log1p(np.exp(-3)) + np.log1p(np.exp(3))))


def test_dsm_hard_negative_carries_gradient_and_is_masked_where_off():
  rng = np.random.default_rng(0)
  unit = lambda a: objectives.l2_normalize(jnp.asarray(a, jnp.float32))
  q, k, q_neg = (unit(rng.normal(size=(4, 8))) for _ in range(3))
  queue = unit(rng.normal(size=(16, 8)))
  loss = lambda qn, valid: objectives.info_nce(
    q, k, queue, temperature=0.1, q_neg=qn, neg_valid=valid
  )[0]
  valid = jnp.asarray([True, True, False, False])
  grad = np.asarray(jax.grad(loss)(q_neg, valid))
  assert np.abs(grad[:2]).max() > 1e-3 and np.abs(grad[2:]).max() == 0
  plain, _ = objectives.info_nce(q, k, queue, temperature=0.1)
  np.testing.assert_allclose(float(loss(q_neg, jnp.zeros(4, bool))), float(plain), rtol=1e-6)
  # The hard negative's logit is q_neg . k: a broken clip equal to the anchor doubles
  # the positive's mass in the denominator (+log 2 / 4 rows on average here).
  same = float(loss(q, jnp.ones(4, bool)))
  manual = np.mean(
    np.logaddexp(
      np.log(2.0) + np.sum(np.asarray(q * k), -1) / 0.1,
      np.log(np.exp(np.asarray(q @ queue.T) / 0.1).sum(-1)),
    )
    - np.sum(np.asarray(q * k), -1) / 0.1
  )
  np.testing.assert_allclose(same, manual, rtol=1e-5)


# ---------------------------------------------------------------- the step


def _moved(new, old):
  return max(jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new, old)))


@pytest.mark.parametrize(
  'mcc',
  [
    dict(speed_form='both', speed_head='relative'),
    dict(speed_head='classify'),
    dict(speed_form='head', speed_head='classify'),
    dict(speed_form='head', speed_head='relative'),
  ],
)
def test_speed_heads_train_and_report_their_accuracy(mcc):
  _, _, _, state, step = setup(**mcc)
  assert 'speed_head' in state.params
  state, _ = step(state, smooth_batch(seed=11))  # the warm-up's first lr is 0
  new, metrics = step(state, smooth_batch(seed=12))
  assert np.isfinite(float(metrics['speed'])) and 0 <= float(metrics['speed_acc']) <= 1
  assert _moved(new.params['speed_head'], state.params['speed_head']) > 0
  if mcc.get('speed_form') == 'both':
    assert 0 <= float(metrics['acc_speed_clip']) <= 1


def _loss_and_grads(**mcc):
  config, nets, _, state, _ = setup(**mcc)
  fn = jax.jit(
    jax.grad(
      functools.partial(pretrain.step_loss, nets=nets, config=config, total_steps=TOTAL),
      has_aux=True,
    )
  )
  grads, (*_, metrics) = fn(state.params, state.key_params, state, smooth_batch(seed=13))
  return grads, metrics


def test_dsm_broken_clip_is_a_hard_negative_after_its_curriculum_start():
  common = dict(negative_loss='dsm', interpolation=False, speed_positive=False)
  _, on = _loss_and_grads(**common)
  _, off = _loss_and_grads(**common, negative_start=0.5)  # step 0 < 0.5 * TOTAL
  _, rank = _loss_and_grads(**dict(common, negative_loss='rank'), negative_start=0.5)
  # Off: the InfoNCE has no hard column (the same views and queries as the rank form's).
  np.testing.assert_allclose(float(off['nce']), float(rank['nce']), rtol=1e-5)
  assert float(on['nce']) > float(off['nce'])  # one more term in the denominator
  assert 0 <= float(on['neg_win']) <= 1


def test_the_rank_loss_waits_for_its_curriculum_start():
  common = dict(interpolation=False, speed_positive=False, negative_loss='rank')
  _, on = _loss_and_grads(**common)
  _, off = _loss_and_grads(**common, negative_start=0.5)
  np.testing.assert_allclose(float(off['loss']), float(off['nce']), rtol=1e-6)
  assert float(on['loss']) > float(on['nce'])


def test_the_pace_form_keeps_the_speed_clip_out_of_the_instance_task():
  """speed_form='head': the same views and keys as 'both', the speed clip's InfoNCE left out.

  'both' averages the InfoNCE of the same-speed positive with the speed clip's; 'head'
  keeps the first alone (same positive keys: the in-batch terms agree), and adds only the
  speed head's loss.
  """
  common = dict(interpolation=False, broken_negative=False, speed_head='classify')
  grads, pace = _loss_and_grads(**common, speed_form='head')
  _, both = _loss_and_grads(**common, speed_form='both')
  np.testing.assert_allclose(float(pace['nce_batch']), float(both['nce_batch']), rtol=1e-6)
  assert 'acc_speed_clip' not in pace and 'acc_speed_clip' in both
  assert abs(float(pace['nce']) - float(both['nce'])) > 1e-3 * float(both['nce'])
  np.testing.assert_allclose(
    float(pace['loss']), float(pace['nce']) + 0.1 * float(pace['speed']), rtol=1e-5
  )
  assert _moved(grads['speed_head'], jax.tree.map(jnp.zeros_like, grads['speed_head'])) > 0
