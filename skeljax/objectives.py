"""Losses as pure functions of arrays: InfoNCE with a queue and hard negatives,
masked interpolation MSE, the queue update, and supervised cross-entropy.

Shapes: B batch, D feature, K queue length, M persons, T frames, V joints, C channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def info_nce(
  q: jax.Array,
  k_pos: jax.Array,
  queue: jax.Array,
  k_neg: jax.Array | None = None,
  temperature: float = 0.07,
  negative_weight: float = 1.0,
) -> tuple[jax.Array, dict]:
  """MoCo-v2 InfoNCE: -log softmax of the positive among [pos, hard neg, queue].

  Args:
    q: [B, D] L2-normalised queries (anchor through the query encoder).
    k_pos: [B, D] L2-normalised positive keys (no gradient is taken through them).
    queue: [K, D] L2-normalised negative keys from past batches.
    k_neg: optional [B, D] per-sample hard negative key (the motion-broken clip).
    temperature: softmax temperature tau.
    negative_weight: w, the hard negative's weight in the softmax denominator
      (its exp term is multiplied by w, i.e. log w is added to its logit); 1 is
      plain InfoNCE, w < 1 softens a negative that is too hard.

  Returns:
    (mean loss, metrics) with metrics['acc'] the fraction of samples whose
    positive has the largest logit.
  """
  k_pos = jax.lax.stop_gradient(k_pos)
  queue = jax.lax.stop_gradient(queue)
  logits = [jnp.sum(q * k_pos, axis=-1, keepdims=True)]
  if k_neg is not None:
    logits.append(jnp.sum(q * jax.lax.stop_gradient(k_neg), axis=-1, keepdims=True))
  logits.append(q @ queue.T)
  logits = jnp.concatenate(logits, axis=-1) / temperature
  weighted = logits
  if k_neg is not None and negative_weight != 1.0:
    weighted = logits.at[:, 1].add(jnp.log(negative_weight))
  loss = -jax.nn.log_softmax(weighted, axis=-1)[:, 0]
  acc = jnp.mean(jnp.argmax(logits, axis=-1) == 0)
  metrics = {'acc': acc}
  if k_neg is not None:
    # How often the motion-broken key outscores the positive: the hard part.
    metrics['neg_win'] = jnp.mean(logits[:, 1] > logits[:, 0])
  return jnp.mean(loss), metrics


def interpolation_loss(pred: jax.Array, target: jax.Array, dropped: jax.Array) -> jax.Array:
  """MSE on the dropped frames of present persons only.

  Args:
    pred, target: [B, M, T, V, C].
    dropped: [B, T], 1 where a frame was dropped and must be reconstructed.

  Absent persons (all-zero target) are not scored, so they cannot dilute the loss.
  """
  present = jnp.any(target != 0, axis=(2, 3, 4)).astype(pred.dtype)  # [B, M]
  per_frame = jnp.mean(jnp.square(pred - target), axis=(3, 4))  # [B, M, T]
  weight = present[:, :, None] * dropped[:, None, :].astype(pred.dtype)
  return jnp.sum(per_frame * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def enqueue(queue: jax.Array, ptr: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Writes keys [B, D] at rows ptr..ptr+B-1 of queue [K, D] (K % B == 0).

  Under a sharded jit `keys` is the global batch, so every device writes the
  same rows and the replicated queue stays identical everywhere.
  """
  b = keys.shape[0]
  queue = jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype), (ptr, 0))
  return queue, (ptr + b) % queue.shape[0]


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
