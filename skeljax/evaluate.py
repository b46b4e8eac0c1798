"""What every downstream protocol shares: the encoder to evaluate, and the metrics.

  build_encoder / random_encoder_variables   the encoder the config names, random init
  resolve_init / encoder_variables           the pretrained (or random) weights to use
  accuracy / confusion / per_class           top1/top5, confusion matrix, per-class top1

The protocols themselves live beside it: skeljax.frozen (linear probe and kNN on frozen
features) and skeljax.supervised (encoder + classifier trained end to end: finetune,
semi, scratch, and the augmented linear probe). skeljax.run wires them into stages and
stores their results in results.json.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from skeljax import checkpoint as ckpt_lib
from skeljax import models, objectives, pretrain, skeleton


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
  found = ckpt_lib.find_encoder(src)
  if found:
    return found
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
