"""kinetics_skeleton: the ST-GCN Kinetics-400 OpenPose skeletons as a TFDS dataset.

ST-GCN (Yan et al., 2018) released OpenPose COCO-18 poses for Kinetics-400 as one
JSON file per video plus a label index per split. Each video file holds
`{"data": [{"frame_index": i, "skeleton": [{"pose": [x0, y0, ..., x17, y17],
"score": [s0, ..., s17]}, ...]}, ...], "label": str, "label_index": int}`.

Choices (deterministic, version 1.0.0), following ST-GCN's Kinetics feeder:
  - Channels are (x, y, confidence); x and y stay as stored (normalised to
    [0, 1] in the release) and are not centred.
  - A frame goes to slot `frame_index` (native index, up to 300 slots); frames
    with an index outside 0..299 are dropped and counted (`frames_dropped`).
    Slots without a detection are zeros; the sequence ends at the last slot
    with a detection, leading empty slots are kept so timing is native.
  - Per frame, the first 5 listed detections are candidates (`candidates_ignored`
    counts the rest) and the 2 with the highest summed joint confidence in that
    frame are kept, ties broken by listing order. OpenPose does not track people
    over time, so person slots are ranked per frame, as ST-GCN does.
  - Videos flagged `has_skeleton: false` are excluded (`no_skeleton`); videos
    flagged true whose frames hold no detection are excluded (`empty`).
  - A file that is not valid JSON, has a pose that is not 36 numbers or a score
    that is not 18, or whose label disagrees with the label index is skipped
    (file, reason in the metadata); more than `max_bad_fraction` bad fails.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import common

NUM_PERSONS, NUM_JOINTS, NUM_CHANNELS = 2, 18, 3
MAX_FRAMES = 300
CANDIDATES = 5  # detections per frame considered before ranking (ST-GCN's num_person_in)
SPLITS = {'train': 'train', 'test': 'val'}  # TFDS split -> release file infix

_HERE = os.path.dirname(os.path.abspath(__file__))

_DESCRIPTION = (
  'Kinetics-400 skeletons from the ST-GCN release: OpenPose COCO-18 (x, y, confidence), '
  'up to 300 frames and the 2 most confident people per frame; 400 classes.'
)

_INSTRUCTIONS = """\
Download the Kinetics-skeleton release of ST-GCN (kinetics-skeleton.zip, linked from
https://github.com/yysijie/st-gcn) and extract it into the manual dir (default
<data_dir>/downloads/manual/), so that it holds

  <manual_dir>/kinetics_train/<video_id>.json ...
  <manual_dir>/kinetics_val/<video_id>.json ...
  <manual_dir>/kinetics_train_label.json
  <manual_dir>/kinetics_val_label.json

(a single extracted kinetics-skeleton/ folder inside the manual dir also works).
The train files become the `train` split and the val files the `test` split.
"""


def _read_lines(name: str) -> list[str]:
  with open(os.path.join(_HERE, name), encoding='utf-8') as f:
    return [line.strip() for line in f if line.strip()]


LABEL_NAMES = tuple(_read_lines('label_names.txt'))


@dataclasses.dataclass(eq=False)
class KineticsSkeletonConfig(tfds.core.BuilderConfig):
  """The single ST-GCN protocol: release train split vs release val split."""


def _numbers(values, expected: int, what: str) -> np.ndarray:
  if not isinstance(values, list) or len(values) != expected:
    n = len(values) if isinstance(values, list) else type(values).__name__
    raise common.BadFileError(f'{what} has {n} values, expected {expected}')
  try:
    return np.asarray(values, dtype=np.float32)
  except (TypeError, ValueError):
    raise common.BadFileError(f'{what} has a non-numeric value') from None


def parse_video(video: dict, counts: dict[str, int]) -> np.ndarray:
  """One video JSON object -> float32 [T, 2, 18, 3]; T = 0 when it holds no detection.

  Adds to `counts['frames_dropped']` and `counts['candidates_ignored']`; raises
  BadFileError for a malformed entry.
  """
  frames = video.get('data') if isinstance(video, dict) else None
  if not isinstance(frames, list):
    raise common.BadFileError('no "data" list')
  slots = np.zeros((MAX_FRAMES, CANDIDATES, NUM_JOINTS, NUM_CHANNELS), np.float32)
  for n, frame in enumerate(frames):
    if not isinstance(frame, dict):
      raise common.BadFileError(f'data[{n}] is not an object')
    t, people = frame.get('frame_index'), frame.get('skeleton')
    if not isinstance(t, int) or isinstance(t, bool) or not isinstance(people, list):
      raise common.BadFileError(f'data[{n}] needs an integer frame_index and a skeleton list')
    if not 0 <= t < MAX_FRAMES:
      counts['frames_dropped'] += 1
      continue
    counts['candidates_ignored'] += max(0, len(people) - CANDIDATES)
    for m, person in enumerate(people[:CANDIDATES]):
      if not isinstance(person, dict):
        raise common.BadFileError(f'frame {t} person {m} is not an object')
      pose = _numbers(person.get('pose'), 2 * NUM_JOINTS, f'frame {t} person {m} pose')
      score = _numbers(person.get('score'), NUM_JOINTS, f'frame {t} person {m} score')
      slots[t, m, :, 0], slots[t, m, :, 1], slots[t, m, :, 2] = pose[0::2], pose[1::2], score
  if not np.isfinite(slots).all():
    t = int(np.flatnonzero(~np.isfinite(slots).all(axis=(1, 2, 3)))[0])
    raise common.BadFileError(f'frame {t} has a non-finite value')
  # Rank the candidates of every frame by summed confidence; a stable sort keeps
  # the listing order among equals so the result does not depend on the sorter.
  rank = np.argsort(-slots[..., 2].sum(axis=-1), axis=1, kind='stable')[:, :NUM_PERSONS]
  kept = np.take_along_axis(slots, rank[:, :, None, None], axis=1)
  present = np.flatnonzero(kept.any(axis=(1, 2, 3)))
  return kept[: present[-1] + 1] if present.size else kept[:0]


def _find_root(manual_dir: str) -> str:
  for root in (manual_dir, os.path.join(manual_dir, 'kinetics-skeleton')):
    if os.path.isfile(os.path.join(root, 'kinetics_train_label.json')):
      return root
  raise FileNotFoundError(
    f'kinetics_skeleton: no kinetics_train_label.json in {manual_dir}.\n{_INSTRUCTIONS}'
  )


def read_label_index(path: str) -> dict[str, dict]:
  """The release's label index {video_id: {has_skeleton, label, label_index}}."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'kinetics_skeleton: {path} not found.\n{_INSTRUCTIONS}')
  try:
    with open(path, encoding='utf-8') as f:
      index = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: not valid JSON ({e})') from None
  if not isinstance(index, dict) or not all(isinstance(v, dict) for v in index.values()):
    raise ValueError(f'{path}: expected an object {{video_id: {{"label_index": ...}}}}')
  return index


