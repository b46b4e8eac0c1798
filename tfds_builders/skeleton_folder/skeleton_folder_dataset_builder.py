"""skeleton_folder: a user's own skeleton sequences as a TFDS dataset.

The manual dir (skeljax: `data.manual_dir`) holds

  index.csv               header `name,label,split` plus optional `subject,view`
  label_names.txt         optional: one class name per line, line k names class id k
  sequences/<name>.npy    float [T, V, C] (one person) or [T, M, V, C]

`label` is either an integer class id, the ids of all rows together being 0..K-1 with
none missing, or a class name (`walk`, `sitDown`, `a01`); one column holds one kind.
Names become ids in the order of label_names.txt when present, otherwise sorted
(`natural_key`: case-insensitive, numbers inside names by value, so a2 before a10); the
mapping is stored in the prepared copy's metadata (`labels`). `split` is train or test.

There is one builder config per joint layout (`skeleton_folder/ntu25`, `/kinect20`,
`/openpose18`), because the layout fixes V and C. Every file keeps its own persons (the
persons axis has no fixed size), so nothing is cut at build time; the input pipeline keeps
`data.persons` of them.

The prepared copy records a fingerprint of the folder (index.csv, label_names.txt and
every listed file's size) in its metadata. `source_changed(manual_dir)` compares it with
the folder as it is now, so skeljax prepares an edited folder again instead of reading a
stale copy.

Bad data stops the build with one line (`common.BadDataError`): a bad index.csv row, a
listed file that does not exist, ids that are not 0..K-1, a column mixing ids and names, a
name missing from label_names.txt (or one there that no row uses), an array whose joints or
channels do not fit the layout. Files that cannot be read, or hold NaN or inf, are
skipped and counted like every builder's bad files (`common.SkipLog`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import os
import re
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

from skeljax import skeleton
from tfds_builders import common

REQUIRED_COLUMNS = ('name', 'label', 'split')
OPTIONAL_COLUMNS = ('subject', 'view')
SPLITS = ('train', 'test')
FINGERPRINTS = ('size', 'content')
LABEL_NAMES_FILE = 'label_names.txt'
_CLASS_ID = re.compile(r'^[0-9]+$')
# A number that is not a class id (-1, 1.5, 2e3): a mistake, never taken as a class name.
_NUMBER = re.compile(r'^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$')

_INSTRUCTIONS = """\
Put your own sequences in one folder, the manual dir (skeljax: --config.data.manual_dir):

  <manual_dir>/index.csv             header: name,label,split[,subject,view]
  <manual_dir>/label_names.txt       optional: one class name per line, line k names class k
  <manual_dir>/sequences/<name>.npy  float [T, V, C] or [T, M, V, C], saved with np.save

