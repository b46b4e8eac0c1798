"""Optimizers and learning-rate schedules built from a training section of the config."""

from __future__ import annotations

import jax
import optax


def schedule(sec, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  """Linear warm-up, then cosine / step (x0.1 at sec.step_epochs) / constant."""
  warm = int(round(sec.warmup_epochs * steps_per_epoch))
  rest = max(total_steps - warm, 1)
  if sec.schedule == 'cosine':
    main = optax.cosine_decay_schedule(sec.lr, rest)
  elif sec.schedule == 'step':
    bounds = {int(e * steps_per_epoch) - warm: 0.1 for e in sec.step_epochs}
    main = optax.piecewise_constant_schedule(sec.lr, {k: v for k, v in bounds.items() if k > 0})
  else:
    main = optax.constant_schedule(sec.lr)
  if warm == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, sec.lr, warm), main], [warm])


def decay_mask(params):
  """Weight decay applies to kernels only: never to biases, norms or embeddings."""

  def keep(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    return name == 'kernel' and leaf.ndim > 1

  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(sec, steps_per_epoch: int, total_steps: int):
  """optax transform for a config training section; returns (tx, schedule)."""
  lr = schedule(sec, steps_per_epoch, total_steps)
  parts = []
  if sec.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(sec.grad_clip))
  if sec.optimizer == 'sgd':
    # The peers' torch SGD: L2 added to the gradient before momentum, no nesterov.
    if sec.weight_decay > 0:
      parts.append(optax.add_decayed_weights(sec.weight_decay, mask=decay_mask))
    parts.append(optax.sgd(lr, momentum=sec.momentum, nesterov=False))
  else:
    parts.append(optax.adamw(lr, weight_decay=sec.weight_decay, mask=decay_mask))
  return optax.chain(*parts), lr
