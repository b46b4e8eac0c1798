"""The ensemble stage's parts: its members, their configs and the late fusion.

SkeletonCLR, AimCLR and CMD pretrain one encoder per input stream (joint, motion,
bone) and report the fusion of their linear probes ("3s"). Here a member is a
finished pretraining run: its exported encoder (<run>/encoder) and the config it was
trained with (<run>/config.json). This run's own encoder is the first member when its
stages hold 'pretrain' (the ensemble stage then runs after it); `ensemble.runs` adds
the others. Each member is probed on *this* run's split with this run's `linear`
protocol, so only what defines its encoder comes from its own config: `data.stream`,
`data.frames`, `model` and `augment` (whose centring the evaluation clip applies).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import numpy as np

from skeljax import checkpoint as ckpt_lib
from skeljax import config as config_lib

# What a member's encoder was built and fed with; the rest is this run's protocol.
_MEMBER_DATA = ('stream', 'frames')
_MEMBER_SECTIONS = ('model', 'augment')


@dataclasses.dataclass(frozen=True)
class Member:
  run: str  # absolute workdir
  encoder: str  # <run>/encoder
  config: object  # this run's config with the member's stream, frames, model and augment
  own: bool  # this run's own encoder (its config is this run's)


def _error(msg: str) -> config_lib.ConfigError:
  return config_lib.ConfigError(f'ensemble.runs: {msg}')


def _runs(config, workdir: str) -> list[tuple[str, str]]:
  """(as given, absolute path) of each ensemble.runs entry; ConfigError on duplicates."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  seen = {workdir} if 'pretrain' in config.stages else set()
  out = []
  for run in config.ensemble.runs:
    path = os.path.abspath(os.path.expanduser(run))
    if path in seen:
      raise _error(f"{run} is listed twice (this run's own encoder is already a member)")
    seen.add(path)
    out.append((run, path))
  return out


def _saved_config(run: str, path: str) -> dict:
  file = os.path.join(path, 'config.json')
  if not os.path.isdir(path):
    raise _error(f'no run folder {run}')
  if not os.path.isfile(file):
    raise _error(f'{run} has no config.json, so it is not a skeljax workdir')
  try:
    with open(file) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise _error(f'{file} cannot be read: {e}') from None


def check(config, workdir: str) -> None:
  """ConfigError (one line) for an ensemble.runs entry that cannot be a member.

  A member must be a folder with config.json, trained on this run's layout, holding an
  exported encoder. `train_and_evaluate` calls this before any stage, so a wrong name
  never costs a pretraining.
  """
  if 'ensemble' not in config.stages:
    return
  for run, path in _runs(config, workdir):
    saved = _saved_config(run, path)
    layout = saved.get('data', {}).get('layout')
    if layout != config.data.layout:
      raise _error(f'{run} was trained on layout {layout}, not {config.data.layout}')
    if not ckpt_lib.encoder_exists(os.path.join(path, 'encoder')):
      raise _error(f'{run} holds no pretrained encoder ({run}/encoder); run its pretrain first')
    _member_config(config, run, saved)


def trained_as(config, workdir: str) -> list[dict]:
  """What each ensemble.runs member's encoder was trained as: its pretrain stage's protocol
  and final loss from <run>/results.json (empty when it has none). In the ensemble stage's
  protocol, so its entry goes stale when a member is pretrained again, even with only
  another seed."""
  out = []
  for _, path in _runs(config, workdir):
    try:
      with open(os.path.join(path, 'results.json')) as f:
        saved = json.load(f)
    except (OSError, json.JSONDecodeError):
      saved = {}
    out.append(
      {
        'run': path,
        'protocol': saved.get('_protocols', {}).get('pretrain'),
        'final_loss': saved.get('stages', {}).get('pretrain', {}).get('final_loss'),
      }
    )
  return out


def member_config(config, saved: dict):
  """`config` with data.stream, data.frames, model and augment of a member's saved config.

  A field the saved config lacks (it predates the field) takes base_config()'s default.
  """
  base = config_lib.base_config()
  out = copy.deepcopy(config)
  out.data.stream = saved.get('data', {}).get('stream', base.data.stream)
  out.data.frames = saved.get('data', {}).get('frames', config.data.frames)
  for name in _MEMBER_SECTIONS:
    for key in base[name]:
      out[name][key] = saved.get(name, {}).get(key, base[name][key])
  config_lib.validate(out)
  return out


def _member_config(config, run: str, saved: dict):
  try:
    return member_config(config, saved)
  except (TypeError, ValueError) as e:  # ConfigError is a ValueError
    msg = ' '.join(str(e).split())
    raise _error(f'{run}/config.json does not fit this config: {msg}') from None


def members(config, workdir: str) -> list[Member]:
  """The ensemble's members in order: this run's encoder (with pretrain), then ensemble.runs."""
  check(config, workdir)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  out = []
  if 'pretrain' in config.stages:
    out.append(Member(workdir, os.path.join(workdir, 'encoder'), config, own=True))
  for run, path in _runs(config, workdir):
    cfg = _member_config(config, run, _saved_config(run, path))
    out.append(Member(path, os.path.join(path, 'encoder'), cfg, own=False))
  return out


def weights(config, count: int) -> np.ndarray:
  """[count] fusion weights summing to 1: ensemble.weights normalised, or equal."""
  w = np.asarray(config.ensemble.weights or [1.0] * count, np.float64)
  return w / w.sum()


def fuse(probs: np.ndarray, w: np.ndarray) -> np.ndarray:
  """Weighted sum [N, K] of member probabilities probs [members, N, K] with weights w [members]."""
  return np.tensordot(np.asarray(w, np.float64), np.asarray(probs, np.float64), axes=1)
