"""Downstream protocols on a pretrained (or random) encoder.

  linear    frozen encoder (no gradient, BN in inference mode, optax-masked),
            a linear classifier trained with SGD on pooled features
  knn       cosine kNN (k = 1 and k = 20, similarity-weighted) on frozen features,
            centred on the training mean (knn.centre)
  finetune  encoder + classifier trained end to end from the pretrained weights
  semi      finetune on class-balanced 1% / 10% labelled subsets (chosen by seed)
  scratch   the same encoder + classifier trained from random init

Every function returns a dict with top1/top5 (percent), n_train, n_test and its
protocol; the caller (skeljax.run) stores it in results.json.
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
from skeljax.logger import MetricsLog
from skeljax.models import heads
from skeljax.progress import Progress


class EvalError(RuntimeError):
  """An evaluation that cannot run as configured."""


# ---------------------------------------------------------------- encoder ---


def build_encoder(config):
  return models.build_encoder(
    config.model, skeleton.get_layout(config.data.layout), config.data.frames, config.data.stream
  )


def random_encoder_variables(config, seed_offset: int = 0):
  encoder = build_encoder(config)
  x, n = pretrain.sample_input(config)
  rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1000 + seed_offset)
  return jax.jit(functools.partial(encoder.init, train=False))(
    {'params': rng, 'dropout': rng}, x, n
  )


def resolve_init(config, workdir: str) -> str:
  """'random', or the folder of an exported encoder that `config.init_from` names."""
  src = config.init_from
  if src == 'random':
    return 'random'
  if src == '':
    path = os.path.join(workdir, 'encoder')
    if not ckpt_lib.encoder_exists(path):
      raise EvalError(
        f'no pretrained encoder in {path}: run the pretrain stage first, '
        'or set --config.init_from=random or a workdir / checkpoint path'
      )
    return path
  src = os.path.abspath(os.path.expanduser(src))
  for path in (os.path.join(src, 'encoder'), src):
    if ckpt_lib.encoder_exists(path):
      return path
  raise EvalError(
    f'init_from={config.init_from!r} holds no exported encoder '
    '(expected <workdir>/encoder from a pretrain stage)'
  )


def encoder_variables(config, init: str):
  """Encoder variables {'params', 'batch_stats'} for 'random' or an encoder folder."""
  if init == 'random':
    return random_encoder_variables(config)
  # The restore template only needs shapes: no init is compiled for it.
  abstract = jax.eval_shape(lambda: random_encoder_variables(config))
  try:
    restored, meta = ckpt_lib.load_encoder(init, abstract)
  except (ValueError, KeyError) as e:
    raise EvalError(
      f'the encoder in {init} does not fit model.{config.model.name}/'
      f'{config.model.size} on layout {config.data.layout}: {e}'
    ) from None
  if meta.get('layout') not in (None, config.data.layout):
    raise EvalError(
      f'encoder in {init} was trained on layout {meta["layout"]}, not {config.data.layout}'
    )
  # Encoders exported before data.stream existed saw joints. The variable trees of all
  # streams are alike (models.StreamInput), so only the recorded stream tells them apart.
  stream = meta.get('stream', 'joint')
  if stream != config.data.stream:
    raise EvalError(
      f'encoder in {init} was trained on the {stream} stream, not data.stream='
      f'{config.data.stream}; set --config.data.stream={stream}'
    )
  return restored


# --------------------------------------------------------------- features ---


def make_feature_fn(config, mesh):
  encoder = build_encoder(config)
  layout = skeleton.get_layout(config.data.layout)

  def features(variables, x, n):
    clips = augment.eval_clip(x, n, aug=config.augment, layout=layout, frames=config.data.frames)
    full = models.full_lengths(clips)
    pooled, _ = encoder.apply(variables, clips, full, train=False)
    return pooled

  return _jit_on_batch(features, mesh, mesh_lib.batch_sharded(mesh))


def _jit_on_batch(fn, mesh, out_sharding):
  """jit of fn(variables, x, n): variables replicated, the batch sharded over 'data'."""
  rep, batch = mesh_lib.replicated(mesh), mesh_lib.batch_sharded(mesh)
  return jax.jit(fn, in_shardings=(rep, batch, batch), out_shardings=out_sharding)


def extract(
  config, mesh, variables, split: data.Split, indices=None, fn=None, what: str = 'features'
):
  """Pooled features [N, D] and labels [N] of a split, in dataset order.

  fn: a make_feature_fn(config, mesh) to reuse, so several splits compile it once.
  `what` names the pass in its progress line (skeljax.progress).
  """
  fn = fn or make_feature_fn(config, mesh)
  variables = jax.device_put(variables, mesh_lib.replicated(mesh))
  feats, labels = [], []
  total = split.size if indices is None else len(indices)
  bar = Progress(what, total, 'sequences', enabled=jax.process_index() == 0)
  for batch, valid in data.eval_batches(split, config.eval_batch_size, indices):
    g = mesh_lib.to_global(mesh, {'x': batch['x'], 'n': batch['n']})
    f = mesh_lib.gather_rows(fn(variables, g['x'], g['n']))
    v = _gather_host(valid)
    lab = _gather_host(batch['label'])
    feats.append(f[v])
    labels.append(lab[v])
    bar.advance(int(v.sum()))
  bar.close()
  return np.concatenate(feats), np.concatenate(labels)


def _gather_host(x: np.ndarray) -> np.ndarray:
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


# ---------------------------------------------------------------- metrics ---


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict:
  """top1/top5 in percent from logits [N, K] and integer labels [N]."""
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  return {
    'top1': float(100.0 * jnp.mean(objectives.topk_correct(logits, labels, 1))),
    'top5': float(100.0 * jnp.mean(objectives.topk_correct(logits, labels, 5))),
  }


def confusion(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, pred), 1)
  return cm


def knn_scores(
  train_f, train_y, test_f, num_classes: int, k: int, temperature: float, centre: bool = True
):
  """Class scores [N_test, K] of similarity-weighted cosine kNN.

  train_f: [N_train, D], train_y: [N_train] ints, test_f: [N_test, D].
  Each of the k nearest training features votes for its class with weight
  exp(cos / temperature) (Wu et al. 2018); with k = 1 this is plain 1-NN.
  centre: subtract the training features' mean from both sets before the cosine.
  Post-ReLU features share a large positive mean; uncentred, every cosine is close to
  1 and that common offset, not the differences between samples, decides the angles.
  """
  train_f = jnp.asarray(train_f, jnp.float32)
  test_f = jnp.asarray(test_f, jnp.float32)
  if centre:
    mean = jnp.mean(train_f, axis=0, keepdims=True)
    train_f, test_f = train_f - mean, test_f - mean
  a = objectives.l2_normalize(train_f)
  b = objectives.l2_normalize(test_f)
  sim = b @ a.T
  k = min(k, a.shape[0])
  top_sim, top_idx = jax.lax.top_k(sim, k)
  weights = jnp.exp(top_sim / temperature)
  votes = jax.nn.one_hot(jnp.asarray(train_y)[top_idx], num_classes) * weights[..., None]
  return np.asarray(jnp.sum(votes, axis=1))


# A training dimension is dead when its std is below this fraction of the median std of
# the dimensions that vary at all (standardize).
DEAD_STD_FRACTION = 1e-3


def live_dimensions(train_f: np.ndarray, fraction: float = DEAD_STD_FRACTION) -> np.ndarray:
  """[D] bool: the dimensions of train_f [N, D] whose std is not dead (see standardize)."""
  std = np.asarray(train_f, np.float64).std(axis=0)
  varying = std[std > 0]
  if varying.size == 0:
    return np.zeros(std.shape, bool)
  return std >= fraction * np.median(varying)


def standardize(
  train_f: np.ndarray, test_f: np.ndarray, fraction: float = DEAD_STD_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
  """Both feature sets z-scored with the training features' per-dimension mean and std.

  train_f: [N_train, D], test_f: [N_test, D] -> the same shapes and dtype.
  A dimension whose training std is below `fraction` x the median std of the varying
  dimensions is dead: it is set to 0 in both sets, so it neither carries information
  (it had none on the training set) nor scales a test value by 1 / (tiny std). A random
  init's dead ReLU units are exactly constant on the training set yet may fire on a
  test clip; an absolute floor (1e-6) turned such a unit into a test feature of 1e5-1e6.
  The threshold is relative because the features' scale depends on the encoder (random
  init or pretrained, BN recalibrated or not), and taken from the median rather than
  the mean so that a few high-variance units do not declare the quiet ones dead. A
  dimension that survives is scaled by at most 1000 / (that median).
  """
  dtype = np.result_type(train_f.dtype, np.float32)
  tr, te = np.asarray(train_f, np.float64), np.asarray(test_f, np.float64)
  live = live_dimensions(tr, fraction)
  mean = tr.mean(axis=0, keepdims=True)
  scale = np.where(live, 1.0 / np.where(live, tr.std(axis=0), 1.0), 0.0)[None]
  return ((tr - mean) * scale).astype(dtype), ((te - mean) * scale).astype(dtype)


def per_class(pred: np.ndarray, labels: np.ndarray, names, reversed_pairs=()) -> dict:
  """Top-1 per class, and over the time-reversed pairs' classes apart from the rest.

  `reversed_pairs` holds 'name a|name b' strings (config.data.reversed_pairs); names
  that the label set does not have raise EvalError, so a typo is not a silent 0.
  """
  pred, labels = np.asarray(pred), np.asarray(labels)
  out = {'per_class_top1': {}}
  for c, name in enumerate(names):
    sel = labels == c
    if sel.any():
      out['per_class_top1'][name] = float(100.0 * np.mean(pred[sel] == c))
  if reversed_pairs:
    index = {n: i for i, n in enumerate(names)}
    paired = set()
    for pair in reversed_pairs:
      for name in pair.split('|'):
        if name not in index:
          raise EvalError(
            f'data.reversed_pairs names {name!r}, which is not a label; labels: {list(names)}'
          )
        paired.add(index[name])
    sel = np.isin(labels, sorted(paired))
    if sel.any():
      out['reversed_pairs_top1'] = float(100.0 * np.mean(pred[sel] == labels[sel]))
    if (~sel).any():
      out['other_classes_top1'] = float(100.0 * np.mean(pred[~sel] == labels[~sel]))
  return out


def make_recalibrate_fn(config, mesh):
  """Jitted (variables, x, n) -> this batch's BN statistics of clean clips (recalibrate_bn)."""
  encoder = build_encoder(config)
  layout = skeleton.get_layout(config.data.layout)

  def batch_stats(variables, x, n):
    clips = augment.eval_clip(x, n, aug=config.augment, layout=layout, frames=config.data.frames)
    full = models.full_lengths(clips)

    def upd(start):
      _, u = encoder.apply(
        {'params': variables['params'], 'batch_stats': start},
        clips,
        full,
        train=True,
        mutable=['batch_stats'],
      )
      return u['batch_stats']

    from_zero = upd(jax.tree.map(jnp.zeros_like, variables['batch_stats']))
    from_one = upd(jax.tree.map(jnp.ones_like, variables['batch_stats']))
    return jax.tree.map(lambda a, b: a / (1.0 - (b - a)), from_zero, from_one)

  return _jit_on_batch(batch_stats, mesh, mesh_lib.replicated(mesh))


