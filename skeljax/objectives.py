"""Losses as pure functions of arrays: InfoNCE with a queue and hard negatives,
masked interpolation MSE (of positions or of motion), the queue update, and supervised
cross-entropy.

Shapes: B batch, D feature, K queue length, M persons, T frames, V joints, C channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

_MASKED = -1e4  # a masked logit before the temperature: exp(-1e4 / tau) == 0 in float32


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def info_nce(
  q: jax.Array,
  k_pos: jax.Array,
  queue: jax.Array,
  k_neg: jax.Array | None = None,
  temperature: float = 0.07,
  negative_weight: float = 1.0,
  queue_valid: jax.Array | None = None,
  nn_mode: str = 'off',
  nn_k: int = 1,
  nn_active: jax.Array | bool = True,
  batch_keys: jax.Array | None = None,
  batch_valid: jax.Array | None = None,
  q_neg: jax.Array | None = None,
  neg_valid: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
  """MoCo-v2 InfoNCE: -log softmax of the positive among [pos, hard neg, batch, queue].

  Args:
    q: [B, D] L2-normalised queries (anchor through the query encoder).
    k_pos: [B, D] L2-normalised positive keys (no gradient is taken through them).
    queue: [K, D] L2-normalised negative keys from past batches.
    k_neg: optional [B, D] per-sample hard negative key (the motion-broken clip).
    temperature: softmax temperature tau.
    negative_weight: w, the hard negative's weight in the softmax denominator
      (its exp term is multiplied by w, i.e. log w is added to its logit); 1 is
      plain InfoNCE, w < 1 softens a negative that is too hard.
    queue_valid: optional [B, K] bool, False where a queue key must not count as a
      negative for that query (its own sample's earlier key); those logits are dropped.
    nn_mode: false negatives. 'drop': the query's nn_k most similar valid queue keys are
      left out of its negatives; 'positive': they count as positives (AimCLR's NNM,
      NNCLR): the loss is -log of the softmax mass of {positive, neighbours}. 'off': none.
    nn_k: neighbours per query.
    nn_active: scalar bool (may be traced): False behaves as nn_mode='off' (warm-up).
    batch_keys: optional [B, D] keys of this step (the batch's positives): row i's key is
      query i's positive, every other row a negative from the same key-encoder state as
      the positive (MoCo v3's in-batch negatives beside the queue), so the positive
      cannot be found by being fresher than the queue (docs/results.md, Demo).
    batch_valid: optional [B, B] bool, False where a batch key is the query's own sample
      (an id repeated across an epoch boundary); the diagonal is always left out.
    q_neg: optional [B, D] L2-normalised query-encoder embedding of each sample's
      motion-broken clip (DSM's hard negative, instead of k_neg): its similarity to the
      positive key is the hard-negative logit, with gradient, so the query encoder itself
      learns to push the broken clip away from the positive.
    neg_valid: optional [B] bool, False where the hard negative is left out (a row without
      a broken clip, or the curriculum's warm-up).

  Returns:
    (mean loss, metrics) with metrics['acc'] the fraction of samples whose
    positive has the largest logit.
  """
  k_pos = jax.lax.stop_gradient(k_pos)
  queue = jax.lax.stop_gradient(queue)
  logits = [jnp.sum(q * k_pos, axis=-1, keepdims=True)]
  hard = k_neg is not None or q_neg is not None
  if k_neg is not None:
    logits.append(jnp.sum(q * jax.lax.stop_gradient(k_neg), axis=-1, keepdims=True))
  elif q_neg is not None:
    logits.append(jnp.sum(q_neg * k_pos, axis=-1, keepdims=True))
  if hard and neg_valid is not None:
    logits[1] = jnp.where(jnp.asarray(neg_valid)[:, None], logits[1], _MASKED)
  if batch_keys is not None:
    own = jnp.eye(q.shape[0], dtype=bool)
    if batch_valid is not None:
      own |= ~batch_valid
    batch_logits = q @ jax.lax.stop_gradient(batch_keys).T
    logits.append(jnp.where(own, _MASKED, batch_logits))
  queue_logits = q @ queue.T
  if queue_valid is not None:
    # A large finite value, not -inf: exp underflows to exactly 0 and gradients stay finite.
    queue_logits = jnp.where(queue_valid, queue_logits, _MASKED)
  neighbours = None
  if nn_mode != 'off':
    # The nn_k most similar keys among the valid ones (the query's own keys never count).
    k = min(nn_k, queue.shape[0])
    _, top = jax.lax.top_k(jax.lax.stop_gradient(queue_logits), k)
    neighbours = jnp.any(jnp.arange(queue.shape[0])[None, :, None] == top[:, None, :], -1)
    if queue_valid is not None:
      neighbours &= queue_valid
    neighbours &= jnp.asarray(nn_active)
  if nn_mode == 'drop':
    queue_logits = jnp.where(neighbours, _MASKED, queue_logits)
  logits.append(queue_logits)
  logits = jnp.concatenate(logits, axis=-1) / temperature
  weighted = logits
  if hard and negative_weight != 1.0:
    weighted = logits.at[:, 1].add(jnp.log(negative_weight))
  log_p = jax.nn.log_softmax(weighted, axis=-1)
  if nn_mode == 'positive':
    lead = logits.shape[1] - queue.shape[0]  # the positive (and hard negative) columns
    first = jnp.broadcast_to(jnp.arange(lead)[None, :] == 0, (q.shape[0], lead))
    pos = jnp.concatenate([first, neighbours], axis=-1)
    loss = -jax.nn.logsumexp(jnp.where(pos, log_p, -jnp.inf), axis=-1)
    # Instance accuracy: the positive above every key that is still a negative.
    ranked = jnp.where(pos & ~(jnp.arange(logits.shape[1]) == 0)[None, :], _MASKED, logits)
  else:
    loss = -log_p[:, 0]
    ranked = logits
  acc = jnp.mean(jnp.argmax(ranked, axis=-1) == 0)
  metrics = {'acc': acc}
  if neighbours is not None:
    metrics['nn_active'] = jnp.asarray(nn_active, jnp.float32)
  if hard:
    # How often the motion-broken clip outscores the positive: the hard part.
    win = logits[:, 1] > logits[:, 0]
    if neg_valid is None:
      metrics['neg_win'] = jnp.mean(win)
    else:
      valid = jnp.broadcast_to(jnp.asarray(neg_valid), win.shape)
      metrics['neg_win'] = jnp.sum(win & valid) / jnp.maximum(jnp.sum(valid), 1)
  return jnp.mean(loss), metrics


def in_batch_nce(
  q: jax.Array, k: jax.Array, temperature: float, ids: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
  """A staleness-free read of the instance task: InfoNCE and top-1 of each query against
  the same step's keys only (its own positive and the other B - 1 samples' positives).

  Every key comes from one key-encoder state, so, unlike the queue's, no key can be told
  apart by its age: a queue filled while the encoder moves fast ranks the fresh positive
  first for being fresh, and the queue loss then rises as the learning rate decays even
  when the representation improves (docs/results.md, Demo). Chance: log B and 1 / B.
  `ids` [B] masks other samples with the query's id. A measurement: no gradient.
  """
  # info_nce's batch negatives with an empty queue: the same masking, one implementation.
  loss, metrics = info_nce(
    jax.lax.stop_gradient(q),
    k,
    jnp.zeros((0, k.shape[-1]), k.dtype),
    temperature=temperature,
    batch_keys=k,
    batch_valid=None if ids is None else ids[:, None] != ids[None, :],
  )
  return loss, metrics['acc']


def broken_rank_loss(
  q: jax.Array, q_broken: jax.Array, k_pos: jax.Array, temperature: float
) -> tuple[jax.Array, dict]:
  """The motion-broken clip ranked below the natural anchor against the positive key.

  -log softmax over {anchor, broken} of their similarity to the positive key, i.e.
  softplus((s(q_broken, k_pos) - s(q, k_pos)) / tau). Both clips go through the query
  encoder, so the gradient teaches the encoder itself to tell natural from broken order
  (as a hard negative inside InfoNCE the broken clip reaches only the EMA key encoder).

  Args:
    q, q_broken: [B, D] L2-normalised queries of the anchor and of the broken clip.
    k_pos: [B, D] positive keys (no gradient).
  Returns:
    (mean loss, {'neg_win': fraction where the broken clip is the closer one}).
  """
  k_pos = jax.lax.stop_gradient(k_pos)
  s_pos = jnp.sum(q * k_pos, axis=-1)
  s_neg = jnp.sum(q_broken * k_pos, axis=-1)
  loss = jax.nn.softplus((s_neg - s_pos) / temperature)
  return jnp.mean(loss), {'neg_win': jnp.mean(s_neg > s_pos)}


def relative_speed_loss(
  anchor: jax.Array, same: jax.Array, changed: jax.Array, margin: float
) -> tuple[jax.Array, dict]:
  """RSPNet's relative-speed perception: the same-speed pair closer than the changed one.

  Args:
    anchor, same, changed: [B, D] L2-normalised embeddings (the speed head's own space) of
      the anchor, of a clip at the anchor's speed and of a clip at another speed.
    margin: the cosine margin (>= 0).
  Returns:
    (mean of max(0, margin - cos(anchor, same) + cos(anchor, changed)),
     {'speed_acc': fraction where the same-speed clip is the closer one}).
  """
  s_same = jnp.sum(anchor * same, axis=-1)
  s_changed = jnp.sum(anchor * changed, axis=-1)
  loss = jax.nn.relu(margin - s_same + s_changed)
  return jnp.mean(loss), {'speed_acc': jnp.mean(s_same > s_changed)}


def speed_bins(log_speed: jax.Array, lo: float, hi: float, classes: int) -> jax.Array:
  """[B] int32 class of each log relative speed: `classes` equal bins over [lo, hi]."""
  frac = (log_speed - lo) / max(hi - lo, 1e-6)
  return jnp.clip(jnp.floor(frac * classes), 0, classes - 1).astype(jnp.int32)


def speed_class_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict]:
  """Playback-rate prediction: cross-entropy of [B, classes] logits, and its accuracy."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.mean(loss), {'speed_acc': jnp.mean(jnp.argmax(logits, axis=-1) == labels)}


def order_loss(natural: jax.Array, broken: jax.Array) -> tuple[jax.Array, dict]:
  """Binary cross-entropy of a natural-vs-broken-motion head.

  Args:
    natural, broken: [N] logits of the head on natural clips (label 1) and on their
      motion-broken versions (label 0).
  Returns:
    (mean loss over both halves, {'neg_win': fraction of broken clips scored natural}).
  """
  loss = 0.5 * (jnp.mean(jax.nn.softplus(-natural)) + jnp.mean(jax.nn.softplus(broken)))
  return loss, {'neg_win': jnp.mean(broken > 0)}


def _dropped_weight(target: jax.Array, dropped: jax.Array) -> jax.Array:
  """[B, M, T, V] weights: 1 at dropped (frame, joint) entries of present persons.

  dropped: [B, T] (whole frames) or [B, T, V]; a person whose target is all zeros is
  absent and gets weight 0.
  """
  present = jnp.any(target != 0, axis=(2, 3, 4)).astype(target.dtype)  # [B, M]
  d = dropped.astype(target.dtype)
  d = d[:, :, None] if d.ndim == 2 else d  # [B, T, 1 or V]
  return present[:, :, None, None] * d[:, None]


def _fill_error(masked_mse, reference, target_scale: jax.Array) -> jax.Array:
  """masked_mse(reference), the divisor of a relative loss: floored, without gradient.

  Floored at 1e-4 of `target_scale` (the target's mean square): on nearly linear motion
  the fill is almost exact, and dividing by its error alone would blow the loss up.
  """
  floor = 1e-4 * target_scale + 1e-12
  return jax.lax.stop_gradient(jnp.maximum(masked_mse(reference), floor))


def _weighted_mean(per_entry: jax.Array, weight: jax.Array) -> jax.Array:
  """Mean of per_entry over the entries `weight` (broadcast to its shape) selects."""
  w = jnp.broadcast_to(weight, per_entry.shape)
  return jnp.sum(per_entry * w) / jnp.maximum(jnp.sum(w), 1.0)


def interpolation_loss(
  pred: jax.Array, target: jax.Array, dropped: jax.Array, reference: jax.Array | None = None
) -> jax.Array:
  """MSE on the dropped frames (or (frame, joint) entries) of present persons only.

  Args:
    pred, target: [B, M, T, V, C].
    dropped: [B, T] (whole frames) or [B, T, V] (per joint, augment interp_drop='span'),
      1 where an entry was dropped and must be reconstructed.
    reference: optional [B, M, T, V, C], the decoder's starting point (the linearly
      filled input). The loss is then divided by the same masked MSE of the reference
      (no gradient; floored at 1e-4 of the target's mean square), so 1.0 means no better
      than the fill and the number is unit-free.

  Absent persons (all-zero target) are not scored, so they cannot dilute the loss.
  """
  weight = _dropped_weight(target, dropped)

  def masked_mse(a):
    return _weighted_mean(jnp.mean(jnp.square(a - target), axis=-1), weight)  # [B, M, T, V]

  loss = masked_mse(pred)
  if reference is None:
    return loss
  return loss / _fill_error(masked_mse, reference, jnp.mean(jnp.square(target)))


def motion_interpolation_loss(
  pred: jax.Array, target: jax.Array, dropped: jax.Array, reference: jax.Array | None = None
) -> jax.Array:
  """MSE of the frame differences x[t+1] - x[t] that touch a dropped entry (MAMP-style).

  The reconstruction is scored on its motion, not its positions: difference t of joint v
  counts when frame t or t + 1 of that joint was dropped, against the target's same
  difference, so a constant offset of a whole masked span costs nothing but a wrong
  trajectory inside it does.

  Args:
    pred, target: [B, M, T, V, C].
    dropped: [B, T] (whole frames) or [B, T, V], 1 at dropped entries.
    reference: optional [B, M, T, V, C], the linearly filled input. The loss is then
      divided by the same masked MSE of the reference's differences (no gradient;
      floored at 1e-4 of the mean square of the target's differences), so 1.0 means no
      better than the fill.

  Returns the scalar loss. Absent persons (all-zero target) are not scored.
  """
  weight = _dropped_weight(target, dropped)  # [B, M, T, 1 or V]
  touched = jnp.maximum(weight[:, :, 1:], weight[:, :, :-1])  # [B, M, T-1, 1 or V]
  diff = lambda a: a[:, :, 1:] - a[:, :, :-1]  # [B, M, T-1, V, C]
  motion = diff(target)

  def masked_mse(a):
    return _weighted_mean(jnp.mean(jnp.square(diff(a) - motion), axis=-1), touched)

  loss = masked_mse(pred)
  if reference is None:
    return loss
  return loss / _fill_error(masked_mse, reference, jnp.mean(jnp.square(motion)))


def enqueue(queue: jax.Array, ptr: jax.Array, keys: jax.Array, ids=None, queue_ids=None) -> tuple:
  """Writes keys [B, D] at rows ptr..ptr+B-1 of queue [K, D] (K % B == 0).

  With `ids` [B] and `queue_ids` [K], the keys' sample ids are written at the same
  rows and (queue, queue_ids, ptr) is returned; otherwise (queue, ptr).
  Under a sharded jit `keys` is the global batch, so every device writes the
  same rows and the replicated queue stays identical everywhere.
  """
  b = keys.shape[0]
  queue = jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype), (ptr, 0))
  new_ptr = (ptr + b) % queue.shape[0]
  if ids is None:
    return queue, new_ptr
  queue_ids = jax.lax.dynamic_update_slice(queue_ids, ids.astype(queue_ids.dtype), (ptr,))
  return queue, queue_ids, new_ptr


def cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array | None = None):
  """Mean softmax cross-entropy over samples with weight 1 (padding has weight 0)."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    return jnp.mean(loss)
  weights = weights.astype(loss.dtype)
  return jnp.sum(loss * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """[B] bool: the label is among the k largest logits (ties broken by index)."""
  k = min(k, logits.shape[-1])
  top = jax.lax.top_k(logits, k)[1]
  return jnp.any(top == labels[:, None], axis=-1)
