"""The core of pretraining, `pretrain.train_step`, checked property by property.

Each test names what would break it: the EMA formula, what the queue receives, a
gradient into the key encoder, the own-sample mask, and the Shuffle-BN order.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import demo
from skeljax import objectives, optim, pretrain
from skeljax.models import WIDTHS, heads

B = 16
TOTAL = 100


def tiny_config(**mcc):
  c = demo.get_config('tiny')
  for k, v in mcc.items():
    c.mcc[k] = v
  return c


def smooth_batch(b=B, seed=0, t_max=64, n_frames=40):
  rng = np.random.default_rng(seed)
  t = np.arange(t_max)[None, None, :, None, None]
  pose = rng.normal(size=(b, 1, 1, 25, 3))
  amp = 0.1 * rng.normal(size=(b, 1, 1, 25, 3))
  x = pose + amp * np.sin(0.2 * t + rng.uniform(0, 6, size=(b, 1, 1, 25, 3)))
  x = np.where(t < n_frames, x, 0.0).astype(np.float32)
  return {
    'x': jnp.asarray(x),
    'n': jnp.full((b,), n_frames, jnp.int32),
    'index': jnp.arange(100, 100 + b, dtype=jnp.int32),
  }


@functools.cache
def _setup(**mcc):
  config = tiny_config(**dict(mcc))
  nets = pretrain.make_nets(config)
  tx, _ = optim.make_optimizer(config.pretrain, 10, TOTAL)
  state = jax.jit(lambda r: pretrain.init_state(nets, config, tx, r))(jax.random.PRNGKey(0))
  step = jax.jit(
    functools.partial(pretrain.train_step, nets=nets, config=config, total_steps=TOTAL)
  )
  return config, nets, tx, state, step


def setup(**mcc):
  return _setup(**mcc)


@functools.cache
def _loss_fn(**mcc):
  config, nets, _, _, _ = _setup(**mcc)
  return jax.jit(functools.partial(pretrain.step_loss, nets=nets, config=config))


def loss_fn(**mcc):
  """Jitted `pretrain.step_loss(params, key_params, state, batch)` for the config."""
  return _loss_fn(**mcc)


def _leaves_close(a, b, **kw):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


def test_ema_update_uses_the_configured_momentum():
  config, _, _, state, step = setup(momentum=0.9, momentum_schedule='constant')
  # Move the key encoder away from the query encoder first, so the EMA is visible.
  state, _ = step(state, smooth_batch(seed=1))
  state, _ = step(state, smooth_batch(seed=2))
  before = state.key_params
  new, metrics = step(state, smooth_batch(seed=3))
  online = {'encoder': new.params['encoder'], 'projector': new.params['projector']}
  want = jax.tree.map(lambda k, q: 0.9 * k + 0.1 * q, before, online)
  _leaves_close(new.key_params, want, rtol=1e-5, atol=1e-7)
  assert float(metrics['momentum']) == pytest.approx(0.9)
  # Not a no-op: the key weights moved, and not onto the query weights.
  pairs = zip(jax.tree.leaves(new.key_params), jax.tree.leaves(before), strict=True)
  assert max(float(jnp.max(jnp.abs(a - b))) for a, b in pairs) > 0


def test_momentum_follows_the_run_length_and_the_cosine_schedule():
  mcc = tiny_config().mcc
  # momentum -1: derived, time constant = ema_fraction of the run; the cosine ends at 1.
  mcc.update(momentum=-1.0, momentum_schedule='cosine', momentum_end=-1.0, ema_fraction=0.25)
  assert pretrain.base_momentum(mcc, 900) == pytest.approx(1 - 1 / (0.25 * 900))
  assert pretrain.base_momentum(mcc, 94_000) == pytest.approx(0.999)
  assert pretrain.base_momentum(mcc, 20) == pytest.approx(0.9)
  mcc.momentum = 0.97  # a fixed value wins
  assert pretrain.base_momentum(mcc, 900) == pytest.approx(0.97)
  mcc.momentum = -1.0
  m0 = pretrain.base_momentum(mcc, 900)
  assert float(pretrain.momentum_at(mcc, 0, 900)) == pytest.approx(m0)
  assert float(pretrain.momentum_at(mcc, 450, 900)) == pytest.approx(1 - (1 - m0) / 2, rel=1e-6)
  assert float(pretrain.momentum_at(mcc, 900, 900)) == pytest.approx(1.0)
  # A quarter of the way the cosine has closed (1 - cos(pi/4)) / 2, about 15%, of the gap
  # to 1; a linear ramp, equal to it at 0, 1/2 and 1, would have closed 25%.
  quarter = 1 - (1 - m0) * 0.5 * (1 + np.cos(np.pi / 4))
  assert float(pretrain.momentum_at(mcc, 225, 900)) == pytest.approx(quarter, rel=1e-6)
  mcc.momentum_schedule = 'constant'
  assert float(pretrain.momentum_at(mcc, 899, 900)) == pytest.approx(m0)


def test_capped_cosine_momentum_starts_fast_and_ends_below_one():
  mcc = tiny_config().mcc
  mcc.update(momentum=0.99, momentum_schedule='cosine', momentum_end=0.999)
  assert float(pretrain.momentum_at(mcc, 0, 900)) == pytest.approx(0.99)
  assert float(pretrain.momentum_at(mcc, 450, 900)) == pytest.approx(0.9945, rel=1e-6)
  assert float(pretrain.momentum_at(mcc, 900, 900)) == pytest.approx(0.999, rel=1e-6)
  assert pretrain.end_momentum(mcc, 900) == 0.999
  steps = np.arange(0, 901, 50)
  m = np.array([float(pretrain.momentum_at(mcc, s, 900)) for s in steps])
  assert np.all(np.diff(m) > 0) and m.max() < 1.0


def test_queue_receives_the_positive_keys_and_ids_at_the_pointer():
  config, nets, _, state, step = setup()
  state, _ = step(state, smooth_batch(seed=1))  # ptr now at B
  assert int(state.queue_ptr) == B
  batch = smooth_batch(seed=2)
  _, (_, _, k_pos, _) = loss_fn()(state.params, state.key_params, state, batch)
  new, _ = step(state, batch)
  q = np.asarray(new.queue)
  np.testing.assert_allclose(q[B : 2 * B], np.asarray(k_pos), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(q[:B], np.asarray(state.queue)[:B])
  np.testing.assert_array_equal(q[2 * B :], np.asarray(state.queue)[2 * B :])
  np.testing.assert_array_equal(np.asarray(new.queue_ids)[B : 2 * B], np.asarray(batch['index']))
  assert int(new.queue_ptr) == 2 * B % config.mcc.queue_size
  # The positive keys are not the queries: enqueuing q would have put other rows there.
  views, _ = pretrain.step_views(state, batch, config)
  pooled, _, _, _ = pretrain.encode(
    nets.encoder,
    {'params': state.params['encoder'], 'batch_stats': state.batch_stats},
    views['anchor'],
    groups=config.mcc.bn_groups,
    rng=jax.random.PRNGKey(0),
  )
  qry = objectives.l2_normalize(nets.projector.apply({'params': state.params['projector']}, pooled))
  assert np.abs(np.asarray(qry) - q[B : 2 * B]).max() > 1e-3


def test_no_gradient_reaches_the_key_encoder():
  config, nets, _, state, step = setup()
  state, _ = step(state, smooth_batch(seed=1))
  batch = smooth_batch(seed=2)
  step_loss = functools.partial(pretrain.step_loss, nets=nets, config=config)
  grads = jax.jit(jax.grad(lambda kp: step_loss(state.params, kp, state, batch)[0]))(
    state.key_params
  )
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))
  # ... while the query parameters do get one.
  gq = jax.jit(jax.grad(lambda p: step_loss(p, state.key_params, state, batch)[0]))(state.params)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(gq['encoder'])) > 0


def _np_masked_nce(q, k, queue, valid, tau):
  out = []
  for i in range(len(q)):
    logits = np.concatenate([[q[i] @ k[i]], queue[valid[i]] @ q[i]]) / tau
    out.append(-(logits[0] - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()))
  return float(np.mean(out))


def test_own_sample_keys_are_dropped_from_the_negatives():
  rng = np.random.default_rng(0)
  norm = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
  q, k = norm(rng.normal(size=(4, 8))), norm(rng.normal(size=(4, 8)))
  queue = norm(rng.normal(size=(12, 8)))
  queue[3] = q[1]  # sample 1's own earlier key: identical to its query, a huge logit
  ids, queue_ids = np.arange(4), np.full(12, -1)
  queue_ids[3] = 1
  valid = ids[:, None] != queue_ids[None, :]
  loss, _ = objectives.info_nce(
    jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), None, 0.1, queue_valid=jnp.asarray(valid)
  )
  assert float(loss) == pytest.approx(_np_masked_nce(q, k, queue, valid, 0.1), rel=1e-5)
  unmasked, _ = objectives.info_nce(jnp.asarray(q), jnp.asarray(k), jnp.asarray(queue), None, 0.1)
  assert float(unmasked) > float(loss) + 0.1


def test_train_step_masks_the_queries_own_ids():
  config, nets, _, state, _ = setup()
  batch = smooth_batch(seed=2)
  keys = objectives.l2_normalize(jax.random.normal(jax.random.PRNGKey(3), state.queue.shape))
  mine = state.replace(queue=keys, queue_ids=jnp.full_like(state.queue_ids, 100))  # sample 0's id
  other = state.replace(queue=keys, queue_ids=jnp.full_like(state.queue_ids, -1))
  f = lambda s: loss_fn()(s.params, s.key_params, s, batch)
  _, (_, _, _, m_mine) = f(mine)
  _, (_, _, _, m_other) = f(other)
  # Sample 0 has no queue negatives left, so its loss is lower than with the full queue.
  assert float(m_mine['nce']) < float(m_other['nce'])
  _, (_, _, _, m_off) = loss_fn(mask_own=False)(mine.params, mine.key_params, mine, batch)
  assert float(m_off['nce']) == pytest.approx(float(m_other['nce']), rel=1e-6)


def test_batch_negatives_add_the_steps_other_keys_and_report_the_in_batch_task():
  _, _, _, state, _ = setup()
  batch = smooth_batch(seed=2)
  f = lambda **mcc: loss_fn(**mcc)(state.params, state.key_params, state, batch)[1]
  _, _, k_pos, plain = f()
  _, _, k_same, joined = f(batch_negatives=True)
  np.testing.assert_array_equal(np.asarray(k_pos), np.asarray(k_same))  # same views and keys
  assert float(joined['nce']) > float(plain['nce'])  # B - 1 more negatives per query
  # The in-batch read is a measurement of the same keys either way.
  assert float(joined['nce_batch']) == pytest.approx(float(plain['nce_batch']), rel=1e-6)
  b = k_pos.shape[0]
  assert 0.0 < float(plain['nce_batch']) and 0.0 <= float(plain['acc_batch']) <= 1.0
  assert float(plain['nce_batch']) < np.log(b) + 2.0


def test_without_queue_negatives_the_steps_keys_are_the_only_negatives():
  _, _, _, state, _ = setup()
  batch = smooth_batch(seed=2)
  f = lambda **mcc: loss_fn(**mcc)(state.params, state.key_params, state, batch)[1]
  rank = dict(negative_loss='rank')  # the broken clip outside the InfoNCE
  _, _, _, joined = f(batch_negatives=True, **rank)
  _, _, _, alone = f(batch_negatives=True, queue_negatives=False, **rank)
  # The trained loss is then the in-batch read itself (same queries, keys and masks) ...
  assert float(alone['nce']) == pytest.approx(float(alone['nce_batch']), rel=1e-6)
  assert float(alone['acc']) == pytest.approx(float(alone['acc_batch']))
  # ... and below the loss with the queue's keys as negatives too.
  assert float(alone['nce']) < float(joined['nce'])
  # DSM (the default) adds the reversed twins to that denominator: the loss rises above it.
  _, _, _, dsm = f(batch_negatives=True, queue_negatives=False, negative_loss='dsm')
  assert float(dsm['nce']) > float(dsm['nce_batch']) + 1e-4


def test_shuffle_bn_restores_the_sample_order():
  config, nets, _, state, _ = setup()
  views, _ = pretrain.step_views(state, smooth_batch(seed=4), config)
  clips = views['positive']
  variables = {'params': state.key_params['encoder'], 'batch_stats': state.key_batch_stats}
  rng_shuffle, rng = jax.random.PRNGKey(5), jax.random.PRNGKey(6)
  groups = 4
  pooled, _ = pretrain.shuffled_encode(
    nets.encoder, variables, clips, groups=groups, rng_shuffle=rng_shuffle, rng=rng
  )
  # By hand: the same permutation, each group through the encoder alone (its own BN
  # statistics), every row written back to its sample's place.
  perm = np.asarray(jax.random.permutation(rng_shuffle, clips.shape[0]))
  want = np.zeros(np.shape(pooled), np.float32)
  size = clips.shape[0] // groups
  for g in range(groups):
    rows = perm[g * size : (g + 1) * size]
    (p, _), _ = nets.encoder.apply(
      variables,
      clips[rows],
      jnp.full((size,), clips.shape[2], jnp.int32),
      train=True,
      mutable=['batch_stats'],
    )
    want[rows] = np.asarray(p)
  np.testing.assert_allclose(np.asarray(pooled), want, rtol=1e-4, atol=1e-5)
  # Ghost BN really is per group: one global batch gives other features.
  whole, _ = pretrain.shuffled_encode(
    nets.encoder, variables, clips, groups=1, rng_shuffle=rng_shuffle, rng=rng
  )
  assert np.abs(np.asarray(whole) - want).max() > 1e-3


@pytest.mark.slow  # three more step compilations, ~2 min on 2 cores
def test_step_is_finite_and_deterministic_for_every_objective_variant():
  for mcc in (
    {'symmetric': True, 'bn_groups': 1},
    {'negative_loss': 'infonce'},
    {'negative_loss': 'classify'},
  ):
    _, _, _, state, step = setup(**mcc)
    a, ma = step(state, smooth_batch(seed=7))
    b, mb = step(state, smooth_batch(seed=7))
    assert all(np.isfinite(float(v)) for v in ma.values()), mcc
    assert {k: float(v) for k, v in ma.items()} == {k: float(v) for k, v in mb.items()}, mcc


def test_query_bn_statistics_come_from_the_natural_clips_only():
  # The rank loss sends broken clips through the query encoder in the same pass; the
  # running statistics the probe will use must be those of the anchor groups alone.
  config, nets, _, state, _ = setup(
    negative_loss='rank', negative_fraction=0.5, interpolation=False
  )
  batch = smooth_batch(seed=8)
  _, (batch_stats, _, _, _) = loss_fn(
    negative_loss='rank', negative_fraction=0.5, interpolation=False
  )(state.params, state.key_params, state, batch)
  views, rng = pretrain.step_views(state, batch, config)
  variables = {'params': state.params['encoder'], 'batch_stats': state.batch_stats}
  rng_q = jax.random.split(rng, 4)[0]
  groups = config.mcc.bn_groups
  assert groups >= 2
  anchors_only = pretrain.encode(
    nets.encoder, variables, views['anchor'], groups=groups, rng=rng_q
  )[3]
  _leaves_close(batch_stats, anchors_only, rtol=1e-5, atol=1e-6)
  # ... and would differ if the broken clips' groups were averaged in.
  mixed = jnp.concatenate([views['anchor'], views['negative'][: B // 2]], axis=0)
  with_broken = pretrain.encode(
    nets.encoder, variables, mixed, groups=mixed.shape[0] // (B // groups), rng=rng_q
  )[3]
  diff = max(
    float(jnp.max(jnp.abs(a - b)))
    for a, b in zip(jax.tree.leaves(batch_stats), jax.tree.leaves(with_broken), strict=True)
  )
  assert diff > 1e-6


def test_classify_trains_the_order_head_and_only_then_holds_it():
  _, _, _, state, step = setup(negative_loss='classify')
  assert 'order_head' in state.params
  assert 'order_head' not in setup()[3].params  # rank (the default) has no such head
  state, _ = step(state, smooth_batch(seed=9))  # the warm-up's first lr is 0
  new, metrics = step(state, smooth_batch(seed=10))
  assert 0 <= float(metrics['neg_win']) <= 1 and np.isfinite(float(metrics['broken']))
  moved = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))),
    new.params['order_head'],
    state.params['order_head'],
  )
  assert max(jax.tree.leaves(moved)) > 0


# ---------------------------------------------------------------- span + full + motion


def span_config():
  """The tiny config with spans, the full-resolution decoder and the motion target."""
  c = tiny_config(interpolation=True)
  c.augment.interp_drop = 'span'
  c.mcc.decoder_tap = 'full'
  c.mcc.interp_target = 'motion'
  return c


def test_span_full_motion_step_is_finite_and_trains_the_decoder():
  config = span_config()
  nets = pretrain.make_nets(config)
  assert isinstance(nets.decoder, heads.FullResDecoder)
  # Plain SGD at lr 1 (no momentum, no decay): the step's parameter change is -gradient.
  tx = optax.sgd(1.0)
  state = jax.jit(lambda r: pretrain.init_state(nets, config, tx, r))(jax.random.PRNGKey(0))
  batch = smooth_batch(seed=11)
  views, rng = jax.eval_shape(functools.partial(pretrain.step_views, config=config), state, batch)
  t, v, p = config.data.frames, 25, config.data.persons
  assert views['interp_mask'].shape == (B, t, v)
  enc_vars = {'params': state.params['encoder'], 'batch_stats': state.batch_stats}
  encode = functools.partial(pretrain.encode, nets.encoder, groups=1, joints=True)
  sown = jax.eval_shape(lambda c, r: encode(enc_vars, c, rng=r)[2], views['interp_input'], rng)
  width = WIDTHS[config.model.size]
  assert sown['joints_full'][0].shape == (B * p, t, v, width[3])
  assert sown['joints'][0].shape == (B * p, t // 4, v, width[-1])

  step = functools.partial(pretrain.train_step, nets=nets, config=config, total_steps=TOTAL)
  new, metrics = jax.jit(step)(state, batch)
  assert all(np.isfinite(float(m)) for m in metrics.values())
  assert float(metrics['interp']) == pytest.approx(1.0, abs=1e-5)  # zero residual: the fill
  grad = jax.tree.map(lambda a, b: b - a, new.params['decoder'], state.params['decoder'])
  assert float(jnp.abs(grad['out']['kernel']).max()) > 0
  # Scored on motion: a constant offset of the output costs nothing, so its bias gets
  # no gradient (the position target would pull it).
  bias, kernel = (float(jnp.abs(grad['out'][k]).max()) for k in ('bias', 'kernel'))
  assert bias < 1e-3 * kernel


@pytest.mark.slow  # ~50 s nice'd on 2 cores busy with a training job
def test_full_decoder_learns_to_beat_the_linear_fill_on_smooth_motion():
  # Continuity the fill cannot solve: 4-8 frame spans of sinusoids. The decoder and a
  # small ST-GCN, fitted together on one batch (fresh spans each step), must predict the
  # hidden motion clearly better than the straight line (1.0 = no better).
  from skeljax import augment, skeleton
  from skeljax.models import STGCN

  t, v, b = 32, 20, 8
  layout = skeleton.get_layout('kinect20')
  rng = np.random.default_rng(0)
  frame = np.arange(t)[None, None, :, None, None]
  shape = (b, 1, 1, v, 3)
  phase = rng.uniform(0, 2 * np.pi, shape)
  x = rng.normal(size=shape) + 0.3 * np.sin(rng.uniform(0.3, 0.6, shape) * frame + phase)
  x, n = jnp.asarray(x, jnp.float32), jnp.full((b,), t, jnp.int32)
  enc = STGCN(layout, widths=(8, 16, 16), strides=(1, 2, 2))
  dec = heads.FullResDecoder(frames=t, persons=1, num_joints=v, channels=3, width=32)
  enc_vars = enc.init(jax.random.key(0), x, n, train=False)
  (_, temporal), inter = enc.apply(enc_vars, x, n, train=False, mutable=['intermediates'])
  feats = pretrain.decoder_inputs(inter['intermediates'], temporal, 'full')
  params = {'encoder': enc_vars['params'], 'decoder': dec.init(jax.random.key(1), *feats)['params']}
  drop = jax.vmap(functools.partial(augment.interpolation_input, drop='span'))

  def relative_loss(p, key):
    sparse, dropped = drop(jax.random.split(key, b), x)
    variables = {'params': p['encoder'], 'batch_stats': enc_vars['batch_stats']}
    (_, temporal), upd = enc.apply(
      variables, sparse, n, train=True, mutable=['batch_stats', 'intermediates']
    )
    feats = pretrain.decoder_inputs(upd['intermediates'], temporal, 'full')
    recon = sparse + dec.apply({'params': p['decoder']}, *feats)
    return objectives.motion_interpolation_loss(recon, x, dropped, reference=sparse)

  tx = optax.adam(3e-3)

  def one(carry, key):
    p, opt = carry
    updates, opt = tx.update(jax.grad(relative_loss)(p, key), opt, p)
    return (optax.apply_updates(p, updates), opt), None

  @jax.jit
  def before_and_after(p):
    """The held-out relative loss (8 fresh span draws) before and after 250 Adam steps."""
    held_out = lambda p: jnp.mean(
      jax.vmap(lambda k: relative_loss(p, k))(jax.random.split(jax.random.key(9), 8))
    )
    fitted = jax.lax.scan(one, (p, tx.init(p)), jax.random.split(jax.random.key(2), 250))[0][0]
    return held_out(p), held_out(fitted)

  start, end = (float(r) for r in before_and_after(params))
  assert start == pytest.approx(1.0, abs=1e-5)  # the zero-initialised decoder is the fill
  assert end < 0.7
