"""Losses against direct NumPy computations, and the queue across steps and devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skeljax import objectives


def _unit(rng, *shape):
  x = rng.standard_normal(shape).astype(np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_info_nce(q, k, queue, k_neg, tau, w=1.0):
  losses = []
  for i in range(q.shape[0]):
    pos = np.exp(np.float64(q[i] @ k[i]) / tau)
    denom = pos + sum(np.exp(np.float64(q[i] @ queue[j]) / tau) for j in range(queue.shape[0]))
    if k_neg is not None:
      denom += w * np.exp(np.float64(q[i] @ k_neg[i]) / tau)
    losses.append(-np.log(pos / denom))
  return float(np.mean(losses))


@pytest.mark.parametrize('with_neg', [False, True])
def test_info_nce_matches_numpy(with_neg):
  rng = np.random.default_rng(0)
  q, k, neg, queue = _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 16, 8)
  loss, metrics = objectives.info_nce(q, k, queue, neg if with_neg else None, 0.07)
  want = _np_info_nce(q, k, queue, neg if with_neg else None, 0.07)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  assert 0.0 <= float(metrics['acc']) <= 1.0


@pytest.mark.parametrize('w', [0.0, 0.25, 1.0, 3.0])
def test_negative_weight_scales_its_term_in_the_denominator(w):
  rng = np.random.default_rng(2)
  q, k, neg, queue = _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 16, 8)
  loss, _ = objectives.info_nce(q, k, queue, neg, 0.1, negative_weight=w)
  np.testing.assert_allclose(float(loss), _np_info_nce(q, k, queue, neg, 0.1, w), rtol=1e-5)
  if w == 0.0:  # weight 0 is the loss without the hard negative
    without, _ = objectives.info_nce(q, k, queue, None, 0.1)
    np.testing.assert_allclose(float(loss), float(without), rtol=1e-6)


def test_hard_negative_equal_to_query_raises_loss():
  rng = np.random.default_rng(1)
  q, k, queue = _unit(rng, 8, 16), _unit(rng, 8, 16), _unit(rng, 32, 16)
  without, _ = objectives.info_nce(q, k, queue, None, 0.07)
  far, _ = objectives.info_nce(q, k, queue, -q, 0.07)
  equal, metrics = objectives.info_nce(q, k, queue, q, 0.07)
  assert float(equal) > float(far) >= float(without) - 1e-6
  assert float(equal) > float(without) + 1.0
  # q.q = 1 beats any q.k < 1, so the broken key always wins.
  assert float(metrics['neg_win']) == 1.0


def test_info_nce_gradient_does_not_reach_keys():
  rng = np.random.default_rng(2)
  q, k, queue = _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 8, 8)
  g = jax.grad(lambda kk: objectives.info_nce(q, kk, queue, kk, 0.1)[0])(jnp.asarray(k))
  assert float(jnp.abs(g).max()) == 0.0


@pytest.mark.parametrize('with_neg', [False, True])
def test_batch_negatives_join_the_queue_without_the_query_own_key(with_neg):
  rng = np.random.default_rng(6)
  q, k, neg, queue = _unit(rng, 5, 8), _unit(rng, 5, 8), _unit(rng, 5, 8), _unit(rng, 16, 8)
  ids = jnp.asarray([0, 1, 2, 1, 4])  # sample 1 twice: neither copy is the other's negative
  valid = ids[:, None] != ids[None, :]
  loss, metrics = objectives.info_nce(
    q, k, queue, neg if with_neg else None, 0.1, batch_keys=k, batch_valid=valid
  )
  rows = []
  for i in range(5):
    others = [j for j in range(5) if j != i and int(ids[j]) != int(ids[i])]
    negatives = np.concatenate([k[others], queue])
    rows.append(
      _np_info_nce(q[i : i + 1], k[i : i + 1], negatives, neg[i : i + 1] if with_neg else None, 0.1)
    )
  np.testing.assert_allclose(float(loss), np.mean(rows), rtol=1e-5)
  plain, _ = objectives.info_nce(q, k, queue, neg if with_neg else None, 0.1)
  assert float(loss) > float(plain)  # more negatives, never fewer
  if with_neg:  # the hard negative keeps its column: neg_win still reads it
    want = np.mean(np.sum(q * neg, -1) > np.sum(q * k, -1))
    np.testing.assert_allclose(float(metrics['neg_win']), want)


@pytest.mark.parametrize('mode', ['drop', 'positive'])
def test_batch_negatives_leave_the_neighbours_to_the_queue(mode):
  rng = np.random.default_rng(7)
  q, k, queue = _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 12, 8)
  loss, _ = objectives.info_nce(q, k, queue, None, 0.1, nn_mode=mode, nn_k=2, batch_keys=k)
  rows = []
  for i in range(4):
    e = lambda keys, i=i: np.exp(np.float64(keys @ q[i]) / 0.1)  # noqa: E731
    top = np.argsort(-(queue @ q[i]))[:2]  # the neighbours: queue keys only
    rest = np.delete(queue, top, 0)
    pos, batch, nbrs = e(k[i]), e(np.delete(k, i, 0)).sum(), e(queue[top]).sum()
    if mode == 'drop':
      rows.append(-np.log(pos / (pos + batch + e(rest).sum())))
    else:
      rows.append(-np.log((pos + nbrs) / (pos + batch + nbrs + e(rest).sum())))
  np.testing.assert_allclose(float(loss), np.mean(rows), rtol=1e-5)


def test_in_batch_nce_matches_numpy_masks_repeated_ids_and_takes_no_gradient():
  rng = np.random.default_rng(5)
  q, k = _unit(rng, 6, 8), _unit(rng, 6, 8)
  loss, acc = objectives.in_batch_nce(q, k, 0.1)
  # Each query against the whole batch's keys: its own is the positive, the rest negatives.
  want = np.mean(
    [_np_info_nce(q[i : i + 1], k[i : i + 1], np.delete(k, i, 0), None, 0.1) for i in range(6)]
  )
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  np.testing.assert_allclose(float(acc), np.mean(np.argmax(q @ k.T, axis=1) == np.arange(6)))
  # Sample 1 appears twice (a batch across an epoch boundary): neither copy is its negative.
  ids = jnp.asarray([0, 1, 2, 3, 1, 5])
  masked, _ = objectives.in_batch_nce(q, k, 0.1, ids)
  rows = []
  for i in range(6):
    others = [j for j in range(6) if j != i and int(ids[j]) != int(ids[i])]
    rows.append(_np_info_nce(q[i : i + 1], k[i : i + 1], k[others], None, 0.1))
  np.testing.assert_allclose(float(masked), np.mean(rows), rtol=1e-5)
  g = jax.grad(lambda qq: objectives.in_batch_nce(qq, k, 0.1)[0])(jnp.asarray(q))
  assert float(jnp.abs(g).max()) == 0.0  # a measurement, never part of the loss


def test_interpolation_loss_matches_numpy_and_ignores_absent_persons():
  rng = np.random.default_rng(3)
  pred = rng.standard_normal((2, 2, 6, 5, 3)).astype(np.float32)
  target = rng.standard_normal((2, 2, 6, 5, 3)).astype(np.float32)
  target[1, 1] = 0.0  # absent second person of sample 1
  dropped = np.zeros((2, 6), np.float32)
  dropped[:, [1, 3]] = 1.0
  got = float(objectives.interpolation_loss(pred, target, dropped))
  num, den = 0.0, 0
  for b in range(2):
    for m in range(2):
      if not target[b, m].any():
        continue
      for t in (1, 3):
        num += np.mean((pred[b, m, t] - target[b, m, t]) ** 2)
        den += 1
  np.testing.assert_allclose(got, num / den, rtol=1e-5)
  # Kept frames do not count: changing them leaves the loss unchanged.
  pred2 = pred.copy()
  pred2[:, :, 0] += 100.0
  np.testing.assert_allclose(
    float(objectives.interpolation_loss(pred2, target, dropped)), got, rtol=1e-6
  )


def test_cross_entropy_and_topk_match_numpy():
  logits = np.array([[2.0, 1.0, 0.1], [0.0, 0.5, 3.0], [1.0, 1.0, 0.0]], np.float32)
  labels = np.array([0, 1, 2])
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  want = -np.mean(np.log(p[np.arange(3), labels]))
  np.testing.assert_allclose(float(objectives.cross_entropy(logits, labels)), want, rtol=1e-5)
  w = np.array([1.0, 1.0, 0.0])
  want_w = -np.mean(np.log(p[np.arange(2), labels[:2]]))
  np.testing.assert_allclose(float(objectives.cross_entropy(logits, labels, w)), want_w, rtol=1e-5)
  assert list(np.asarray(objectives.topk_correct(logits, labels, 1))) == [True, False, False]
  assert list(np.asarray(objectives.topk_correct(logits, labels, 2))) == [True, True, False]


def test_queue_enqueues_and_wraps_across_steps():
  queue = jnp.zeros((6, 2))
  ptr = jnp.zeros((), jnp.int32)
  for step in range(4):
    keys = jnp.full((2, 2), float(step + 1))
    queue, ptr = objectives.enqueue(queue, ptr, keys)
  # 4 batches of 2 into 6 rows: step 4 overwrote rows 0-1.
  np.testing.assert_array_equal(np.asarray(queue)[:, 0], [4, 4, 2, 2, 3, 3])
  assert int(ptr) == 2


def test_queue_with_sharded_global_batch_matches_single_device():
  from skeljax import mesh as mesh_lib

  mesh = mesh_lib.make_mesh()
  n = jax.device_count()
  keys = np.arange(4 * n * 3, dtype=np.float32).reshape(4 * n, 3)
  queue = jnp.zeros((8 * n, 3))
  ptr = jnp.zeros((), jnp.int32)
  sharded = jax.device_put(keys, mesh_lib.batch_sharded(mesh))
  step = jax.jit(objectives.enqueue, out_shardings=mesh_lib.replicated(mesh))
  q1, p1 = step(queue, ptr, sharded)
  q1, p1 = step(q1, p1, sharded + 1)
  q2, p2 = objectives.enqueue(queue, ptr, keys)
  q2, p2 = objectives.enqueue(q2, p2, keys + 1)
  np.testing.assert_array_equal(np.asarray(q1), np.asarray(q2))
  assert int(p1) == int(p2) == 0


def test_broken_rank_loss_matches_numpy_and_trains_both_queries():
  rng = np.random.default_rng(3)
  q, qb, k = _unit(rng, 5, 8), _unit(rng, 5, 8), _unit(rng, 5, 8)
  loss, metrics = objectives.broken_rank_loss(q, qb, k, 0.1)
  s_pos, s_neg = np.sum(q * k, -1), np.sum(qb * k, -1)
  want = np.mean(np.log1p(np.exp((s_neg - s_pos) / 0.1)))
  assert float(loss) == pytest.approx(want, rel=1e-5)
  assert float(metrics['neg_win']) == pytest.approx(np.mean(s_neg > s_pos))
  # The broken clip's query gets a gradient (away from the positive key), the key none.
  g_qb, g_k = jax.grad(lambda a, b: objectives.broken_rank_loss(q, a, b, 0.1)[0], (0, 1))(
    jnp.asarray(qb), jnp.asarray(k)
  )
  assert float(jnp.abs(g_qb).max()) > 0 and float(jnp.abs(g_k).max()) == 0
  assert float(jnp.sum(g_qb * k)) > 0  # descending the loss lowers s(q_broken, k_pos)


def test_interpolation_loss_relative_to_the_fill_is_one_at_the_fill():
  rng = np.random.default_rng(4)
  target = rng.normal(size=(2, 1, 6, 3, 3)).astype(np.float32)
  fill = target + 0.1 * rng.normal(size=target.shape).astype(np.float32)
  dropped = np.zeros((2, 6), np.float32)
  dropped[:, 1::2] = 1
  assert float(objectives.interpolation_loss(fill, target, dropped, reference=fill)) == (
    pytest.approx(1.0)
  )
  half = target + 0.5 * (fill - target)
  assert float(objectives.interpolation_loss(half, target, dropped, reference=fill)) == (
    pytest.approx(0.25, rel=1e-5)
  )


def test_interpolation_loss_takes_a_per_joint_mask():
  rng = np.random.default_rng(5)
  pred = rng.standard_normal((2, 2, 6, 4, 3)).astype(np.float32)
  target = rng.standard_normal((2, 2, 6, 4, 3)).astype(np.float32)
  target[0, 1] = 0.0  # absent person
  dropped = (rng.uniform(size=(2, 6, 4)) < 0.4).astype(np.float32)
  got = float(objectives.interpolation_loss(pred, target, dropped))
  err = np.mean((pred - target) ** 2, axis=-1)  # [B, M, T, V]
  w = dropped[:, None] * np.any(target != 0, axis=(2, 3, 4))[:, :, None, None]
  np.testing.assert_allclose(got, np.sum(err * w) / np.sum(w), rtol=1e-5)
  # A whole-frame mask [B, T] scores as the same mask repeated over the joints.
  frames = dropped.max(axis=2)
  np.testing.assert_allclose(
    float(objectives.interpolation_loss(pred, target, frames)),
    float(objectives.interpolation_loss(pred, target, np.repeat(frames[:, :, None], 4, 2))),
    rtol=1e-6,
  )


def _np_motion_mse(pred, target, dropped):
  """The motion loss spelled out: differences touching a dropped entry, present persons."""
  num, den = 0.0, 0
  b, m, t, v, _ = target.shape
  for i, j, s, k in np.ndindex(b, m, t - 1, v):
    if target[i, j].any() and (dropped[i, s, k] or dropped[i, s + 1, k]):
      d_pred = pred[i, j, s + 1, k] - pred[i, j, s, k]
      d_true = target[i, j, s + 1, k] - target[i, j, s, k]
      num += np.mean((d_pred - d_true) ** 2)
      den += 1
  return num / den


def test_motion_loss_scores_the_differences_that_touch_dropped_entries():
  rng = np.random.default_rng(6)
  target = rng.standard_normal((2, 2, 7, 4, 3)).astype(np.float32)
  target[1, 0] = 0.0  # absent person
  dropped = np.zeros((2, 7, 4), np.float32)
  dropped[0, 2:4, 1] = 1
  dropped[1, 4, :] = 1
  dropped[1, 1:3, 3] = 1
  pred = rng.standard_normal(target.shape).astype(np.float32)
  got = float(objectives.motion_interpolation_loss(pred, target, dropped))
  np.testing.assert_allclose(got, _np_motion_mse(pred, target, dropped), rtol=1e-5)
  # The absent person is not scored: its prediction can be anything.
  moved = pred.copy()
  moved[1, 0] += 5.0 * rng.standard_normal(moved[1, 0].shape)
  assert float(objectives.motion_interpolation_loss(moved, target, dropped)) == (
    pytest.approx(got, rel=1e-6)
  )
  # A difference touching no dropped entry does not count either.
  moved = pred.copy()
  moved[0, :, 5:, 1] += 3.0
  assert float(objectives.motion_interpolation_loss(moved, target, dropped)) == (
    pytest.approx(got, rel=1e-6)
  )
  # Exact motion is 0, whatever the constant offset; a whole-frame mask [B, T] works.
  shifted = target + np.float32(0.7)
  assert float(objectives.motion_interpolation_loss(shifted, target, dropped)) < 1e-10
  frames = dropped.max(axis=2)
  np.testing.assert_allclose(
    float(objectives.motion_interpolation_loss(pred, target, frames)),
    _np_motion_mse(pred, target, np.repeat(frames[:, :, None], 4, 2)),
    rtol=1e-5,
  )


def test_motion_loss_relative_to_the_fill_is_one_at_the_fill_and_zero_at_the_target():
  rng = np.random.default_rng(7)
  target = rng.normal(size=(2, 2, 8, 3, 3)).astype(np.float32)
  target[0, 1] = 0.0
  dropped = np.zeros((2, 8, 3), np.float32)
  dropped[:, 2:5, 0] = 1
  dropped[1, 5, 2] = 1
  fill = target + 0.1 * rng.normal(size=target.shape).astype(np.float32)
  loss = lambda pred: float(
    objectives.motion_interpolation_loss(pred, target, dropped, reference=fill)
  )
  assert loss(fill) == pytest.approx(1.0)
  assert loss(target) == 0.0
  assert loss(target + 0.5 * (fill - target)) == pytest.approx(0.25, rel=1e-5)
  fill_mse = _np_motion_mse(fill, target, dropped)
  pred = rng.normal(size=target.shape).astype(np.float32)
  assert loss(pred) == pytest.approx(_np_motion_mse(pred, target, dropped) / fill_mse, rel=1e-5)
  # An absent person's wrong fill does not enter the divisor.
  bad = fill.copy()
  bad[0, 1] = 9.0
  np.testing.assert_allclose(
    float(objectives.motion_interpolation_loss(pred, target, dropped, reference=bad)),
    loss(pred),
    rtol=1e-6,
  )
  # The divisor carries no gradient, and an exact fill is floored, not divided by 0.
  g = jax.grad(
    lambda r: objectives.motion_interpolation_loss(jnp.asarray(pred), target, dropped, r)
  )(jnp.asarray(fill))
  assert float(jnp.abs(g).max()) == 0.0
  exact = float(objectives.motion_interpolation_loss(pred, target, dropped, reference=target))
  floor = 1e-4 * np.mean(np.diff(target, axis=2) ** 2)  # of the target's motion
  assert exact == pytest.approx(_np_motion_mse(pred, target, dropped) / floor, rel=1e-4)


def test_order_loss_matches_numpy_and_counts_broken_clips_scored_natural():
  nat = jnp.array([2.0, -1.0, 0.5])
  brk = jnp.array([-3.0, 0.2, 1.0])
  loss, parts = objectives.order_loss(nat, brk)
  sp = lambda z: np.log1p(np.exp(z))
  want = 0.5 * (np.mean(sp(-np.asarray(nat))) + np.mean(sp(np.asarray(brk))))
  np.testing.assert_allclose(float(loss), want, rtol=1e-6)
  assert float(parts['neg_win']) == pytest.approx(2 / 3)
  # Lower when the head scores natural clips up and broken clips down.
  better, _ = objectives.order_loss(nat + 1.0, brk - 1.0)
  assert float(better) < float(loss)


def _np_nn_loss(q, k, queue, tau, nn_k, mode, valid=None):
  """NumPy reference of the nearest-neighbour forms: top-nn_k valid keys by q . key."""
  losses = []
  for i in range(q.shape[0]):
    sims = queue @ q[i]
    ok = np.ones(len(sims), bool) if valid is None else valid[i]
    order = [j for j in np.argsort(-sims, kind='stable') if ok[j]][:nn_k]
    pos = np.exp(np.float64(q[i] @ k[i]) / tau)
    terms = {j: np.exp(np.float64(sims[j]) / tau) for j in range(len(sims)) if ok[j]}
    if mode == 'drop':
      denom = pos + sum(v for j, v in terms.items() if j not in order)
      losses.append(-np.log(pos / denom))
    else:
      denom = pos + sum(terms.values())
      losses.append(-np.log((pos + sum(terms[j] for j in order)) / denom))
  return float(np.mean(losses))


@pytest.mark.parametrize('mode', ['drop', 'positive'])
@pytest.mark.parametrize('nn_k', [1, 3])
def test_nearest_neighbour_forms_match_numpy(mode, nn_k):
  rng = np.random.default_rng(3)
  q, k, queue = _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 16, 8)
  valid = rng.random((4, 16)) > 0.2  # the query's own keys are never neighbours
  loss, metrics = objectives.info_nce(
    q, k, queue, None, 0.1, queue_valid=valid, nn_mode=mode, nn_k=nn_k
  )
  want = _np_nn_loss(q, k, queue, 0.1, nn_k, mode, valid)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  plain, _ = objectives.info_nce(q, k, queue, None, 0.1, queue_valid=valid)
  assert float(loss) < float(plain)  # a neighbour out of the negatives lowers the loss
  assert float(metrics['nn_active']) == 1.0


def test_nearest_neighbour_positive_near_duplicate_is_not_pushed_away():
  # A queue key equal to the query (a same-action, same-subject twin) is the top neighbour:
  # as a positive it adds to the numerator, so the loss falls below plain InfoNCE's and
  # the instance accuracy ranks the true key only against the remaining negatives.
  rng = np.random.default_rng(4)
  q, k, queue = _unit(rng, 2, 8), _unit(rng, 2, 8), _unit(rng, 8, 8)
  queue[3] = q[0]
  plain, m_plain = objectives.info_nce(q, k, queue, None, 0.1)
  nn, m_nn = objectives.info_nce(q, k, queue, None, 0.1, nn_mode='positive', nn_k=1)
  assert float(nn) < float(plain) - 0.5
  assert float(m_nn['acc']) >= float(m_plain['acc'])


def test_nearest_neighbours_inactive_during_warm_up_is_plain_info_nce():
  rng = np.random.default_rng(5)
  q, k, neg, queue = _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 4, 8), _unit(rng, 16, 8)
  plain, _ = objectives.info_nce(q, k, queue, neg, 0.1, 0.5)
  for mode in ('drop', 'positive'):
    off, m = jax.jit(
      lambda a, mode=mode: objectives.info_nce(
        q, k, queue, neg, 0.1, 0.5, nn_mode=mode, nn_k=2, nn_active=a
      )
    )(jnp.bool_(False))
    np.testing.assert_allclose(float(off), float(plain), rtol=1e-6)
    assert float(m['nn_active']) == 0.0