`label` is a class name (walk, sitDown, a01) or an integer class id 0..K-1 (every id used
at least once), the same kind in every row; names become ids in the order of
label_names.txt, or sorted without it (a2 before a10). `split` is train or
test, `subject` and `view` are optional integers (empty = unknown). V and C must match the
joint layout, the builder config (ntu25: 25 x 3, kinect20: 20 x 3, openpose18: 18 x 3).
See docs/data.md.
"""


@dataclasses.dataclass(frozen=True)
class IndexRow:
  """One line of index.csv; `label` is the class id, whether the column held ids or names."""

  name: str
  label: int
  split: str
  subject: int
  view: int
  line: int


@dataclasses.dataclass(frozen=True)
class Index:
  """index.csv as read: rows with class ids, and the class names in id order.

  column: what the label column held, 'ids' or 'names'. order: how the names map to ids,
  'ids' (the column's own ids), 'label_names.txt' (its line order) or 'sorted'
  (`natural_key`).
  """

  rows: tuple[IndexRow, ...]
  names: tuple[str, ...]
  column: str
  order: str

  def metadata(self) -> dict:
    """The mapping as stored in the prepared copy's metadata (`labels`)."""
    return {
      'column': self.column,
      'order': self.order,
      'ids': {name: i for i, name in enumerate(self.names)},
    }


@dataclasses.dataclass(eq=False)
class SkeletonFolderConfig(tfds.core.BuilderConfig):
  """A joint layout (skeljax/skeleton.py): the folder's arrays are [T, (M,) V, C] of it."""

  layout: str = 'ntu25'
  max_bad_fraction: float = 0.05


def _one_line(text: str) -> str:
  return ' '.join(text.split())


def read_index(manual_dir: str) -> Index:
  """Parses `<manual_dir>/index.csv` with its label_names.txt; any problem is a one-line
  BadDataError."""
  path = os.path.join(manual_dir, 'index.csv')
  if not os.path.isdir(manual_dir):
    raise common.BadDataError(
      f'skeleton_folder: manual dir {manual_dir!r} does not exist. {_one_line(_INSTRUCTIONS)}'
    )
  if not os.path.isfile(path):
    raise common.BadDataError(f'skeleton_folder: {path} not found. {_one_line(_INSTRUCTIONS)}')
  with open(path, encoding='utf-8-sig', newline='') as f:
    text = f.read()
  names_path = os.path.join(manual_dir, LABEL_NAMES_FILE)
  names = read_label_names(names_path) if os.path.isfile(names_path) else None
  return parse_index(text, path, names, names_path)


def read_label_names(path: str) -> list[str]:
  """The class names of a label_names.txt, one a line; empty or repeated names fail."""
  with open(path, encoding='utf-8-sig') as f:
    names = [line.strip() for line in f.read().strip().splitlines()]
  for i, name in enumerate(names):
    if not name or name in names[:i]:
      what = 'an empty line' if not name else f'{name!r} a second time'
      raise common.BadDataError(
        f'{path}:{i + 1}: {what}; class names must be non-empty and distinct'
      )
  return names


def natural_key(name: str) -> tuple:
  """Sort key of class names: case-insensitive, digit runs by value (a2 < a10 < B1).

  Ties (a01 and a1, Walk and walk) fall back to the exact text, so the order is total.
  """
  parts = re.split(r'([0-9]+)', name.casefold())
  return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def _label_kind(label: str, path: str, line: int) -> str:
  """'id' or 'name' for one label cell; empty cells and numbers that are no id fail."""
  if _CLASS_ID.match(label):
    return 'id'
  if not label or _NUMBER.match(label):
    what = 'is empty' if not label else 'is a number but not an integer class id 0..K-1'
    raise common.BadDataError(
      f'{path}:{line}: label {label!r} {what}; give a class name (e.g. walk) or an integer '
      'class id 0..K-1'
    )
  return 'name'


def parse_index(
  text: str,
  path: str = 'index.csv',
  label_names: list[str] | None = None,
  names_path: str = LABEL_NAMES_FILE,
) -> Index:
  """Parses the text of an index.csv (see `read_index`) into an Index.

  `label_names`: the lines of label_names.txt (`names_path`), or None without that file.
  Ids must be 0..K-1 without gaps and label_names.txt, when given, must name K classes;
  names must all be in label_names.txt when given, and it must list no unused class.
  """
  reader = csv.reader(io.StringIO(text))
  header = next(reader, None)
  if header is None:
    raise common.BadDataError(
      f'{path}: empty file; expected the header {",".join(REQUIRED_COLUMNS)}'
    )
  header = [h.strip() for h in header]
  missing = [c for c in REQUIRED_COLUMNS if c not in header]
  unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
  if missing or unknown or len(set(header)) != len(header):
    raise common.BadDataError(
      f'{path}: bad header {",".join(header)!r}; need columns {",".join(REQUIRED_COLUMNS)} '
      f'and optionally {",".join(OPTIONAL_COLUMNS)}, each once'
    )
  col = {c: header.index(c) for c in header}
  rows, labels, seen = [], [], set()
  first = None  # (line, label, kind) of the first row: every row must be of its kind
  for line, values in enumerate(reader, start=2):
    if not values or all(not v.strip() for v in values):
      continue
    if len(values) != len(header):
      raise common.BadDataError(
        f'{path}:{line}: {len(values)} fields, the header has {len(header)}'
      )
    get = lambda c, values=values: values[col[c]].strip() if c in col else ''
    name, label, split = get('name'), get('label'), get('split')
    if not name or name.startswith(('/', '\\')) or '..' in name.replace('\\', '/').split('/'):
      raise common.BadDataError(f'{path}:{line}: bad sequence name {name!r}')
    if name in seen:
      raise common.BadDataError(f'{path}:{line}: sequence {name!r} listed twice')
    kind = _label_kind(label, path, line)
    first = first or (line, label, kind)
    if kind != first[2]:
      raise common.BadDataError(
        f'{path}:{line}: label {label!r} is a class {kind}, but line {first[0]} has the class '
        f'{first[2]} {first[1]!r}; use class names in every row, or integer ids 0..K-1 in '
        'every row'
      )
    if split not in SPLITS:
      raise common.BadDataError(f'{path}:{line}: split {split!r} is not train or test')
    meta = {}
    for c in OPTIONAL_COLUMNS:
      value = get(c)
      try:
        meta[c] = int(value) if value else -1
      except ValueError:
        raise common.BadDataError(f'{path}:{line}: {c} {value!r} is not an integer') from None
    seen.add(name)
    labels.append(label)
    rows.append(IndexRow(name, -1, split, meta['subject'], meta['view'], line))
  if not rows:
    raise common.BadDataError(f'{path}: no sequences listed')
  if first[2] == 'id':
    ids = [int(label) for label in labels]
    names, order = _names_of_ids(ids, label_names, path, names_path), 'ids'
  else:
    names, order = _ids_of_names(rows, labels, label_names, path, names_path)
    index = {n: i for i, n in enumerate(names)}
    ids = [index[label] for label in labels]
  rows = tuple(dataclasses.replace(r, label=i) for r, i in zip(rows, ids, strict=True))
  return Index(rows, tuple(names), 'ids' if first[2] == 'id' else 'names', order)


def _names_of_ids(ids, label_names, path, names_path) -> list[str]:
  """The class names of an id column: label_names.txt's, or '0'..'K-1'."""
  num_classes = max(ids) + 1
  absent = sorted(set(range(num_classes)) - set(ids))
  if absent:
    shown = ', '.join(map(str, absent[:5])) + (', ...' if len(absent) > 5 else '')
    hint = '; the ids start at 1: subtract 1 from each, or' if min(ids) == 1 else ';'
    raise common.BadDataError(
      f'{path}: labels must be 0..K-1 without gaps, but {len(absent)} of 0..{num_classes - 1} '
      f'never occur ({shown}){hint} renumber the classes, or write class names instead'
    )
  if label_names is None:
    return [str(i) for i in range(num_classes)]
  if len(label_names) != num_classes:
    raise common.BadDataError(
      f'{names_path}: {len(label_names)} names, but index.csv has {num_classes} classes (labels '
      f'0..{num_classes - 1}); write one name per class, line k naming label k'
    )
  return list(label_names)


def _ids_of_names(rows, labels, label_names, path, names_path) -> tuple[list[str], str]:
  """(class names in id order, order) of a name column."""
  if label_names is None:
    return sorted(set(labels), key=natural_key), 'sorted'
  known = set(label_names)
  for row, label in zip(rows, labels, strict=True):
    if label not in known:
      shown = ', '.join(label_names[:5]) + (', ...' if len(label_names) > 5 else '')
      raise common.BadDataError(
        f'{path}:{row.line}: label {label!r} is not in {names_path} ({len(label_names)} '
        f'names: {shown}); add it there, or fix the row'
      )
  used = set(labels)
  for i, name in enumerate(label_names):
    if name not in used:
      raise common.BadDataError(
        f'{names_path}:{i + 1}: class {name!r} is the label of no row of {path}; remove it '
        'from the file, or add its sequences'
      )
  return list(label_names), LABEL_NAMES_FILE


def sequence_path(manual_dir: str, name: str) -> str:
  return os.path.join(manual_dir, 'sequences', name + '.npy')


def check_files_exist(manual_dir: str, rows: Sequence[IndexRow]) -> None:
  """One BadDataError naming the first index.csv row whose .npy is missing, and the count."""
  missing = [r for r in rows if not os.path.isfile(sequence_path(manual_dir, r.name))]
  if missing:
    first = missing[0]
    raise common.BadDataError(
      f'{os.path.join(manual_dir, "index.csv")}:{first.line}: sequences/{first.name}.npy does '
      f'not exist ({len(missing)} of {len(rows)} listed files are missing); add the files or '
      'remove their rows'
    )


def fingerprint(manual_dir: str, rows: Sequence[IndexRow], mode: str = 'size') -> str:
  """Hex digest of index.csv, label_names.txt and every listed file's size or bytes.

  'size' is cheap and the same on every copy of the folder (unlike mtimes, which
  differ between hosts); 'content' also catches same-size in-place edits.
  """
  if mode not in FINGERPRINTS:
    raise ValueError(f'fingerprint must be one of {FINGERPRINTS}, got {mode!r}')
  h = hashlib.sha256()
  for extra in ('index.csv', LABEL_NAMES_FILE):
    path = os.path.join(manual_dir, extra)
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        h.update(extra.encode() + b'\0' + f.read())
  for row in rows:
    path = sequence_path(manual_dir, row.name)
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


def load_sequence(path: str, layout: skeleton.Layout) -> np.ndarray:
  """Loads one .npy as float32 [T, M, V, C] with all its persons.

  Raises `common.BadFileError` (the file is skipped and counted) for a file that cannot
  be read as numbers or holds NaN or inf, and `common.BadDataError` (the build stops)
  when V or C do not match the layout: then every file is likely of another layout.
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
    fits = [
      n for n, lay in skeleton.LAYOUTS.items() if (lay.num_joints, lay.num_channels) == (v, c)
    ]
    hint = f'; layout {fits[0]} has {v} x {c}' if fits else ''
    raise common.BadDataError(
      f'{path}: shape {arr.shape} has {v} joints x {c} channels, but layout {layout.name} '
      f'needs {layout.num_joints} x {layout.num_channels}: set the layout of your data '
      f'(skeljax: --config.data.layout){hint}'
    )
  arr = arr.astype(np.float32)
  finite = np.isfinite(arr).all(axis=(1, 2, 3))
  if not finite.all():
    raise common.BadFileError(
      f'frame {int(np.argmin(finite))} has a non-finite coordinate (nan or inf)'
    )
  return arr


class SkeletonFolder(tfds.core.GeneratorBasedBuilder):
  """A user's folder of .npy skeleton sequences (the manual dir); one config per layout."""

  VERSION = tfds.core.Version('2.1.0')
  RELEASE_NOTES = {
    '1.0.0': 'First release: string labels, one config per folder and person count.',
    '2.0.0': 'Integer labels 0..K-1 (+ label_names.txt), train/test splits only, one config '
    'per joint layout, every person of a file kept.',
    '2.1.0': 'Labels may be class names (ids in label_names.txt order, or sorted with numbers '
    'by value); the name -> id mapping is stored in the metadata (`labels`).',
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    SkeletonFolderConfig(name=name, layout=name, description=f'arrays in the {name} layout')
    for name in skeleton.LAYOUTS
  ]

  def __init__(
    self, *, max_bad_fraction: float | None = None, fingerprint_mode: str = 'size', **kwargs
  ):
    """`max_bad_fraction`, when given, overrides the config's; `fingerprint_mode` is
    'size' or 'content' (see `fingerprint`)."""
    kwargs.setdefault('file_format', 'array_record')
    if fingerprint_mode not in FINGERPRINTS:
      raise ValueError(f'fingerprint must be one of {FINGERPRINTS}, got {fingerprint_mode!r}')
    if max_bad_fraction is not None and not 0.0 <= max_bad_fraction <= 1.0:
      raise ValueError(f'max_bad_fraction must lie in [0, 1], got {max_bad_fraction}')
    super().__init__(**kwargs)
    self._max_bad_fraction = max_bad_fraction
    self._fingerprint_mode = fingerprint_mode

  def _info(self) -> tfds.core.DatasetInfo:
    layout = skeleton.get_layout(self.builder_config.layout)
    return tfds.core.DatasetInfo(
      builder=self,
      description=f'Own skeleton sequences from a folder, layout {layout.name}.',
      # Persons: each file's own; label names: read from the folder while preparing.
      features=common.skeleton_features(None, layout.num_joints, layout.num_channels, None),
      metadata=tfds.core.MetadataDict(),
    )

  def source_changed(self, manual_dir: str) -> bool:
    """Whether the folder differs from the one this prepared copy was built from."""
    recorded = self.info.metadata.get('source', {})
    rows = read_index(manual_dir).rows
    mode = recorded.get('fingerprint_mode', 'size')
    return fingerprint(manual_dir, rows, mode) != recorded.get('fingerprint')

  def _split_generators(self, dl_manager):
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS's way of saying the directory is missing or empty
      raise common.BadDataError(f'skeleton_folder: {e} {_one_line(_INSTRUCTIONS)}') from None
    index = read_index(manual_dir)
    rows = index.rows
    check_files_exist(manual_dir, rows)
    self.info.features['label'].names = list(index.names)
    self.info.metadata.update(
      layout=self.builder_config.layout,
      labels=index.metadata(),
      source={
        'manual_dir': os.path.abspath(manual_dir),
        'fingerprint': fingerprint(manual_dir, rows, self._fingerprint_mode),
        'fingerprint_mode': self._fingerprint_mode,
      },
      skips={},
    )
    return {
      s: self._generate_examples(manual_dir, [r for r in rows if r.split == s], s)
      for s in SPLITS
      if any(r.split == s for r in rows)
    }

  def _generate_examples(self, manual_dir: str, rows: Sequence[IndexRow], split: str):
    layout = skeleton.get_layout(self.builder_config.layout)
    bad_fraction = self._max_bad_fraction
    if bad_fraction is None:
      bad_fraction = self.builder_config.max_bad_fraction
    log = common.SkipLog(
      max_bad_fraction=bad_fraction, advice='Fix those files, or remove their rows from index.csv.'
    )
    written = 0
    for row in common.progress(rows, self, split, 'sequences'):
      log.seen += 1
      try:
        seq = load_sequence(sequence_path(manual_dir, row.name), layout)
      except common.BadFileError as e:
        log.skip(row.name + '.npy', e.reason, e.line)
        continue
      if seq.shape[0] == 0:
        log.exclude('empty_sequence')
        continue
      written += 1
      yield (
        row.name,
        common.make_example(seq, row.label, row.name, subject=row.subject, view=row.view),
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
      raise common.BadDataError(
        f'skeleton_folder: the {split} split has no usable sequence '
        f'({log.seen} listed, {len(log.bad)} bad, excluded {log.excluded})'
      )
