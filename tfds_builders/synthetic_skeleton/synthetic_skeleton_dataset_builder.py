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
  """A size of the dataset. Subjects 1..train_subjects form `train`, the next
  test_subjects form `test`; every subject performs every action
  `replications` times."""

  train_subjects: int = 14
  test_subjects: int = 7
  replications: int = 3
  seed: int = 0

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


def camera_for(subject: int, label: int, replication: int) -> int:
  """Camera 1-3, cycling so each subject's replications of an action see all three."""
  return 1 + (subject + label + replication) % generator.NUM_CAMERAS


def file_name(subject: int, label: int, replication: int) -> str:
  """NTU-style name; S000 because there are no setups."""
  camera = camera_for(subject, label, replication)
  return f'S000C{camera:03d}P{subject:03d}R{replication:03d}A{label + 1:03d}'


class SyntheticSkeleton(tfds.core.GeneratorBasedBuilder):
  """Synthetic 3D skeleton actions in the NTU RGB+D 25-joint layout."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release: 14 actions, forward kinematics, three cameras.'}
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
        cameras=generator.NUM_CAMERAS,
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
          camera = camera_for(subject, label, replication)
          skeleton = generator.synthesize(config.seed, subject, label, replication, camera)
          name = file_name(subject, label, replication)
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
