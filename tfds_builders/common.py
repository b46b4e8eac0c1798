"""Pieces every skeleton builder shares: the feature schema and bad-file accounting.

All builders write the same example layout so the input pipeline reads any of
them the same way:

  skeleton   float32 [T, M, V, C]  raw camera-space coordinates, not centred;
                                   absent persons are all-zero. M is the builder's
                                   fixed person count, or each sequence's own
                                   (skeleton_folder stores the files as they are).
  label      ClassLabel            with the dataset's action names.
  n_frames   int32                 T.
  subject, view, setup, replication  int32 metadata, -1 where unknown.
  file_name  Text                  the source sample name (no directory).

TFDS writes a split into an `incomplete.*` folder and renames it only when the
whole build succeeded, so an interrupted build never reads as complete.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import tensorflow_datasets as tfds

METADATA_KEYS = ('subject', 'view', 'setup', 'replication')


def skeleton_features(
  num_persons: int | None, num_joints: int, num_channels: int, label_names
) -> tfds.features.FeaturesDict:
  """The common FeaturesDict of every skeljax builder.

  `num_persons` None: every sequence keeps its own person count. `label_names` None: the
  builder sets `info.features['label'].names` while preparing (they come from the data).
  """
  features = {
    'skeleton': tfds.features.Tensor(
      shape=(None, num_persons, num_joints, num_channels), dtype=np.float32, encoding='zlib'
    ),
    'label': tfds.features.ClassLabel(names=None if label_names is None else list(label_names)),
    'n_frames': np.int32,
    'file_name': tfds.features.Text(),
  }
  features.update({k: np.int32 for k in METADATA_KEYS})
  return tfds.features.FeaturesDict(features)


def make_example(skeleton: np.ndarray, label: int, file_name: str, **metadata) -> dict:
  """Builds one example dict in the common schema; unknown metadata is -1."""
  skeleton = np.asarray(skeleton, dtype=np.float32)
  if skeleton.ndim != 4 or skeleton.shape[0] == 0:
    raise ValueError(f'{file_name}: skeleton must be non-empty [T, M, V, C], got {skeleton.shape}')
  unknown = set(metadata) - set(METADATA_KEYS)
  if unknown:
    raise ValueError(f'unknown metadata keys {sorted(unknown)}')
  example = {
    'skeleton': skeleton,
    'label': int(label),
    'n_frames': np.int32(skeleton.shape[0]),
    'file_name': file_name,
  }
  example.update({k: np.int32(metadata.get(k, -1)) for k in METADATA_KEYS})
  return example


def progress(items, builder, split: str, unit: str = 'files'):
  """Yields `items` (a sized iterable of raw files) with a progress line now and then.

  The plain lines of skeljax.progress ("preparing nw_ucla/xview train 300/1020 files |
  ... | ETA 0m20s"), at least ten seconds apart: TFDS's own bars are off while skeljax
  prepares (skeljax.data.prepare), and they do not know how many files a split has.
  """
  from skeljax import progress as progress_lib

  items = list(items)
  what = f'preparing {builder.name}/{builder.builder_config.name} {split}'
  return progress_lib.iterate(items, what, unit=unit)


class BadDataError(RuntimeError):
  """Raw data that cannot be prepared as a whole; the message is one line saying what to fix.

  `skeljax.data.prepare` shows it as one `skeljax: error:` line, not a traceback.
  """


class BadFileError(ValueError):
  """A raw file that cannot be parsed; carries the line number when known."""

  def __init__(self, reason: str, line: int | None = None):
    super().__init__(reason)
    self.reason = reason
    self.line = line


@dataclasses.dataclass
class SkipLog:
  """Counts files skipped during a build and fails when too many are bad.

  `skip()` records (file, line, reason) and logs one line; `check()` raises if
  the bad fraction exceeds `max_bad_fraction`; `as_metadata()` is stored in the
  dataset's metadata so the counts travel with the data.
  """

  max_bad_fraction: float = 0.05
  # What the user can do when check() fails; the builders of downloads share the default.
  advice: str = 'Check the manual download, or raise max_bad_fraction.'
  seen: int = 0
  bad: list = dataclasses.field(default_factory=list)
  excluded: dict = dataclasses.field(default_factory=dict)

  def skip(self, file_name: str, reason: str, line: int | None = None) -> None:
    where = f'{file_name}:{line}' if line is not None else file_name
    logging.warning('skipping %s: %s', where, reason)
    self.bad.append({'file': file_name, 'line': line, 'reason': reason})

  def exclude(self, why: str) -> None:
    """Counts a sample excluded on purpose (e.g. an official missing-skeleton list)."""
    self.excluded[why] = self.excluded.get(why, 0) + 1

  def check(self) -> None:
    if self.seen and len(self.bad) / self.seen > self.max_bad_fraction:
      first = self.bad[0]
      where = first['file'] if first['line'] is None else f'{first["file"]}:{first["line"]}'
      raise BadDataError(
        f'{len(self.bad)} of {self.seen} raw files are bad (more than '
        f'{self.max_bad_fraction:.0%}); first: {where}: {first["reason"]}. {self.advice}'
      )

  def as_metadata(self) -> dict:
    return {
      'files_seen': self.seen,
      'files_bad': len(self.bad),
      'bad_files': self.bad[:1000],
      'excluded': dict(self.excluded),
    }
