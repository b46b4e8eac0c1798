"""Orbax checkpoints: resumable training state per stage, and the exported encoder.

Orbax writes each step into a temporary folder and renames it when complete,
so a run killed mid-save resumes from the last *finished* checkpoint.
"""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp

# Sections and fields that change a stage's trajectory; a resume must match them.
_IGNORED = {
  'log_every',
  'checkpoint_every',
  'keep_checkpoints',
  'num_threads',
  'data_dir',
  'manual_dir',
}


# Fields added after runs existed, with the value those runs had: left out of the
# fingerprint at that value, so older checkpoints and finished stages still match.
_ADDED = {
  ('data', 'stream'): 'joint',
  ('mcc', 'batch_negatives'): False,
  ('mcc', 'queue_negatives'): True,
  ('augment', 'speed_fit'): 'clip',
  ('augment', 'independent_speeds'): False,
  ('augment', 'resample_noise_std'): 0.0,
  ('mcc', 'speed_form'): 'positive',
  ('mcc', 'speed_head'): 'off',
  ('mcc', 'speed_weight'): 0.1,
  ('mcc', 'speed_margin'): 0.2,
  ('mcc', 'speed_classes'): 4,
  ('mcc', 'negative_start'): 0.0,
  ('augment', 'span_frames'): (4, 8),
  ('augment', 'span_count'): 2,
  ('augment', 'span_joint_prob'): 1.0,
  ('mcc', 'decoder_tap'): 'deep',
  ('mcc', 'interp_target'): 'position',
}

# Fields only the speed clip reads: the contrastive baseline has none, so they never
# change its run (a baseline written before they existed resumes under any value).
_SPEED_ONLY = {('augment', 'speed_fit'), ('augment', 'independent_speeds')}


# MCC switches the baseline never reads, with the value its runs had when issue #29 changed
# their default: a contrastive run's fingerprint holds them at that value whatever the
# config says, so its checkpoints resume and its finished stages match under either default.
_BASELINE_PINNED = {('mcc', 'speed_positive'): True}


class CheckpointMismatch(RuntimeError):
  """Resuming with a config that would not continue the same run."""


def fingerprint(config, sections) -> dict:
  """A JSON-able dict of the config fields that define a stage's run."""
  out = {'seed': config.seed, 'objective': config.objective}
  baseline = config.objective == 'contrastive'
  unread = _SPEED_ONLY if baseline else set()
  pinned = _BASELINE_PINNED if baseline else {}
  for name in sections:
    out[name] = {
      k: pinned.get((name, k), v)
      for k, v in config[name].to_dict().items()
      if k not in _IGNORED
      and not ((name, k) in _ADDED and _ADDED[name, k] == v)
      and (name, k) not in unread
    }
  return json.loads(json.dumps(out, default=list))


def _diff(a, b, prefix=''):
  keys = sorted(set(a) | set(b))
  for k in keys:
    va, vb = a.get(k, '<missing>'), b.get(k, '<missing>')
    if isinstance(va, dict) and isinstance(vb, dict):
      yield from _diff(va, vb, f'{prefix}{k}.')
    elif va != vb:
      yield f'{prefix}{k}: {va} -> {vb}'


def abstract_with_sharding(abstract, sharding):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)


class StageCheckpoints:
  """Periodic async checkpoints of one stage's state, plus its config fingerprint."""

  def __init__(self, directory: str, keep: int, fingerprint_: dict):
    self.directory = os.path.abspath(directory)
    self.fingerprint = fingerprint_
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=True
      ),
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, abstract_state):
    """Returns (state, step) from the latest checkpoint, or (None, 0) if none."""
    step = self.manager.latest_step()
    if step is None:
      return None, 0
    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    diffs = list(_diff(meta['fingerprint'], self.fingerprint))
    if diffs:
      raise CheckpointMismatch(
        f'{self.directory} holds step {step} of a run with another config '
        f'({"; ".join(diffs[:3])}); use a new --workdir or the original config'
      )
    restored = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
    )
    return restored['state'], step

  def save(self, step: int, state, force: bool = False) -> None:
    self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        meta=ocp.args.JsonSave({'step': step, 'fingerprint': self.fingerprint}),
      ),
      force=force,
    )

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


# The exported encoder's layout (the metadata key 'format'). 1: variables + meta with layout,
# model and frames (no 'format' key). 2: + persons, max_frames, augment, and the BN statistics
# re-estimated on clean training clips as a second item, 'recalibrated', when 'recalibrated'.
ENCODER_FORMAT = 2


def save_encoder(directory: str, variables, meta: dict, recalibrated=None) -> None:
  """Exports encoder variables ({'params', 'batch_stats'}) with a JSON description.

  `recalibrated`: the frozen stages' BN statistics ({'batch_stats': ...},
  frozen.recalibrate_bn), saved as an item of its own so the pretrained ones stay.
  """
  directory = os.path.abspath(directory)
  meta = {'format': ENCODER_FORMAT, **meta, 'recalibrated': recalibrated is not None}
  items = {'variables': ocp.args.StandardSave(variables), 'meta': ocp.args.JsonSave(meta)}
  if recalibrated is not None:
    items['recalibrated'] = ocp.args.StandardSave(recalibrated)
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True)) as m:
    m.save(0, args=ocp.args.Composite(**items), force=True)
    m.wait_until_finished()


def encoder_exists(directory: str) -> bool:
  return os.path.isdir(directory) and ocp.CheckpointManager(directory).latest_step() is not None


def find_encoder(path: str) -> str | None:
  """The exported encoder of a workdir (<path>/encoder) or of an encoder folder (path
  itself), absolute; None when neither holds one."""
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  for candidate in (os.path.join(path, 'encoder'), path):
    if encoder_exists(candidate):
      return candidate
  return None


def _restore(directory: str, **items):
  directory = os.path.abspath(directory)
  with ocp.CheckpointManager(directory) as m:
    step = m.latest_step()
    if step is None:
      raise FileNotFoundError(f'no exported encoder in {directory}')
    return m.restore(step, args=ocp.args.Composite(**items))


def load_encoder(directory: str, abstract_variables):
  """Returns (variables, meta) of an exported encoder."""
  out = _restore(
    directory,
    variables=ocp.args.StandardRestore(abstract_variables),
    meta=ocp.args.JsonRestore(),
  )
  return out['variables'], out['meta']


def encoder_meta(directory: str) -> dict:
  """The JSON description of an exported encoder."""
  return _restore(directory, meta=ocp.args.JsonRestore())['meta']


def load_recalibrated(directory: str, abstract):
  """The 'recalibrated' item ({'batch_stats'}) of an encoder whose meta says it has one."""
  return _restore(directory, recalibrated=ocp.args.StandardRestore(abstract))['recalibrated']
