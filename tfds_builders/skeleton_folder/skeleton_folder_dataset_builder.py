"""skeleton_folder: a user's own skeleton sequences as a TFDS dataset.

The manual dir holds

  index.csv               header `name,label,split` plus optional `subject,view`
  sequences/<name>.npy    float [T, V, C] (one person) or [T, M, V, C]

Labels are strings; their sorted unique values become the ClassLabel names, so
the class names must be known before `_info()` runs. That is why the builder is
made by `make_builder(manual_dir, layout, data_dir, persons)`, which reads
index.csv first and puts the names into a per-folder BuilderConfig. The config
name carries a fingerprint of the folder, so editing the folder gives a new
config name and a stale prepared copy is never read by mistake.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from skeljax import skeleton
from tfds_builders import common

REQUIRED_COLUMNS = ('name', 'label', 'split')
OPTIONAL_COLUMNS = ('subject', 'view')
FINGERPRINTS = ('size', 'content')
_SPLIT_RE = re.compile(r'^[a-z][a-z0-9_]*$')

_INSTRUCTIONS = """\
Put your own sequences in one folder (the manual dir) and build with
`tfds_builders.skeleton_folder.make_builder(manual_dir, layout, data_dir, persons)`:

  <manual_dir>/index.csv             header: name,label,split[,subject,view]
  <manual_dir>/sequences/<name>.npy  float [T, V, C] or [T, M, V, C], saved with np.save

