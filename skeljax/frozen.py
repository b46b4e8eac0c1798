"""Frozen-feature protocols: the encoder is fixed and only its pooled features are used.

  linear    a linear classifier trained with SGD on the frozen encoder's pooled
            features of clean clips (BN in inference mode), z-scored with the training
            features' statistics (standardize, with linear.standardize)
  knn       cosine kNN (k = 1 and k = 20, similarity-weighted) on frozen features,
            centred on the training mean (knn.centre)

With linear.recalibrate_bn both first re-estimate the encoder's BN statistics on clean
training clips (recalibrate_bn). The augmented linear probe (linear.augment) trains
through skeljax.supervised instead.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from skeljax import augment, data, models, objectives, optim, skeleton
from skeljax import mesh as mesh_lib
from skeljax.evaluate import build_encoder
from skeljax.models import heads
from skeljax.progress import Progress

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


# -------------------------------------------------------------------- kNN ---


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


# ---------------------------------------------------------- feature scale ---


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


# ------------------------------------------------------- BN recalibration ---


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
