"""A pretrained encoder to call from your own code: `skeljax.load_encoder(path)`.

    import skeljax
    enc = skeljax.load_encoder('runs/ntu60')  # a workdir, or its encoder/ folder
    feats = enc(x, n)                          # x [B, M, T, V, C], n [B] -> [B, D] numpy

`enc(x, n)` gives the features the frozen stages (linear, knn) compute for the same
sequences: each clip is first fitted to the training pipeline's shape as data.Preprocess
does (persons cut or zero-padded to data.persons, sequences longer than data.max_frames
resampled down to it), then `apply` resamples its n valid frames to T = data.frames and
normalises it (augment.eval_clip: centring, view alignment as configured) before the
encoder runs in inference mode. Sequences of any length go in; `stack` pads a list of
them, as saved on disk ([T, V, C] or [T, M, V, C]), into (x, n), and `nearest` finds a
clip's nearest neighbours among other clips' features (the knn stage's centred cosine).

BatchNorm statistics: with `linear.recalibrate_bn` (the default) the frozen stages
re-estimate them on clean training clips (frozen.recalibrate_bn); the pretrain stage
exports those next to the pretraining ones, and `load_encoder` uses them, so its
features equal the knn stage's. `batch_stats='pretraining'` picks the running statistics
of pretraining instead.

`enc.apply(variables, x, n) -> [B, D]` is the pure function behind it (eval_clip and the
encoder, no host work) for users who jit, vmap or fine-tune it; `enc.clips(x, n)` is the
preprocessing alone and `enc.module` the Flax module, e.g. for a train-mode apply.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from skeljax import augment, data, models, objectives, skeleton
from skeljax import checkpoint as ckpt_lib
from skeljax.progress import Progress

BATCH_STATS = ('auto', 'recalibrated', 'pretraining')


class EncoderError(ValueError):
  """A path without a usable encoder, or clips that do not fit it; the message is one line."""


@dataclasses.dataclass(frozen=True, eq=False)
class Encoder:
  """An exported encoder: its config, joint layout and variables, callable on clips.

  Attributes:
    path: the encoder/ folder it was loaded from.
    model: the `config.model` section it was built with.
    layout: the joint layout of its input (V joints, C channels).
    frames: T, the clip length it sees (data.frames).
    persons: M, the persons per clip of its training pipeline (data.persons).
    max_frames: the training pipeline's pad length (data.max_frames).
    aug: the evaluation preprocessing (config.augment; eval_clip reads centre,
      view_align and level_spine).
    module: the Flax encoder module.
    variables: {'params', 'batch_stats'} (no 'batch_stats' for encoders without BN).
    batch_stats: which BN statistics `variables` holds: 'recalibrated', 'pretraining'
      or 'none'.
    meta: the exported metadata (dataset, objective, steps, ...).
  """

  path: str
  model: ml_collections.ConfigDict
  layout: skeleton.Layout
  frames: int
  persons: int
  max_frames: int
  aug: augment.AugParams
  module: nn.Module
  variables: dict
  batch_stats: str
  meta: dict

  @property
  def feature_dim(self) -> int:
    """D, the size of a clip's feature."""
    return int(self.module.feature_dim)

  def clips(self, x, n):
    """The evaluation clips [B, M, T, V, C] of x [B, M, T', V, C], n [B] (augment.eval_clip)."""
    return augment.eval_clip(x, n, aug=self.aug, layout=self.layout, frames=self.frames)

  def apply(self, variables, x, n):
    """Pure features [B, D] of x [B, M, T', V, C] with n [B] valid frames; jit/vmap-safe.

    No host-side fitting: x's persons are all averaged, and frames are resampled once.
    """
    clips = self.clips(x, n)
    pooled, _ = self.module.apply(variables, clips, models.full_lengths(clips), train=False)
    return pooled

  @functools.cached_property
  def _jitted(self):
    return jax.jit(self.apply)

  def check(self, x) -> None:
    """EncoderError naming the expected and the given shape unless x is [B, M, T, V, C]."""
    v, c = self.layout.num_joints, self.layout.num_channels
    shape = tuple(np.shape(x))
    if len(shape) == 5 and shape[3:] == (v, c) and 0 not in shape[:3]:
      return
    fits = [
      name
      for name, lay in skeleton.LAYOUTS.items()
      if (lay.num_joints, lay.num_channels) == shape[-2:]
    ]
    hint = ''
    if len(shape) == 4 and shape[-2:] == (v, c):
      hint = '; one clip? add the batch axis: x[None]'
    elif len(shape) >= 2 and shape[-2:] != (v, c):
      other = f'of layout {fits[0]}' if fits else 'of no known layout'
      hint = f'; {shape[-2]} joints x {shape[-1]} channels are those {other}'
    raise EncoderError(
      f'clips must be [B, M, T, V, C] = [B, M, T, {v}, {c}] for this encoder (layout '
      f'{self.layout.name}), got shape {shape}{hint}'
    )

  def fit(self, x, n=None) -> tuple[np.ndarray, np.ndarray]:
    """x [B, M, T, V, C], n [B] as the training pipeline shapes them (data.Preprocess).

    Returns x [B, persons, max_frames, V, C] float32 and n [B] int32.
    """
    self.check(x)
    x = np.asarray(x, np.float32)
    b, _, t = x.shape[:3]
    if n is None:
      n = np.full((b,), t, np.int32)
    n = np.asarray(n)
    if n.shape != (b,) or not np.issubdtype(n.dtype, np.integer):
      raise EncoderError(
        f'n must be integer valid-frame counts [B] = [{b}], got {n.dtype} {n.shape}'
      )
    if n.min() < 1 or n.max() > t:
      i = int(np.argmax((n < 1) | (n > t)))
      raise EncoderError(f'n[{i}] = {int(n[i])} is not a valid-frame count 1..{t} (T of x)')
    pre = data.Preprocess(
      persons=self.persons,
      max_frames=self.max_frames,
      num_joints=self.layout.num_joints,
      num_channels=self.layout.num_channels,
    )
    out = [pre({'skeleton': x[i, :, : n[i]].transpose(1, 0, 2, 3), 'label': 0}) for i in range(b)]
    return np.stack([o['x'] for o in out]), np.stack([o['n'] for o in out])

  def __call__(self, x, n=None, batch_size: int = 64) -> np.ndarray:
    """Features [B, D] (numpy float32) of clips x [B, M, T, V, C] with n [B] valid frames.

    n None: every frame of x is valid. Runs in batches of min(batch_size, B), the last
    one zero-padded, with a progress line when it takes long (skeljax.progress).
    """
    x, n = self.fit(x, n)
    b = x.shape[0]
    bs = min(batch_size, b)
    feats = []
    bar = Progress('embedding', b, 'sequences')
    for first in range(0, b, bs):
      xb, nb = x[first : first + bs], n[first : first + bs]
      pad = bs - len(xb)
      if pad:
        xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
        nb = np.concatenate([nb, np.ones(pad, nb.dtype)])
      feats.append(np.asarray(self._jitted(self.variables, xb, nb))[: bs - pad])
      bar.update(first + bs - pad)
    bar.close()
    return np.concatenate(feats)

  embed = __call__