`label` is a class name (any string), `split` is `train` or `test` (any lower-case
identifier works; the pipeline reads `train` and `test`), `subject` and `view` are
optional integers (empty = unknown). V and C must match the joint layout
(ntu25: 25 x 3, kinect20: 20 x 3, openpose18: 18 x 3).
"""


@dataclasses.dataclass(frozen=True)
class IndexRow:
  """One line of index.csv."""

  name: str
  label: str
  split: str
  subject: int
  view: int
  line: int


@dataclasses.dataclass(eq=False)
class SkeletonFolderConfig(tfds.core.BuilderConfig):
  """A folder-specific config; build it with `make_builder`, not by hand."""

  manual_dir: str = ''
  layout: str = 'ntu25'
  persons: int = 2
  label_names: tuple[str, ...] = ()
  max_bad_fraction: float = 0.05
  fingerprint: str = ''
  fingerprint_mode: str = 'size'


def read_index(manual_dir: str) -> list[IndexRow]:
  """Parses `<manual_dir>/index.csv`; any problem raises a one-line ValueError."""
  path = os.path.join(manual_dir, 'index.csv')
  if not os.path.isdir(manual_dir):
    raise FileNotFoundError(
      f'skeleton_folder: manual dir {manual_dir!r} does not exist. {_one_line(_INSTRUCTIONS)}'
    )
  if not os.path.isfile(path):
    raise FileNotFoundError(f'skeleton_folder: {path} not found. {_one_line(_INSTRUCTIONS)}')
  with open(path, encoding='utf-8-sig', newline='') as f:
    text = f.read()
  return parse_index(text, path)


def parse_index(text: str, path: str = 'index.csv') -> list[IndexRow]:
  """Parses the text of an index.csv (see `read_index`)."""
  reader = csv.reader(io.StringIO(text))
  header = next(reader, None)
  if header is None:
    raise ValueError(f'{path}: empty file; expected the header {",".join(REQUIRED_COLUMNS)}')
  header = [h.strip() for h in header]
  missing = [c for c in REQUIRED_COLUMNS if c not in header]
  unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
  if missing or unknown or len(set(header)) != len(header):
    raise ValueError(
      f'{path}: bad header {",".join(header)!r}; need columns {",".join(REQUIRED_COLUMNS)} '
      f'and optionally {",".join(OPTIONAL_COLUMNS)}, each once'
    )
  col = {c: header.index(c) for c in header}
  rows, seen = [], set()
  for line, values in enumerate(reader, start=2):
    if not values or all(not v.strip() for v in values):
      continue
    if len(values) != len(header):
      raise ValueError(f'{path}:{line}: {len(values)} fields, the header has {len(header)}')
    get = lambda c, values=values: values[col[c]].strip() if c in col else ''
    name, label, split = get('name'), get('label'), get('split')
    if not name or name.startswith(('/', '\\')) or '..' in name.replace('\\', '/').split('/'):
      raise ValueError(f'{path}:{line}: bad sequence name {name!r}')
    if name in seen:
      raise ValueError(f'{path}:{line}: sequence {name!r} listed twice')
    if not label:
      raise ValueError(f'{path}:{line}: empty label')
    if not _SPLIT_RE.match(split):
      raise ValueError(f'{path}:{line}: bad split {split!r}; use e.g. train or test')
    meta = {}
    for c in OPTIONAL_COLUMNS:
      value = get(c)
      try:
        meta[c] = int(value) if value else -1
      except ValueError:
        raise ValueError(f'{path}:{line}: {c} {value!r} is not an integer') from None
    seen.add(name)
    rows.append(IndexRow(name, label, split, meta['subject'], meta['view'], line))
  if not rows:
    raise ValueError(f'{path}: no sequences listed')
  return rows


def _sequence_path(manual_dir: str, name: str) -> str:
  return os.path.join(manual_dir, 'sequences', name + '.npy')


def fingerprint(manual_dir: str, rows: list[IndexRow], mode: str = 'size') -> str:
  """Hex digest of index.csv plus every listed file's size ('size') or bytes ('content').

  'size' is cheap and the same on every copy of the folder (unlike mtimes, which
  differ between hosts); 'content' also catches same-size in-place edits.
  """
  if mode not in FINGERPRINTS:
    raise ValueError(f'fingerprint must be one of {FINGERPRINTS}, got {mode!r}')
  h = hashlib.sha256()
  with open(os.path.join(manual_dir, 'index.csv'), 'rb') as f:
    h.update(f.read())
  for row in rows:
    path = _sequence_path(manual_dir, row.name)
    h.update(row.name.encode() + b'\0')
    if not os.path.isfile(path):
      h.update(b'missing')
    elif mode == 'size':
      h.update(str(os.path.getsize(path)).encode())
    else:
      with open(path, 'rb') as f:
        for chunk in iter(lambda f=f: f.read(1 << 20), b''):
          h.update(chunk)
  return h.hexdigest()


def load_sequence(path: str, layout: skeleton.Layout, persons: int) -> np.ndarray:
  """Loads one .npy as float32 [T, persons, V, C].

  Persons beyond `persons` are dropped (the first ones are kept, so store the
  main actor first); fewer are zero-padded. Raises `common.BadFileError` for a
  file that cannot be read as numbers, and ValueError (a configuration error,
  never skipped) when V or C do not match the layout.
  """
  try:
    arr = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise common.BadFileError('file not found') from None
  except (ValueError, OSError, EOFError) as e:  # truncated, not .npy, or pickled objects
    raise common.BadFileError(f'cannot load as a numeric .npy: {e}') from None
  if not isinstance(arr, np.ndarray) or not (
    np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
  ):
    raise common.BadFileError(f'dtype {getattr(arr, "dtype", type(arr))} is not numeric')
  if arr.ndim == 3:
    arr = arr[:, None]
  if arr.ndim != 4:
    raise common.BadFileError(f'shape {arr.shape} is neither [T, V, C] nor [T, M, V, C]')
  v, c = arr.shape[2:]
  if (v, c) != (layout.num_joints, layout.num_channels):
    raise ValueError(
      f'{path}: shape {arr.shape} has {v} joints x {c} channels, but layout {layout.name} '
      f'needs {layout.num_joints} x {layout.num_channels}'
    )
  arr = arr.astype(np.float32)
  if not np.isfinite(arr).all():
    raise common.BadFileError('non-finite values (nan or inf)')
  out = np.zeros((arr.shape[0], persons, v, c), np.float32)
  m = min(persons, arr.shape[1])
  out[:, :m] = arr[:, :m]
  return out


class SkeletonFolder(tfds.core.GeneratorBasedBuilder):
  """A user's folder of .npy skeleton sequences; see `make_builder`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = []

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    if not isinstance(cfg, SkeletonFolderConfig) or not cfg.label_names:
      raise ValueError(
        'skeleton_folder needs a folder-specific config: use '
        'tfds_builders.skeleton_folder.make_builder(manual_dir, layout, data_dir, persons)'
      )
    layout = skeleton.get_layout(cfg.layout)
    return tfds.core.DatasetInfo(
      builder=self,
      description=f'Own skeleton sequences from {cfg.manual_dir} (layout {cfg.layout}).',
      features=common.skeleton_features(
        cfg.persons, layout.num_joints, layout.num_channels, cfg.label_names
      ),
      metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # the folder is the one the config was made from
    cfg = self.builder_config
    manual_dir = cfg.manual_dir
    rows = read_index(manual_dir)
    if fingerprint(manual_dir, rows, cfg.fingerprint_mode) != cfg.fingerprint:
      raise ValueError(f'{manual_dir} changed since make_builder() read it; call it again')
    self.info.metadata.update({'layout': cfg.layout, 'persons': cfg.persons, 'skips': {}})
    splits = sorted({r.split for r in rows})
    return {
      s: self._generate_examples(manual_dir, [r for r in rows if r.split == s], s) for s in splits
    }

  def _generate_examples(self, manual_dir: str, rows: list[IndexRow], split: str):
    cfg = self.builder_config
    layout = skeleton.get_layout(cfg.layout)
    label_index = {name: i for i, name in enumerate(cfg.label_names)}
    log = common.SkipLog(max_bad_fraction=cfg.max_bad_fraction)
    written = 0
    for row in rows:
      log.seen += 1
      path = _sequence_path(manual_dir, row.name)
      try:
        seq = load_sequence(path, layout, cfg.persons)
      except common.BadFileError as e:
        log.skip(row.name + '.npy', e.reason, e.line)
        continue
      if seq.shape[0] == 0:
        log.exclude('empty_sequence')
        continue
      written += 1
      yield (
        row.name,
        common.make_example(
          seq, label_index[row.label], row.name, subject=row.subject, view=row.view
        ),
      )
    self.info.metadata['skips'][split] = log.as_metadata()
    logging.info(
      'skeleton_folder/%s: %d listed, %d bad, excluded %s',
      split,
      log.seen,
      len(log.bad),
      log.excluded,
    )
    log.check()
    if not written:
      raise RuntimeError(
        f'skeleton_folder: the {split} split has no usable sequence '
        f'({log.seen} listed, {len(log.bad)} bad, excluded {log.excluded})'
      )


def make_builder(
  manual_dir: str,
  layout: str = 'ntu25',
  data_dir: str | None = None,
  persons: int = 2,
  *,
  max_bad_fraction: float = 0.05,
  fingerprint_mode: str = 'size',
) -> SkeletonFolder:
  """Returns a SkeletonFolder builder for the folder `manual_dir`.

  Usage:
    builder = make_builder(manual_dir, 'ntu25', data_dir, persons=2)
    builder.download_and_prepare(
      file_format='array_record',
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    train = builder.as_data_source(split='train')

  The config name is `<layout>_m<persons>_<12 hex digits>`, the digits a hash of
  index.csv and the listed files (their sizes, or their bytes with
  fingerprint_mode='content'), so a changed folder is prepared afresh.
  """
  manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
  lay = skeleton.get_layout(layout)
  if persons < 1:
    raise ValueError(f'persons must be >= 1, got {persons}')
  if not 0.0 <= max_bad_fraction <= 1.0:
    raise ValueError(f'max_bad_fraction must lie in [0, 1], got {max_bad_fraction}')
  rows = read_index(manual_dir)
  digest = fingerprint(manual_dir, rows, fingerprint_mode)
  config = SkeletonFolderConfig(
    name=f'{lay.name}_m{persons}_{digest[:12]}',
    description=f'{manual_dir} as {lay.name} with {persons} persons',
    manual_dir=manual_dir,
    layout=lay.name,
    persons=persons,
    label_names=tuple(sorted({r.label for r in rows})),
    max_bad_fraction=max_bad_fraction,
    fingerprint=digest,
    fingerprint_mode=fingerprint_mode,
  )
  return SkeletonFolder(config=config, data_dir=data_dir, file_format='array_record')


def _one_line(text: str) -> str:
  return ' '.join(text.split())
