"""Input pipeline: TFDS array_record -> grain -> host batches -> global jax.Arrays.

  builder (tfds_builders/<name>)  prepared on first use from data.manual_dir
  tfds data_source                random access, no TensorFlow
  grain MapDataset                shuffle (reseeded every epoch) + repeat, indexed by step
  host batch                      x [b, M, T_max, V, C] float32, n [b], label [b]
  jax.make_array_from_process_local_data  -> one global batch sharded over 'data'

Batches are addressed by step number: the global batch of step s holds samples
s*B .. s*B+B-1 of the shuffled, repeated stream, and process p reads its slice
of it. A resumed run therefore sees exactly the batches it would have seen.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import os
import shutil

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds

from skeljax import skeleton
from tfds_builders import common


class DataError(RuntimeError):
  """Data that cannot be read or prepared; the message is one line that says what to do."""


# ----------------------------------------------------------------- builders ---


@dataclasses.dataclass(frozen=True)
class Dataset:
  """How skeljax prepares one builder.

  module: the tfds_builders package; importing it registers the builder with TFDS.
  source: 'manual': raw files in data.manual_dir, needed until the dataset is prepared;
    'generated': no raw files; 'folder': data.manual_dir *is* the dataset, always needed,
    and prepared again when `builder.source_changed(manual_dir)` says it was edited.
  """

  module: str
  source: str = 'manual'


DATASETS = {
  'kinetics_skeleton': Dataset('tfds_builders.kinetics_skeleton'),
  'ntu_rgbd': Dataset('tfds_builders.ntu_rgbd'),
  'nw_ucla': Dataset('tfds_builders.nw_ucla'),
  'pku_mmd': Dataset('tfds_builders.pku_mmd'),
  'skeleton_folder': Dataset('tfds_builders.skeleton_folder', source='folder'),
  'synthetic_skeleton': Dataset('tfds_builders.synthetic_skeleton', source='generated'),
}


def dataset(name: str) -> Dataset:
  """The registry entry of `name`, its builder registered with TFDS; unknown names fail."""
  if name not in DATASETS:
    raise DataError(f'unknown dataset {name!r}; known datasets: {", ".join(sorted(DATASETS))}')
  importlib.import_module(DATASETS[name].module)
  return DATASETS[name]


def get_builder(data_cfg) -> tfds.core.DatasetBuilder:
  """The TFDS builder of `config.data` (not necessarily prepared yet)."""
  dataset(data_cfg.name)
  configs = list(tfds.builder_cls(data_cfg.name).builder_configs)
  if data_cfg.config not in configs:
    raise DataError(
      f'dataset {data_cfg.name} has no config {data_cfg.config!r}; choose one of {configs}'
    )
  return tfds.builder(
    f'{data_cfg.name}/{data_cfg.config}',
    data_dir=os.path.expanduser(data_cfg.data_dir),
    file_format='array_record',
  )


def _is_prepared(builder) -> bool:
  return os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))


def _full_name(builder) -> str:
  return f'{builder.name}/{builder.builder_config.name}'


def prepare(data_cfg, *, is_writer: bool = True) -> tfds.core.DatasetBuilder:
  """Returns a prepared builder, preparing it from `data.manual_dir` if needed.

  Only the writer prepares, and prints `build_summary`; the other processes get the
  builder as it is and ask again once the writer is done. A failed build leaves nothing
  that reads as prepared (TFDS writes into an `incomplete.*` folder and renames it on
  success). Bad raw data is one DataError line.
  """
  entry = dataset(data_cfg.name)
  builder = get_builder(data_cfg)
  manual_dir = os.path.expanduser(data_cfg.manual_dir) if data_cfg.manual_dir else None
  has_manual_dir = bool(manual_dir) and os.path.isdir(manual_dir)
  if entry.source == 'folder' and not has_manual_dir:
    raise DataError(
      f'dataset {data_cfg.name} reads its data from the manual dir, the folder holding '
      'index.csv and sequences/ (docs/data.md): set --config.data.manual_dir=DIR '
      f'(tfds_builders.build: --manual_dir=DIR); got {data_cfg.manual_dir!r}'
    )
  try:
    prepared = _is_prepared(builder)
    stale = prepared and entry.source == 'folder' and builder.source_changed(manual_dir)
    if not prepared and entry.source == 'manual' and not has_manual_dir:
      instructions = ' '.join(str(getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', '')).split())
      raise DataError(
        f'dataset {data_cfg.name} is not prepared in {data_cfg.data_dir} and '
        f'data.manual_dir={data_cfg.manual_dir!r} is not a folder. {instructions}'
      )
    if not is_writer:
      return builder
    if stale:
      print(
        f'{_full_name(builder)}: {manual_dir} changed since it was prepared into '
        f'{builder.data_dir}; preparing it again',
        flush=True,
      )
      shutil.rmtree(builder.data_dir)
      builder = get_builder(data_cfg)  # a fresh builder: the old one holds the old label names
    if stale or not prepared:
      print(f'Preparing {_full_name(builder)} into {builder.data_dir} (once) ...', flush=True)
      _quiet(builder)
      builder.download_and_prepare(
        file_format='array_record',
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
      )
      mapping = label_mapping(builder)
      if mapping:
        print(mapping, flush=True)
  except (common.BadDataError, FileNotFoundError) as e:
    raise DataError(f'{_full_name(builder)}: {" ".join(str(e).split())}') from None
  print(build_summary(builder), flush=True)
  return builder


def _quiet(builder) -> None:
  """No TFDS progress bars or size banners: skeljax prints its own plain lines.

  TFDS's tqdm bars redraw with carriage returns and cursor-up codes, which fill a
  redirected log, and its banner ("Downloading and preparing dataset Unknown size
  (download: Unknown size, ...") knows no sizes for manual builders. The builders report
  their progress through skeljax.progress, and prepare prints the one 'Preparing' line.
  The banner and the closing "Subsequent calls will reuse this data" are printed by two
  methods of the builder, silenced on this builder object only.
  """
  tfds.disable_progress_bar()
  for name in ('_log_download_bytes', '_log_download_done'):
    if callable(getattr(builder, name, None)):
      setattr(builder, name, lambda: None)


def label_mapping(builder, shown: int = 20) -> str:
  """One line with the class name -> id mapping of a builder whose labels were names.

  '' for a builder without one in its metadata (`labels`, skeleton_folder) or whose label
  column held ids. The first `shown` classes are listed; all are in metadata.json.
  """
  labels = (builder.info.metadata or {}).get('labels') or {}
  if labels.get('column') != 'names':
    return ''
  ids = labels['ids']
  how = {'sorted': 'sorted, numbers by value'}.get(
    labels['order'], f'in the order of {labels["order"]}'
  )
  pairs = ', '.join(f'{n}={i}' for n, i in sorted(ids.items(), key=lambda p: p[1])[:shown])
  if len(ids) > shown:
    pairs += f', ... (all {len(ids)} in {os.path.join(builder.data_dir, "metadata.json")})'
  return f'{_full_name(builder)}: class ids of the {len(ids)} label names ({how}): {pairs}'


def build_summary(builder) -> str:
  """One line: the prepared splits' sizes and the raw files skipped as bad or excluded."""
  sizes = ', '.join(f'{name} {split.num_examples}' for name, split in builder.info.splits.items())
  line = f'{_full_name(builder)}: {sizes} sequences in {builder.data_dir}'
  # Builders keep their per-split SkipLog counts (common.SkipLog) under 'build' or 'skips'.
  meta = builder.info.metadata or {}
  logs = (meta.get('build') or meta.get('skips') or {}).values()
  bad = [f for log in logs for f in log.get('bad_files', ())]
  if bad:
    n = sum(log.get('files_bad', 0) for log in logs)
    line += f'; skipped {n} bad files (first: {bad[0]["file"]}: {bad[0]["reason"]})'
  excluded = collections.Counter()
  for log in logs:
    excluded.update(log.get('excluded', {}))
  if excluded:
    line += f'; excluded {dict(excluded)}'
  return line


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Host-side record -> fixed-size arrays. Deterministic (no randomness).

  A record's skeleton [T, M', V, C] becomes x [M, max_frames, V, C]: persons
  are cut or zero-padded to M, and frames beyond `max_frames` are resampled
  down to `max_frames` by linear interpolation (so the whole sequence is kept).
  """

  persons: int
  max_frames: int
  num_joints: int
  num_channels: int

  def __call__(self, record) -> dict:
    seq = np.asarray(record['skeleton'], dtype=np.float32)
    if seq.ndim != 4 or seq.shape[2:] != (self.num_joints, self.num_channels):
      raise DataError(
        f'sample {record.get("file_name", b"?")!r} has shape {seq.shape}, but the layout '
        f'needs [T, M, {self.num_joints}, {self.num_channels}]; check data.layout'
      )
    t = seq.shape[0]
    if t > self.max_frames:
      pos = np.linspace(0.0, t - 1.0, self.max_frames)
      lo = np.floor(pos).astype(np.int64)
      hi = np.minimum(lo + 1, t - 1)
      w = (pos - lo).astype(np.float32)[:, None, None, None]
      seq = seq[lo] * (1.0 - w) + seq[hi] * w
      t = self.max_frames
    x = np.zeros((self.persons, self.max_frames, self.num_joints, self.num_channels), np.float32)
    m = min(self.persons, seq.shape[1])
    x[:m, :t] = seq[:, :m].transpose(1, 0, 2, 3)
    return {'x': x, 'n': np.int32(t), 'label': np.int32(record['label'])}


def preprocessor(data_cfg) -> Preprocess:
  layout = skeleton.get_layout(data_cfg.layout)
  return Preprocess(
    persons=data_cfg.persons,
    max_frames=data_cfg.max_frames,
    num_joints=layout.num_joints,
    num_channels=layout.num_channels,
  )


def _stack(samples: list[dict]) -> dict:
  return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


class _Rows:
  """A random-access view of some rows of a data source."""

  def __init__(self, source, rows: np.ndarray):
    self._source, self._rows = source, rows

  def __len__(self) -> int:
    return len(self._rows)

  def __getitem__(self, i):
    return self._source[int(self._rows[int(i)])]


def validation_rows(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """(train rows, validation rows): a class-stratified `fraction` of each class held out.

  The draw is fixed (it does not follow config.seed), so every seed of a study tunes on
  the same validation set.
  """
  key = jax.random.PRNGKey(20211011)
  held = []
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    take = int(round(fraction * len(rows)))
    held.append(
      rows[np.asarray(jax.random.permutation(jax.random.fold_in(key, int(c)), len(rows)))[:take]]
    )
  val = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
  train = np.setdiff1d(np.arange(len(labels)), val)
  return train, val


def holdout_rows(split, field: str, value: int) -> tuple[np.ndarray, np.ndarray]:
  """(train rows, validation rows): the rows whose metadata `field` equals `value` held out."""
  try:
    values = np.asarray([int(split.source[i][field]) for i in range(split.size)])
  except KeyError:
    raise DataError(f'data.val_holdout: the records have no field {field!r}') from None
  val = np.flatnonzero(values == value)
  if len(val) == 0 or len(val) == split.size:
    raise DataError(
      f'data.val_holdout={field}={value} selects {len(val)} of {split.size} training samples; '
      f'{field} takes the values {sorted(set(values.tolist()))}'
    )
  return np.flatnonzero(values != value), val


@dataclasses.dataclass
class Split:
  """One split of a prepared dataset: its source, size and label names."""

  source: object
  size: int
  num_classes: int
  label_names: tuple[str, ...]
  preprocess: Preprocess

  def subset(self, indices) -> Split:
    """The split restricted to `indices` (rows renumbered 0..len-1)."""
    return dataclasses.replace(
      self, source=_Rows(self.source, np.asarray(indices)), size=len(indices)
    )

  def read(self, indices) -> dict:
    return _stack([self.preprocess(self.source[int(i)]) for i in indices])

  def labels(self) -> np.ndarray:
    return np.asarray([int(self.source[i]['label']) for i in range(self.size)], np.int32)


def load_split(builder, data_cfg, split: str) -> Split:
  try:
    source = builder.as_data_source(split=split)
  except (KeyError, ValueError) as e:
    raise DataError(f'dataset {builder.name} has no split {split!r}: {e}') from None
  label = builder.info.features['label']
  return Split(
    source=source,
    size=len(source),
    num_classes=label.num_classes,
    label_names=tuple(label.names),
    preprocess=preprocessor(data_cfg),
  )


# Fields that 0 leaves to the training split (configs/folder.py leaves them all at 0).
DERIVED = ('data.persons', 'data.frames', 'data.max_frames', 'mcc.queue_size', 'pretrain.epochs')
# pretrain.epochs=0 trains about this many steps: the step count of configs/nw_ucla.py's
# default run (200 epochs of 15 steps), whose kNN monitor has flattened by its end on the
# NW-UCLA test view (docs/results.md). It fixes the wall time (for a given clip length), not
# the passes over the data: at batch 64, 20,000 clips get 10 epochs, 500 clips 429.
DERIVED_STEPS = 3000


def queue_size_for(train_size: int, batch_size: int, cap: int) -> int:
  """The largest power of two below the training-set size, at most `cap`, as whole batches.

  Below the set size, so a run with mcc.mask_own=False also passes check_against_data
  (queries then still meet some of their own previous-epoch keys; mcc.mask_own drops
  them). The configs' hand-set queues follow the same rule (NW-UCLA: 512 for 1,020 sequences; NTU-60
  x-sub: the peers' 32768, the cap, for 40,091).
  """
  q = 1
  while 2 * q < train_size and 2 * q <= cap:
    q *= 2
  return max(batch_size, q // batch_size * batch_size)


def derive_from_data(config, train: Split, test: Split) -> tuple[Split, Split, str]:
  """Sets the fields of DERIVED left at 0 from the training rows `train` (scanned once).

  persons: enough to keep every person present (not all zero) in any sequence; frames: the
  median length, rounded up (at least 4); max_frames: the longest; mcc.queue_size:
  `queue_size_for` the training-set size; pretrain.epochs: about DERIVED_STEPS steps of
  pretrain.batch_size. Returns the splits with the new sizes and one line saying what was
  chosen ('' when nothing was 0).
  """
  from skeljax import config as config_lib

  d, chosen = config.data, {}
  if 0 in (d.persons, d.frames, d.max_frames):
    persons, lengths = 1, np.zeros(train.size, np.int64)
    for i in range(train.size):
      record = train.source[i]
      lengths[i] = int(record['n_frames'])
      present = np.flatnonzero(np.any(np.asarray(record['skeleton']) != 0, axis=(0, 2, 3)))
      persons = max(persons, int(present[-1]) + 1 if len(present) else 0)
    if d.persons == 0:
      chosen['data.persons'] = d.persons = persons
    if d.frames == 0:
      frames = max(4, int(np.ceil(np.median(lengths))) if len(lengths) else 4)
      chosen['data.frames'] = d.frames = min(frames, d.max_frames or frames)
    if d.max_frames == 0:
      chosen['data.max_frames'] = d.max_frames = max(int(lengths.max(initial=0)), d.frames)
  if config.mcc.queue_size == 0:
    cap = config_lib.base_config().mcc.queue_size
    q = queue_size_for(train.size, config.pretrain.batch_size, cap)
    chosen['mcc.queue_size'] = config.mcc.queue_size = q
  if config.pretrain.epochs == 0:
    per_epoch = max(1, train.size // config.pretrain.batch_size)
    chosen['pretrain.epochs'] = config.pretrain.epochs = max(1, round(DERIVED_STEPS / per_epoch))
  if not chosen:
    return train, test, ''
  pre = preprocessor(d)
  values = ' '.join(f'{k}={v}' for k, v in chosen.items())
  key, value = next(iter(chosen.items()))
  line = (
    f'derived from the training split ({train.size} sequences): {values} '
    f'(set e.g. --config.{key}={value} to override)'
  )
  return dataclasses.replace(train, preprocess=pre), dataclasses.replace(test, preprocess=pre), line


def default_threads() -> int:
  """grain's read threads when `data.num_threads` is 0: every core of this process."""
  try:
    return max(len(os.sched_getaffinity(0)), 1)
  except AttributeError:  # not on Linux
    return max(os.cpu_count() or 1, 1)


def train_batches(
  split: Split,
  *,
  batch_size: int,
  seed: int,
  start_step: int,
  num_steps: int,
  indices: np.ndarray | None = None,
  num_threads: int = 0,
):
  """Yields this process's slice of the global batch for steps start..num_steps-1.

  `indices` restricts training to a subset (semi-supervised); order is a grain
  shuffle reseeded every epoch, so it depends only on (seed, step). Each record is
  read and preprocessed by grain's `.map` in `num_threads` threads (0: every core),
  then `.batch`ed, so the rate grows with the cores instead of one Python loop a step.
  Batches also carry 'index' [b]: the samples' row ids, which the queue uses to mask a
  query's own earlier keys.
  """
  base = grain.MapDataset.range(split.size if indices is None else len(indices))
  order = base.shuffle(seed=seed).repeat()
  nproc, pid = jax.process_count(), jax.process_index()
  if batch_size % nproc:
    raise DataError(f'batch size {batch_size} does not divide over {nproc} processes')
  local = batch_size // nproc
  lookup = (lambda i: int(i)) if indices is None else (lambda i: int(indices[i]))

  def load_record(i: int) -> dict:
    # Element i of this process's stream: row j of its slice of global step i // local.
    step, j = divmod(i, local)
    row = lookup(order[step * batch_size + pid * local + j])
    return {**split.preprocess(split.source[row]), 'index': np.int32(row)}

  records = grain.MapDataset.range(start_step * local, num_steps * local).map(load_record)
  threads = num_threads or default_threads()
  return iter(
    records.batch(local, batch_fn=_stack).to_iter_dataset(
      grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(4 * local, 16))
    )
  )


def eval_batches(split: Split, batch_size: int, indices: np.ndarray | None = None):
  """Yields (batch, valid) in dataset order; the last batch is zero-padded.

  `valid` [b] marks real samples. Each process reads its slice of every global batch.
  """
  idx = np.arange(split.size) if indices is None else np.asarray(indices)
  nproc, pid = jax.process_count(), jax.process_index()
  local = batch_size // nproc
  for first in range(0, len(idx), batch_size):
    chunk = idx[first + pid * local : first + (pid + 1) * local]
    valid = np.zeros(local, bool)
    valid[: len(chunk)] = True
    samples = [split.preprocess(split.source[int(i)]) for i in chunk]
    pad = {
      'x': np.zeros(
        (
          split.preprocess.persons,
          split.preprocess.max_frames,
          split.preprocess.num_joints,
          split.preprocess.num_channels,
        ),
        np.float32,
      ),
      'n': np.int32(1),
      'label': np.int32(0),
    }
    samples += [pad] * (local - len(chunk))
    yield _stack(samples), valid
