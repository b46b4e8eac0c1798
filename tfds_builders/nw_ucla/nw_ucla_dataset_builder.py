"""Northwestern-UCLA Multiview Action 3D skeletons: a TFDS builder (array_record, no TF).

Reads the `all_sqe` JSON release (one file per sequence,
`{"file_name": "aAA_sSS_eEE_vVV", "skeletons": [T][20][3], "label": 1..10}`)
into the common skeljax schema (`tfds_builders/common.py`): `skeleton` float32
[T, 1, 20, 3] raw camera-space xyz in metres (kinect20 joint order, as stored),
label = index of the action among the 10 classes, subject = s, view = v,
replication = e, setup = -1. Nothing is resampled, centred or denoised
(version 1.0.0); zero-frame sequences are excluded and counted, one-frame
sequences (two in the release) are kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import common

_DIR = Path(__file__).resolve().parent
FOLDER = 'all_sqe'
NUM_JOINTS = 20
SAMPLE_NAME = re.compile(r'a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})')
# The 10 action ids in file-name order; the JSON label is the 1-based index in it.
ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
XVIEW_TRAIN_VIEWS = (1, 2)
XSUB_TRAIN_SUBJECTS = (1, 2, 3, 4, 5)  # not a standard protocol; see README.md

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Get the NW-UCLA skeletons in the `all_sqe` JSON format (1,484 files named
aAA_sSS_eEE_vVV.json, as distributed with the CTR-GCN code) and put them into
the manual directory (<data_dir>/downloads/manual/ unless you pass manual_dir):
  <manual_dir>/{FOLDER}/a01_s01_e00_v01.json ...
The .json files directly in <manual_dir>/ work too.
"""


@dataclasses.dataclass
class NwUclaConfig(tfds.core.BuilderConfig):
  """A protocol.

  Attributes:
    protocol: 'xview' (views 1, 2 train; view 3 test, the standard protocol) or
      'xsub' (subjects 1-5 train, 6-10 test; not a standard protocol).
    max_bad_fraction: the build fails when more than this fraction of the
      files of a split is malformed.
  """

  protocol: str = 'xview'
  max_bad_fraction: float = 0.05


def label_names() -> list[str]:
  lines = (_DIR / 'label_names.txt').read_text().splitlines()
  return [s.strip() for s in lines if s.strip()]


def parse_name(name: str) -> dict | None:
  """{'action', 'subject', 'replication', 'view'} from aAA_sSS_eEE_vVV, or None."""
  match = SAMPLE_NAME.fullmatch(name)
  if match is None:
    return None
  return dict(
    zip(('action', 'subject', 'replication', 'view'), map(int, match.groups()), strict=True)
  )


def is_train(fields: dict, protocol: str) -> bool:
  if protocol == 'xview':
    return fields['view'] in XVIEW_TRAIN_VIEWS
  if protocol == 'xsub':
    return fields['subject'] in XSUB_TRAIN_SUBJECTS
  raise ValueError(f'unknown NW-UCLA protocol {protocol!r}; use xview or xsub')


def parse_sequence(data: bytes, name: str) -> np.ndarray:
  """float32 [T, 20, 3] from one all_sqe JSON file, checked against its name.

  Raises:
    BadFileError: invalid JSON (with its line), missing keys, a label or name
      that disagrees with the file name, a frame without 20 joints of 3
      numbers, or a non-finite coordinate.
  """
  try:
    record = json.loads(data)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise common.BadFileError(f'not valid JSON: {e}', getattr(e, 'lineno', None)) from None
  if not isinstance(record, dict) or not {'skeletons', 'label'} <= set(record):
    raise common.BadFileError('expected a JSON object with "skeletons" and "label"')
  fields = parse_name(name)
  expected = ACTION_IDS.index(fields['action']) + 1
  if record['label'] != expected:
    raise common.BadFileError(f'label {record["label"]!r} but the name says {expected}')
  if record.get('file_name', name) != name:
    raise common.BadFileError(f'file_name {record["file_name"]!r} does not match the file')
  frames = record['skeletons']
  if not isinstance(frames, list):
    raise common.BadFileError('"skeletons" is not a list of frames')
  for t, frame in enumerate(frames):
    if not isinstance(frame, list) or len(frame) != NUM_JOINTS:
      n = len(frame) if isinstance(frame, list) else type(frame).__name__
      raise common.BadFileError(f'frame {t} has {n} joints, expected {NUM_JOINTS}')
  if not frames:
    return np.zeros((0, NUM_JOINTS, 3), np.float32)
  try:
    xyz = np.asarray(frames)  # no dtype: strings or nulls must not be converted silently
  except ValueError:  # ragged
    xyz = None
  if xyz is None or xyz.shape[1:] != (NUM_JOINTS, 3) or xyz.dtype.kind not in 'iuf':
    raise common.BadFileError('coordinates must be [T][20][3] numbers')
  if not np.isfinite(xyz).all():
    raise common.BadFileError('non-finite coordinate')
  return xyz.astype(np.float32)


