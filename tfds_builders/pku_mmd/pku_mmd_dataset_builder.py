"""pku_mmd: PKU-MMD action segments cut from the continuous skeleton sequences.

PKU-MMD ships long untrimmed recordings (about 3-4 minutes each): one text
line per frame with 150 floats (2 bodies x 25 Kinect v2 joints x xyz; the
second body is all zeros when only one person is present) and, per video, a
label file of `action,start,end,confidence` rows. Every labelled row becomes
one example: frames `start..end` (0-based, end inclusive) of its video.

Choices (all deterministic, version 1.0.0):
  - Coordinates are stored as recorded (metres, camera space, not centred);
    both body slots are kept in file order.
  - A row whose start > end is swapped (a few official rows are reversed) and
    counted as `segments_reversed` (the segment is kept).
  - A row reaching outside the recording (start < 0 or end >= frames) is left
    out and counted as `segments_out_of_range`; a segment with no tracked body
    in any frame is left out as `segments_without_body`.
  - Metadata: view from the id suffix (L=1, M=2, R=3); the subject is not in
    the file names, so subject/setup/replication are -1.
  - A skeleton file with a wrong field count, a non-numeric or non-finite
    value, or a label file with a malformed row is skipped whole (file, line,
    reason in the metadata); more than `max_bad_fraction` of the listed videos
    bad fails the build.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import common

NUM_PERSONS, NUM_JOINTS, NUM_CHANNELS = 2, 25, 3
NUM_FIELDS = NUM_PERSONS * NUM_JOINTS * NUM_CHANNELS
VIEWS = {'L': 1, 'M': 2, 'R': 3}

# Folder and file names inside <manual_dir>/part1 and <manual_dir>/part2; the
# first existing candidate wins, so renaming to the short name always works.
SKELETON_DIRS = ('PKU_Skeleton_Renew', 'skeleton', 'Skeleton')
LABEL_DIRS = ('Train_Label_PKU_final', 'label', 'Label')
SPLIT_FILES = {
  (1, 'xsub'): ('cross-subject.txt', 'cross_subject.txt'),
  (1, 'xview'): ('cross-view.txt', 'cross_view.txt'),
  (2, 'xsub'): ('cross_subject_v2.txt', 'cross-subject-v2.txt', 'cross-subject.txt'),
  (2, 'xview'): ('cross_view_v2.txt', 'cross-view-v2.txt', 'cross-view.txt'),
}

_DESCRIPTION = (
  'PKU-MMD (phases 1 and 2) action segments cut from the continuous Kinect v2 '
  'recordings with the official label files: 51 actions, 2 persons x 25 joints x xyz.'
)

_HERE = os.path.dirname(os.path.abspath(__file__))

_INSTRUCTIONS = """\
Request PKU-MMD at https://www.icst.pku.edu.cn/struct/Projects/PKUMMD.html and
extract it under the manual dir (default <data_dir>/downloads/manual/) as:

  <manual_dir>/part1/PKU_Skeleton_Renew/0002-L.txt ...     from Skeleton.7z (phase 1)
  <manual_dir>/part1/Train_Label_PKU_final/0002-L.txt ...  from Label_PKUMMD.7z
  <manual_dir>/part1/cross-subject.txt, cross-view.txt     the phase 1 split files
  <manual_dir>/part2/skeleton/A01N01-L.txt ...             from Skeleton_v2.7z (phase 2)
  <manual_dir>/part2/label/A01N01-L.txt ...                from Label_PKUMMD_v2.7z
  <manual_dir>/part2/cross_subject_v2.txt, cross_view_v2.txt