def _check_label(entry: dict, video: dict) -> int:
  label_index, label = entry.get('label_index'), entry.get('label')
  if not isinstance(label_index, int) or not 0 <= label_index < len(LABEL_NAMES):
    raise common.BadFileError(f'label_index {label_index!r} outside 0..{len(LABEL_NAMES) - 1}')
  if label is not None and label != LABEL_NAMES[label_index]:
    raise common.BadFileError(
      f'label {label!r} is not class {label_index} {LABEL_NAMES[label_index]!r}'
    )
  if 'label_index' in video and video['label_index'] != label_index:
    raise common.BadFileError(
      f'label_index {video["label_index"]} differs from the label index file ({label_index})'
    )
  return label_index


class KineticsSkeleton(tfds.core.GeneratorBasedBuilder):
  """Kinetics-400 OpenPose skeletons (ST-GCN release), openpose18 layout."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    KineticsSkeletonConfig(
      name='default', description='train = kinetics_train/, test = kinetics_val/.'
    )
  ]

  def __init__(self, *, max_bad_fraction: float = 0.05, **kwargs):
    """`max_bad_fraction`: share of video files that may be unreadable before failing."""
    self._max_bad_fraction = max_bad_fraction
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=_DESCRIPTION,
      features=common.skeleton_features(NUM_PERSONS, NUM_JOINTS, NUM_CHANNELS, LABEL_NAMES),
      homepage='https://github.com/yysijie/st-gcn',
      citation=_read_citation(),
      metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS signals a missing manual dir this way
      raise FileNotFoundError(f'kinetics_skeleton: {e}') from None
    root = _find_root(manual_dir)
    self.info.metadata['skips'] = {}
    generators = {}
    for split, infix in SPLITS.items():
      index = read_label_index(os.path.join(root, f'kinetics_{infix}_label.json'))
      folder = os.path.join(root, f'kinetics_{infix}')
      if not os.path.isdir(folder):
        raise FileNotFoundError(f'kinetics_skeleton: {folder}/ not found.\n{_INSTRUCTIONS}')
      generators[split] = self._generate_examples(folder, index, split)
    return generators

  def _generate_examples(self, folder: str, index: dict[str, dict], split: str):
    log = common.SkipLog(max_bad_fraction=self._max_bad_fraction)
    counts = {'videos_written': 0, 'frames_dropped': 0, 'candidates_ignored': 0}
    for video_id in common.progress(sorted(index), self, split, 'videos'):
      entry = index[video_id]
      if not entry.get('has_skeleton', True):
        log.exclude('no_skeleton')
        continue
      log.seen += 1
      file_name = video_id + '.json'
      try:
        video = _load_json(os.path.join(folder, file_name))
        label = _check_label(entry, video)
        seq = parse_video(video, counts)
      except common.BadFileError as e:
        log.skip(file_name, e.reason, e.line)
        continue
      if not len(seq):
        log.exclude('empty')
        continue
      counts['videos_written'] += 1
      yield video_id, common.make_example(seq, label, video_id)
    self.info.metadata['skips'][split] = {**log.as_metadata(), **counts}
    logging.info(
      'kinetics_skeleton %s: %d files, %d bad, %s, excluded %s',
      split,
      log.seen,
      len(log.bad),
      counts,
      log.excluded,
    )
    log.check()
    if not counts['videos_written']:
      raise RuntimeError(
        f'kinetics_skeleton: the {split} split has no videos '
        f'({log.seen} files, {len(log.bad)} bad, excluded {log.excluded})'
      )


def _load_json(path: str):
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    raise common.BadFileError('file not found') from None
  except json.JSONDecodeError as e:
    raise common.BadFileError(f'invalid JSON: {e.msg}', e.lineno) from None
  except UnicodeDecodeError as e:
    raise common.BadFileError(f'not a text file ({e.reason})') from None


def _read_citation() -> str:
  with open(os.path.join(_HERE, 'CITATIONS.bib'), encoding='utf-8') as f:
    return f.read()