class NwUcla(tfds.core.GeneratorBasedBuilder):
  """NW-UCLA: 10 actions, 10 subjects, 3 Kinect v1 views, one person, 20 joints."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release: all_sqe JSON as stored, no preprocessing.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
    NwUclaConfig(name='xview', protocol='xview', description='train views 1+2, test view 3'),
    NwUclaConfig(name='xsub', protocol='xsub', description='train s01-s05, test s06-s10'),
  ]

  def __init__(self, *, max_bad_fraction: float | None = None, **kwargs):
    """`max_bad_fraction`, when given, overrides the config's."""
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)
    self._max_bad_fraction = max_bad_fraction

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__.splitlines()[0],
      features=common.skeleton_features(1, NUM_JOINTS, 3, label_names()),
      homepage='https://wangjiangb.github.io/my_data.html',
      citation=(_DIR / 'CITATIONS.bib').read_text(),
      metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    try:
      manual_dir = Path(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS's way of saying the directory is missing or empty
      raise FileNotFoundError(f'{self.name}: NW-UCLA files not found. {e}') from None
    found = {}
    for folder in (manual_dir / FOLDER, manual_dir):
      for path in sorted(folder.glob('*.json')) if folder.is_dir() else ():
        if parse_name(path.stem) is None:
          logging.warning('ignoring %s: not an NW-UCLA sequence name', path)
        else:
          found.setdefault(path.stem, path)
    if not found:
      raise FileNotFoundError(
        f'{self.name}: no aAA_sSS_eEE_vVV.json files in {manual_dir} or {manual_dir / FOLDER}.\n'
        f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    self.info.metadata['preprocessing'] = {'version': str(self.VERSION), 'steps': 'none'}
    self.info.metadata['build'] = {}
    protocol = self.builder_config.protocol
    paths = [found[k] for k in sorted(found)]
    return {
      'train': self._generate_examples(
        [p for p in paths if is_train(parse_name(p.stem), protocol)], 'train'
      ),
      'test': self._generate_examples(
        [p for p in paths if not is_train(parse_name(p.stem), protocol)], 'test'
      ),
    }

  def _generate_examples(self, paths: list[Path], split: str):
    """Yields (sequence name, example), one file at a time."""
    bad_fraction = self._max_bad_fraction
    if bad_fraction is None:
      bad_fraction = self.builder_config.max_bad_fraction
    log = common.SkipLog(max_bad_fraction=bad_fraction)
    for path in common.progress(paths, self, split):
      log.seen += 1
      try:
        xyz = parse_sequence(path.read_bytes(), path.stem)
      except common.BadFileError as e:
        log.skip(path.name, e.reason, e.line)
        continue
      if xyz.shape[0] == 0:
        log.exclude('zero_frames')
        continue
      fields = parse_name(path.stem)
      yield (
        path.stem,
        common.make_example(
          xyz[:, None],
          ACTION_IDS.index(fields['action']),
          path.stem,
          subject=fields['subject'],
          view=fields['view'],
          replication=fields['replication'],
        ),
      )
    self.info.metadata['build'][split] = log.as_metadata()
    logging.info(
      'nw_ucla %s %s: %d files, %d bad, excluded %s',
      self.builder_config.name,
      split,
      log.seen,
      len(log.bad),
      log.excluded,
    )
    log.check()