Accepted folder names in either part: PKU_Skeleton_Renew/, skeleton/ or Skeleton/
for skeletons and Train_Label_PKU_final/, label/ or Label/ for labels; split files
may use '-' or '_'. Only the part of the chosen config is needed.
"""


def _read_lines(name: str) -> list[str]:
  with open(os.path.join(_HERE, name), encoding='utf-8') as f:
    return [line.strip() for line in f if line.strip()]


LABEL_NAMES = tuple(_read_lines('label_names.txt'))


@dataclasses.dataclass(eq=False)
class PkuMmdConfig(tfds.core.BuilderConfig):
  """One PKU-MMD protocol: phase (1 or 2) and official split file (xsub / xview)."""

  part: int = 1
  protocol: str = 'xsub'


def _config(part: int, protocol: str) -> PkuMmdConfig:
  kind = 'cross-subject' if protocol == 'xsub' else 'cross-view'
  return PkuMmdConfig(
    name=f'part{part}_{protocol}',
    description=f'PKU-MMD phase {part}, official {kind} split (train = training videos, '
    'test = validation videos).',
    part=part,
    protocol=protocol,
  )


def parse_split_file(text: str, path: str = 'split file') -> tuple[list[str], list[str]]:
  """Returns (training ids, validation ids) from an official split file.

  The file has a header line containing 'train' followed by comma-separated
  video ids, then a header containing 'valid' (the official files spell it
  'Validataion') followed by the validation ids.
  """
  sections: dict[str, list[str]] = {}
  current = None
  for line in text.splitlines():
    low = line.strip().lower()
    if not low:
      continue
    if low.startswith('train'):
      current = sections.setdefault('train', [])
    elif low.startswith('valid') or low.startswith('test'):
      current = sections.setdefault('test', [])
    elif current is None:
      raise ValueError(f'{path}: ids before any "Training videos:" header')
    else:
      current.extend(t.strip() for t in line.split(',') if t.strip())
  if not sections.get('train') or not sections.get('test'):
    raise ValueError(f'{path}: needs a training and a validation list of video ids')
  overlap = set(sections['train']) & set(sections['test'])
  if overlap:
    raise ValueError(f'{path}: {sorted(overlap)[0]} is both a training and a validation video')
  return sections['train'], sections['test']


def parse_label_file(text: str) -> list[tuple[int, int, int]]:
  """Returns (label 0..50, start, end) per row; raises BadFileError with the line."""
  rows = []
  for line_no, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    fields = [f.strip() for f in line.split(',')]
    if len(fields) < 3:
      raise common.BadFileError(
        f'{len(fields)} fields, expected label,start,end,confidence', line_no
      )
    try:
      label, start, end = (int(f) for f in fields[:3])
    except ValueError:
      raise common.BadFileError(f'non-integer field in {line.strip()!r}', line_no) from None
    if not 1 <= label <= len(LABEL_NAMES):
      raise common.BadFileError(f'label {label} outside 1..{len(LABEL_NAMES)}', line_no)
    rows.append((label - 1, start, end))
  return rows


def parse_skeleton_file(text: str) -> np.ndarray:
  """Returns float32 [T, 2, 25, 3]; raises BadFileError naming the bad line."""
  lines = text.splitlines()
  while lines and not lines[-1].strip():
    lines.pop()
  frames = np.zeros((len(lines), NUM_FIELDS), np.float32)
  for i, line in enumerate(lines):
    fields = line.split()
    if len(fields) != NUM_FIELDS:
      raise common.BadFileError(f'{len(fields)} values, expected {NUM_FIELDS}', i + 1)
    try:
      frames[i] = np.asarray(fields, dtype=np.float32)
    except ValueError:
      raise common.BadFileError('non-numeric value', i + 1) from None
  if not np.isfinite(frames).all():
    bad = int(np.flatnonzero(~np.isfinite(frames).all(axis=1))[0])
    raise common.BadFileError('non-finite value', bad + 1)
  return frames.reshape(len(lines), NUM_PERSONS, NUM_JOINTS, NUM_CHANNELS)


def _find(root: str, candidates: tuple[str, ...], what: str) -> str:
  for name in candidates:
    path = os.path.join(root, name)
    if os.path.exists(path):
      return path
  raise FileNotFoundError(
    f'pku_mmd: no {what} in {root} (looked for {", ".join(candidates)}).\n{_INSTRUCTIONS}'
  )


class PkuMmd(tfds.core.GeneratorBasedBuilder):
  """PKU-MMD phase 1 and 2 action segments, 51 classes, ntu25 layout."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [_config(p, k) for p in (1, 2) for k in ('xsub', 'xview')]

  def __init__(self, *, max_bad_fraction: float = 0.05, **kwargs):
    """`max_bad_fraction`: share of listed videos that may be unreadable before failing."""
    self._max_bad_fraction = max_bad_fraction
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=_DESCRIPTION,
      features=common.skeleton_features(NUM_PERSONS, NUM_JOINTS, NUM_CHANNELS, LABEL_NAMES),
      homepage='https://www.icst.pku.edu.cn/struct/Projects/PKUMMD.html',
      citation=_read_citation(),
      metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS signals a missing manual dir this way
      raise FileNotFoundError(f'pku_mmd: {e}') from None
    root = _find(manual_dir, (f'part{cfg.part}',), f'part{cfg.part}/ folder')
    skeleton_dir = _find(root, SKELETON_DIRS, 'skeleton folder')
    label_dir = _find(root, LABEL_DIRS, 'label folder')
    split_path = _find(root, SPLIT_FILES[(cfg.part, cfg.protocol)], f'{cfg.protocol} split file')
    with open(split_path, encoding='utf-8') as f:
      train, test = parse_split_file(f.read(), split_path)
    self.info.metadata.update(
      {'part': cfg.part, 'protocol': cfg.protocol, 'split_file': os.path.basename(split_path)}
    )
    self.info.metadata['skips'] = {}
    return {
      'train': self._generate_examples(skeleton_dir, label_dir, train, 'train'),
      'test': self._generate_examples(skeleton_dir, label_dir, test, 'test'),
    }

  def _generate_examples(self, skeleton_dir: str, label_dir: str, videos, split: str):
    log = common.SkipLog(max_bad_fraction=self._max_bad_fraction)
    counts = {'segments_written': 0, 'segments_reversed': 0}
    for video in common.progress(sorted(set(videos)), self, split, 'videos'):
      log.seen += 1
      file_name = video + '.txt'
      try:
        segments = parse_label_file(_read(os.path.join(label_dir, file_name)))
        frames = parse_skeleton_file(_read(os.path.join(skeleton_dir, file_name)))
      except common.BadFileError as e:
        log.skip(file_name, e.reason, e.line)
        continue
      view = VIEWS.get(video.rsplit('-', 1)[-1], -1)
      for index, (label, start, end) in enumerate(segments):
        if start > end:
          start, end = end, start
          counts['segments_reversed'] += 1
        if start < 0 or end >= len(frames):
          log.exclude('segments_out_of_range')
          continue
        segment = frames[start : end + 1]
        if not segment.any():
          log.exclude('segments_without_body')
          continue
        key = f'{video}_{index:03d}'
        counts['segments_written'] += 1
        yield key, common.make_example(segment, label, key, view=view)
    self.info.metadata['skips'][split] = {**log.as_metadata(), **counts}
    logging.info(
      'pku_mmd/%s %s: %d videos, %d bad, %s, excluded %s',
      self.builder_config.name,
      split,
      log.seen,
      len(log.bad),
      counts,
      log.excluded,
    )
    log.check()
    if not counts['segments_written']:
      raise RuntimeError(
        f'pku_mmd/{self.builder_config.name}: the {split} split has no segments '
        f'({log.seen} videos, {len(log.bad)} bad, excluded {log.excluded})'
      )


def _read(path: str) -> str:
  try:
    with open(path, encoding='utf-8') as f:
      return f.read()
  except FileNotFoundError:
    raise common.BadFileError(f'missing {os.path.basename(os.path.dirname(path))}/ file') from None
  except UnicodeDecodeError as e:
    raise common.BadFileError(f'not a text file ({e.reason})') from None


def _read_citation() -> str:
  with open(os.path.join(_HERE, 'CITATIONS.bib'), encoding='utf-8') as f:
    return f.read()
