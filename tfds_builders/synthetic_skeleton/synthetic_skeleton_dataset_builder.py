"""synthetic_skeleton: procedural NTU-layout action clips, generated on first use.

Needs no download: `download_and_prepare()` synthesises every clip from joint
angle trajectories (see README.md). Writes array_record by default, so it never
needs TensorFlow.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow_datasets as tfds

from tfds_builders import common
from tfds_builders.synthetic_skeleton import actions, generator, kinematics

_HERE = Path(__file__).resolve().parent


def _label_names() -> list[str]:
  names = (_HERE / 'label_names.txt').read_text().splitlines()
  if names != [a.name for a in actions.ACTIONS]:
    raise ValueError('label_names.txt and actions.ACTIONS disagree; keep them in the same order')
  return names


LABEL_NAMES = _label_names()


@dataclasses.dataclass(eq=False)
class SyntheticSkeletonConfig(tfds.core.BuilderConfig):
  """A size of the dataset and its sensor. Subjects 1..train_subjects form `train`,
  the next test_subjects form `test`; every subject performs every action
  `replications` times, each filmed by one of `views` cameras. A bad value is one
  ValueError line."""

  train_subjects: int = 14
  test_subjects: int = 7
  replications: int = 3
  views: int = 3  # cameras 1..views (at -45, 0, +45 degrees)
  noise: tuple[float, float] = (0.003, 0.010)  # joint noise sigma range, metres
  drop: float = 0.3  # fraction of clips with tracking loss (a hand or foot held or missing)
  seed: int = 0

  def __post_init__(self):
    for field in ('train_subjects', 'test_subjects', 'replications'):
      value = getattr(self, field)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'synthetic_skeleton: {field} must be an integer >= 1, got {value!r}')
    if not isinstance(self.views, int) or not 1 <= self.views <= generator.NUM_CAMERAS:
      raise ValueError(
        f'synthetic_skeleton: views must be 1-{generator.NUM_CAMERAS}, got {self.views!r}'
      )
    if not isinstance(self.seed, int) or self.seed < 0:
      raise ValueError(f'synthetic_skeleton: seed must be an integer >= 0, got {self.seed!r}')
    try:
      self.sensor()
    except ValueError as e:
      raise ValueError(f'synthetic_skeleton: {e}') from None

  def sensor(self) -> generator.Sensor:
    return generator.Sensor(noise=tuple(self.noise), drop=self.drop)

  def subjects(self, split: str) -> list[int]:
    first = 1 if split == 'train' else self.train_subjects + 1
    count = self.train_subjects if split == 'train' else self.test_subjects
    return list(range(first, first + count))

  def size(self, split: str) -> int:
    return len(self.subjects(split)) * len(actions.ACTIONS) * self.replications


def _config(name: str, train_subjects: int, test_subjects: int, replications: int, what: str):
  config = SyntheticSkeletonConfig(
    name=name,
    train_subjects=train_subjects,
    test_subjects=test_subjects,
    replications=replications,
  )
  config.description = (
    f'{what}: {config.size("train")} train clips (subjects 1-{train_subjects}), '
    f'{config.size("test")} test clips (subjects {train_subjects + 1}-'
    f'{train_subjects + test_subjects}); {len(LABEL_NAMES)} actions x {replications} '
    'replications per subject.'
  )
  return config


def camera_for(
  subject: int, label: int, replication: int, views: int = generator.NUM_CAMERAS
) -> int:
  """Camera 1..views, cycling so each subject's replications of an action see them all."""
  return 1 + (subject + label + replication) % views


def file_name(
  subject: int, label: int, replication: int, views: int = generator.NUM_CAMERAS
) -> str:
  """NTU-style name; S000 because there are no setups."""
  camera = camera_for(subject, label, replication, views)
  return f'S000C{camera:03d}P{subject:03d}R{replication:03d}A{label + 1:03d}'


class SyntheticSkeleton(tfds.core.GeneratorBasedBuilder):
  """Synthetic 3D skeleton actions in the NTU RGB+D 25-joint layout."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
    '1.0.0': 'First release: 14 actions, forward kinematics, three cameras.',
    '2.0.0': (
      '14 new actions that differ in motion, not in a static pose: the same strokes in '
      'either order (time reverses), twice at double pace, or one stroke at an uneven '
      'pace, all from and back to rest. Tracking loss (held or missing hands and feet), '
      'tempo that varies between strokes, configurable views, noise and tracking loss. '
      'No two-person action.'
    ),
  }
  BUILDER_CONFIGS = [
    _config('default', 14, 7, 3, 'Demo size'),
    _config('tiny', 4, 2, 1, 'Test size'),
  ]
  DEFAULT_CONFIG_NAME = 'default'

  def __init__(self, *, file_format=None, **kwargs):
    # array_record is the one format TFDS writes without TensorFlow.
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=common.skeleton_features(
        num_persons=2,
        num_joints=kinematics.LAYOUT.num_joints,
        num_channels=kinematics.LAYOUT.num_channels,
        label_names=LABEL_NAMES,
      ),
      metadata=tfds.core.MetadataDict(
        layout=kinematics.LAYOUT.name,
        fps=generator.FPS,
        seed=config.seed,
        train_subjects=config.subjects('train'),
        test_subjects=config.subjects('test'),
        replications=config.replications,
        cameras=config.views,
        noise=list(config.noise),
        drop=config.drop,
        reverse_pairs=[list(p) for p in actions.REVERSE_PAIRS],
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in ('train', 'test')}

  def _generate_examples(self, split: str):
    config = self.builder_config
    for subject in common.progress(config.subjects(split), self, split, 'subjects'):
      for label in range(len(LABEL_NAMES)):
        for replication in range(1, config.replications + 1):
          camera = camera_for(subject, label, replication, config.views)
          skeleton = generator.synthesize(
            config.seed, subject, label, replication, camera, config.sensor()
          )
          name = file_name(subject, label, replication, config.views)
          yield (
            name,
            common.make_example(
              skeleton,
              label,
              name,
              subject=subject,
              view=camera,
              setup=-1,
              replication=replication,
            ),
          )