def stack(sequences, persons: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Pads sequences [T_i, V, C] or [T_i, M_i, V, C] (as saved on disk) into clips.

  Returns x [B, M, max T_i, V, C] float32 (absent persons and frames zero) and n [B]
  int32 = T_i. M is `persons`, or the most persons of any sequence.
  """
  seqs = [np.asarray(s, np.float32) for s in sequences]
  seqs = [s[:, None] if s.ndim == 3 else s for s in seqs]
  if not seqs or any(s.ndim != 4 or s.shape[0] == 0 for s in seqs):
    shapes = [tuple(s.shape) for s in seqs if s.ndim != 4 or s.shape[0] == 0][:1]
    raise EncoderError(f'stack needs sequences [T, V, C] or [T, M, V, C] with T >= 1, got {shapes}')
  if len({s.shape[2:] for s in seqs}) > 1:
    raise EncoderError(
      f'sequences of different joints x channels: {sorted({s.shape[2:] for s in seqs})}'
    )
  m = persons or max(s.shape[1] for s in seqs)
  t = max(s.shape[0] for s in seqs)
  x = np.zeros((len(seqs), m, t) + seqs[0].shape[2:], np.float32)
  for i, s in enumerate(seqs):
    x[i, : s.shape[1], : s.shape[0]] = s[:, :m].transpose(1, 0, 2, 3)
  return x, np.asarray([s.shape[0] for s in seqs], np.int32)


def nearest(queries, bank, k: int = 5, centre: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The k most cosine-similar rows of `bank` [N, D] for each of `queries` [Q, D].

  Returns (indices [Q, k], cosines [Q, k]), most similar first. centre: both sets minus
  the bank's mean first, as the knn stage centres on the training mean (knn.centre).
  """
  queries, bank = np.asarray(queries, np.float32), np.asarray(bank, np.float32)
  if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
    raise EncoderError(
      f'nearest needs [Q, D] and [N, D] features, got {queries.shape} and {bank.shape}'
    )
  if centre:
    mean = bank.mean(axis=0, keepdims=True)
    queries, bank = queries - mean, bank - mean
  sim = objectives.l2_normalize(jnp.asarray(queries)) @ objectives.l2_normalize(jnp.asarray(bank)).T
  cos, idx = jax.lax.top_k(sim, min(k, bank.shape[0]))
  return np.asarray(idx), np.asarray(cos)


# ------------------------------------------------------------------ loading ---


def _find(path: str) -> str:
  """The encoder folder of a workdir or an encoder folder; EncoderError when none."""
  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  if not os.path.exists(path):
    raise EncoderError(f'{path} does not exist: give a workdir or its encoder/ folder')
  found = ckpt_lib.find_encoder(path)
  if found:
    return found
  raise EncoderError(
    f'{path} holds no exported encoder: expected a workdir whose pretrain stage finished '
    '(it writes <workdir>/encoder) or that encoder/ folder'
  )


def _complete(meta: dict, directory: str) -> dict:
  """The metadata with every field format 2 has; format 1 reads them from config.json."""
  fmt = meta.get('format', 1)
  if not isinstance(fmt, int) or fmt < 1 or fmt > ckpt_lib.ENCODER_FORMAT:
    raise EncoderError(
      f'{directory} holds an encoder of format {fmt!r}, saved by another skeljax version; this '
      f'one reads formats 1..{ckpt_lib.ENCODER_FORMAT}: load it with a matching skeljax'
    )
  need = ('layout', 'model', 'frames', 'persons', 'max_frames', 'augment')
  if fmt == 1:  # before the format key: the run's config.json beside encoder/ has the rest
    config_path = os.path.join(os.path.dirname(directory), 'config.json')
    if os.path.isfile(config_path):
      with open(config_path) as f:
        config = json.load(f)
      d = config.get('data', {})
      extra = {'persons': d.get('persons'), 'max_frames': d.get('max_frames')}
      meta = {**extra, 'augment': config.get('augment'), **meta}
  missing = [k for k in need if meta.get(k) in (None, {})]
  if missing:
    why = 'saved by an older skeljax, and no config.json beside it' if fmt == 1 else 'damaged'
    raise EncoderError(
      f'{directory} holds an encoder of format {fmt} without {", ".join(missing)} in its '
      f'metadata ({why}): run its pretrain stage again with this skeljax'
    )
  return meta


def _build(meta: dict, directory: str):
  model = ml_collections.ConfigDict(meta['model'])
  try:
    layout = skeleton.get_layout(meta['layout'])
    aug = augment.AugParams.from_config(ml_collections.ConfigDict(meta['augment']))
    stream = meta.get('stream', 'joint')  # encoders saved before data.stream: joint
    module = models.build_encoder(model, layout, int(meta['frames']), stream=stream)
  except (ValueError, KeyError, AttributeError, TypeError) as e:
    raise EncoderError(
      f'{directory}: its metadata does not describe an encoder this skeljax builds (saved by '
      f'an incompatible version?): {" ".join(str(e).split())}'
    ) from None
  return model, layout, aug, module


def load_encoder(path, *, batch_stats: str = 'auto') -> Encoder:
  """The exported encoder of a workdir (or of its encoder/ folder), ready to call.

  batch_stats: 'auto' uses the BN statistics re-estimated on clean training clips when
  the pretrain stage exported them (it does with linear.recalibrate_bn, the default; the
  frozen stages use those), else the pretraining ones; 'recalibrated' requires them;
  'pretraining' takes the running statistics of pretraining.
  Raises EncoderError (one line) for a path without an encoder, an encoder saved by an
  incompatible skeljax version, or recalibrated statistics that were not exported.
  """
  if batch_stats not in BATCH_STATS:
    raise EncoderError(f'batch_stats must be one of {BATCH_STATS}, got {batch_stats!r}')
  directory = _find(path)
  try:
    meta = ckpt_lib.encoder_meta(directory)
  except (OSError, ValueError, KeyError) as e:
    raise EncoderError(
      f'{directory}: cannot read the encoder metadata: {" ".join(str(e).split())}'
    ) from None
  meta = _complete(meta, directory)
  model, layout, aug, module = _build(meta, directory)
  persons, frames = int(meta['persons']), int(meta['frames'])
  x = jnp.zeros((1, persons, frames, layout.num_joints, layout.num_channels), jnp.float32)
  n = jnp.full((1,), frames, jnp.int32)
  abstract = jax.eval_shape(
    functools.partial(module.init, train=False), {'params': jax.random.PRNGKey(0)}, x, n
  )
  abstract = {k: v for k, v in abstract.items() if k in ('params', 'batch_stats') and v}
  try:
    variables, _ = ckpt_lib.load_encoder(directory, abstract)
  except (ValueError, KeyError, TypeError) as e:
    raise EncoderError(
      f'{directory}: the saved variables do not fit model {model.name}/{model.get("size", "")} '
      f'on layout {layout.name} (saved by an incompatible skeljax version?): '
      f'{" ".join(str(e).split())[:300]}'
    ) from None
  source = 'pretraining' if variables.get('batch_stats') else 'none'
  if batch_stats == 'recalibrated' and not meta.get('recalibrated'):
    raise EncoderError(
      f'{directory} has no recalibrated BN statistics (exported by the pretrain stage with '
      "linear.recalibrate_bn, for encoders with BatchNorm); use batch_stats='pretraining'"
    )
  if batch_stats != 'pretraining' and meta.get('recalibrated'):
    stats = ckpt_lib.load_recalibrated(directory, {'batch_stats': abstract['batch_stats']})
    variables, source = {**variables, 'batch_stats': stats['batch_stats']}, 'recalibrated'
  return Encoder(
    path=directory,
    model=model,
    layout=layout,
    frames=frames,
    persons=persons,
    max_frames=int(meta['max_frames']),
    aug=aug,
    module=module,
    variables=variables,
    batch_stats=source,
    meta=meta,
  )