def recalibrate_bn(config, mesh, variables, split: data.Split, fn=None):
  """Encoder variables whose BN statistics are re-estimated on clean clips of `split`.

  Pretraining gathered the running statistics on augmented views in ghost batches; the
  frozen stages feed `eval_clip` inputs. One pass over the split (shuffled full batches,
  train-mode BN) replaces them by the mean of the per-batch statistics ("precise BN").
  Each batch's statistics are read off the module's own update rule
  new = m * old + (1 - m) * batch, applied to zeros and to ones.
  fn: a make_recalibrate_fn(config, mesh) to reuse (the kNN monitor calls this often).
  """
  if not variables.get('batch_stats'):
    return variables
  fn = fn or make_recalibrate_fn(config, mesh)
  rep = jax.device_put(
    {'params': variables['params'], 'batch_stats': variables['batch_stats']},
    mesh_lib.replicated(mesh),
  )
  bs = min(config.eval_batch_size, split.size - split.size % jax.device_count())
  steps = max(split.size // bs, 1)
  total = None
  bar = Progress('BN recalibration', steps, 'batches', enabled=jax.process_index() == 0)
  for batch in data.train_batches(
    split,
    batch_size=bs,
    seed=config.seed,
    start_step=0,
    num_steps=steps,
    num_threads=config.data.num_threads,
  ):
    g = mesh_lib.to_global(mesh, {'x': batch['x'], 'n': batch['n']})
    stats = fn(rep, g['x'], g['n'])
    total = stats if total is None else jax.tree.map(jnp.add, total, stats)
    bar.advance()
  bar.close()
  mean = jax.tree.map(lambda t: np.asarray(t) / steps, total)
  return {**variables, 'batch_stats': mean}


# ------------------------------------------------------------ linear probe ---


# fit_linear runs its epochs in about this many jitted chunks, so that it can report.
LINEAR_CHUNKS = 20


def fit_linear(train_f, train_y, num_classes: int, sec, seed: int):
  """Trains a linear classifier on fixed features with SGD; returns its params.

  The epochs run as a scan, in chunks of ceil(epochs / LINEAR_CHUNKS) epochs with a
  progress line between them (skeljax.progress); a chunk scans the same epoch function
  over its epoch numbers, so the result equals one scan over all epochs bit for bit.
  """
  clf = heads.LinearClassifier(num_classes)
  x = jnp.asarray(train_f, jnp.float32)
  y = jnp.asarray(train_y, jnp.int32)
  n = x.shape[0]
  bs = min(sec.batch_size, n)
  steps_per_epoch = max(n // bs, 1)
  total = steps_per_epoch * sec.epochs
  tx, _ = optim.make_optimizer(sec, steps_per_epoch, total)
  rng = jax.random.PRNGKey(seed)
  params = clf.init(jax.random.fold_in(rng, 1), x[:1])['params']
  opt_state = tx.init(params)

  def loss_fn(p, xb, yb):
    return objectives.cross_entropy(clf.apply({'params': p}, xb), yb)

  def epoch(carry, e):
    p, o = carry
    perm = jax.random.permutation(jax.random.fold_in(rng, e), n)[: steps_per_epoch * bs]

    def step(carry, idx):
      p, o = carry
      g = jax.grad(loss_fn)(p, x[idx], y[idx])
      u, o = tx.update(g, o, p)
      return (optax.apply_updates(p, u), o), None

    (p, o), _ = jax.lax.scan(step, (p, o), perm.reshape(steps_per_epoch, bs))
    return (p, o), None

  @functools.partial(jax.jit, static_argnums=2)
  def epochs(carry, first, count: int):
    return jax.lax.scan(epoch, carry, first + jnp.arange(count))[0]

  carry, chunk = (params, opt_state), -(-sec.epochs // LINEAR_CHUNKS)
  bar = Progress('linear probe', sec.epochs, 'epochs', enabled=jax.process_index() == 0)
  for first in range(0, sec.epochs, chunk):
    count = min(chunk, sec.epochs - first)
    carry = jax.block_until_ready(epochs(carry, jnp.int32(first), count))
    bar.update(first + count)
  bar.close()
  return clf, carry[0]


# ----------------------------------------------- supervised (encoder + head) ---


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
