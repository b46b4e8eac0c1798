"""Supervised training of encoder + linear classifier on labelled clips.

finetune (from the pretrained encoder), semi (finetune on a class-balanced labelled
subset, balanced_subset), scratch (from random init) and the augmented linear probe
(frozen encoder, augmented views) all train through train_supervised and are scored by
classify.
"""

from __future__ import annotations

import functools
import json
import os
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from skeljax import augment, data, loop, models, objectives, optim, pretrain, skeleton
from skeljax import checkpoint as ckpt_lib
from skeljax import mesh as mesh_lib
from skeljax.evaluate import EvalError, build_encoder
from skeljax.frozen import extract
from skeljax.logger import MetricsLog
from skeljax.models import heads


class SupervisedState(train_state.TrainState):
  """flax's TrainState (params {'encoder', 'classifier'}) plus BN statistics and a PRNG key."""

  batch_stats: Any
  rng: jax.Array  # step s draws from fold_in(rng, s)


def _trainable_labels(params, frozen_encoder: bool):
  def label(name):
    return 'frozen' if (frozen_encoder and name == 'encoder') else 'train'

  return {k: jax.tree.map(lambda _, tag=label(k): tag, v) for k, v in params.items()}


def make_supervised_tx(sec, steps_per_epoch, total, params, frozen_encoder: bool):
  tx, lr = optim.make_optimizer(sec, steps_per_epoch, total)
  labels = _trainable_labels(params, frozen_encoder)
  return optax.multi_transform({'train': tx, 'frozen': optax.set_to_zero()}, labels), lr


def supervised_step(state, batch, *, encoder, classifier, config, frozen_encoder, augmented):
  """One step of encoder + classifier on a labelled batch; the optimizer is the state's `tx`."""
  layout = skeleton.get_layout(config.data.layout)
  rng = jax.random.fold_in(state.rng, state.step)
  rng_view, rng_drop = jax.random.split(rng)
  if augmented:
    clips = augment.make_views(
      rng_view,
      batch['x'],
      batch['n'],
      aug=config.augment,
      layout=layout,
      frames=config.data.frames,
      speed_positive=False,
      broken_negative=False,
      interpolation=False,
    )['anchor']
  else:
    clips = augment.eval_clip(
      batch['x'], batch['n'], aug=config.augment, layout=layout, frames=config.data.frames
    )
  full = models.full_lengths(clips)

  def loss_fn(params):
    variables = {'params': params['encoder'], 'batch_stats': state.batch_stats}
    if frozen_encoder:
      # Inference-mode BN and no gradient: the probe cannot move the encoder.
      pooled, _ = encoder.apply(variables, clips, full, train=False)
      pooled = jax.lax.stop_gradient(pooled)
      bs = state.batch_stats
    else:
      (pooled, _), upd = encoder.apply(
        variables, clips, full, train=True, mutable=['batch_stats'], rngs={'dropout': rng_drop}
      )
      bs = upd['batch_stats']
    logits = classifier.apply({'params': params['classifier']}, pooled)
    loss = objectives.cross_entropy(logits, batch['label'])
    acc = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return loss, (bs, {'loss': loss, 'acc': acc})

  grads, (bs, metrics) = jax.grad(loss_fn, has_aux=True)(state.params)
  return state.apply_gradients(grads=grads, batch_stats=bs), metrics


def train_supervised(
  config,
  workdir,
  mesh,
  stage: str,
  sec,
  variables,
  train: data.Split,
  *,
  frozen_encoder: bool,
  augmented: bool,
  indices=None,
):
  """Trains encoder + linear classifier; returns final encoder variables and classifier."""
  encoder = build_encoder(config)
  classifier = heads.LinearClassifier(train.num_classes)
  n = train.size if indices is None else len(indices)
  # A small labelled subset (semi 1%) may hold fewer samples than a batch.
  batch_size = min(sec.batch_size, n - n % jax.device_count())
  if batch_size <= 0:
    raise EvalError(
      f'{stage}: {n} training samples cannot fill one batch on {jax.device_count()} devices'
    )
  steps_per_epoch = n // batch_size
  total = steps_per_epoch * sec.epochs
  pooled_dim = jax.eval_shape(
    lambda v, x, m: encoder.apply(v, x, m, train=False)[0],
    variables,
    *pretrain.sample_input(config),
  )
  rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), zlib.crc32(stage.encode()) % (2**31))
  params = {
    'encoder': variables['params'],
    'classifier': classifier.init(rng, jnp.zeros(pooled_dim.shape))['params'],
  }
  tx, lr = make_supervised_tx(sec, steps_per_epoch, total, params, frozen_encoder)
  rep = mesh_lib.replicated(mesh)
  state = jax.jit(
    lambda p, bs: SupervisedState(
      step=jnp.zeros((), jnp.int32),
      apply_fn=encoder.apply,
      params=p,
      tx=tx,
      opt_state=tx.init(p),
      batch_stats=bs,
      rng=rng,
    ),
    out_shardings=rep,
  )(params, variables.get('batch_stats', {}))
  step_fn = jax.jit(
    functools.partial(
      supervised_step,
      encoder=encoder,
      classifier=classifier,
      config=config,
      frozen_encoder=frozen_encoder,
      augmented=augmented,
    ),
    in_shardings=(rep, mesh_lib.batch_sharded(mesh)),
    out_shardings=(rep, rep),
    donate_argnums=0,
  )
  fp = ckpt_lib.fingerprint(config, ('data', 'model', 'augment', stage.split('_')[0]))
  fp['stage'] = stage
  ckpt = ckpt_lib.StageCheckpoints(
    os.path.join(workdir, 'checkpoints', stage), keep=2, fingerprint_=fp
  )
  log = MetricsLog(workdir, stage, total, batch_size)
  state = loop.run(
    stage=stage,
    state=state,
    step_fn=step_fn,
    batches=lambda start: data.train_batches(
      train,
      batch_size=batch_size,
      seed=config.seed,
      start_step=start,
      num_steps=total,
      indices=indices,
      num_threads=config.data.num_threads,
    ),
    mesh=mesh,
    ckpt=ckpt,
    log=log,
    total_steps=total,
    log_every=sec.log_every,
    checkpoint_every=max(total // 4, 1),
    lr_fn=lr,
  )
  enc_vars = {'params': state.params['encoder'], 'batch_stats': state.batch_stats}
  return enc_vars, classifier, state.params['classifier'], batch_size


def classify(config, mesh, enc_vars, classifier, clf_params, split: data.Split):
  """Logits [N, K] and labels of a split through encoder + classifier (eval mode)."""
  feats, labels = extract(config, mesh, enc_vars, split)
  logits = classifier.apply({'params': clf_params}, jnp.asarray(feats))
  return np.asarray(logits), labels, feats


def balanced_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Class-balanced indices: ceil(fraction * class count) per class, chosen by seed."""
  key = jax.random.PRNGKey(seed)
  chosen = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    take = max(1, int(np.ceil(fraction * len(idx))))
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, int(c)), len(idx)))
    chosen.append(idx[perm[:take]])
  return np.sort(np.concatenate(chosen))


def save_subset(workdir: str, name: str, indices: np.ndarray) -> str:
  path = os.path.join(workdir, f'{name}_indices.json')
  if jax.process_index() == 0:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump([int(i) for i in indices], f)
    os.replace(tmp, path)
  return path
