"""NTU RGB+D 60 / 120 skeletons: a TFDS builder writing array_record, no TensorFlow.

Each example is one `.skeleton` file in the common skeljax schema
(`tfds_builders/common.py`): `skeleton` float32 [T, 2, 25, 3] raw camera-space
xyz (metres, not centred), label = action - 1, subject = performer P, view =
camera C, setup = S, replication = R, file_name = the sample name.

Preprocessing (version 1.0.0, see README.md): the official missing-skeleton
samples are excluded; each file is parsed whole with NumPy
(`skeleton_file.parse_skeleton`); bodies are mapped to 2 person slots by
`skeleton_file.BodySelection`; frames without any kept body are removed;
files with no frame left are excluded. Counts of everything skipped or
excluded are stored in the dataset metadata under 'build'.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import zipfile
from pathlib import Path

import tensorflow_datasets as tfds

from tfds_builders import common
from tfds_builders.ntu_rgbd import skeleton_file

_DIR = Path(__file__).resolve().parent
FOLDER = 'nturgb+d_skeletons'
ZIP_60 = 'nturgbd_skeletons_s001_to_s017.zip'
ZIP_120 = 'nturgbd_skeletons_s018_to_s032.zip'
SAMPLE_NAME = re.compile(r'S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})')

XSUB_TRAIN_60 = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
XSUB_TRAIN_120 = XSUB_TRAIN_60 + (
  45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
  89, 91, 92, 93, 94, 95, 97, 98, 100, 103,
)  # fmt: skip
XVIEW_TRAIN_CAMERAS = (2, 3)

# variant -> (number of actions, last setup, official missing-skeleton list)
VARIANTS = {
  'ntu60': (60, 17, 'missing_skeletons_ntu60.txt'),
  'ntu120': (120, 32, 'missing_skeletons_ntu120.txt'),
}

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Request the NTU RGB+D skeletons at https://rose1.ntu.edu.sg/dataset/actionRecognition/
(registration and a research-only agreement), then put the archives, unextracted,
into the manual directory (<data_dir>/downloads/manual/ unless you pass manual_dir):
  {ZIP_60}   NTU RGB+D 60 (needed by every config)
  {ZIP_120}   the NTU120 extension (needed by ntu120_*)
Extracted files work too: <manual_dir>/{FOLDER}/SsssCcccPpppRrrrAaaa.skeleton
(both archives extract into that folder), or the .skeleton files directly in <manual_dir>/.
"""


@dataclasses.dataclass(frozen=True)
class Sample:
  """One raw file: its name fields and where its bytes are."""

  name: str  # SsssCcccPpppRrrrAaaa
  setup: int
  camera: int
  subject: int
  replication: int
  action: int
  path: Path  # the .skeleton file, or the zip archive holding it
  member: str | None = None  # the member name inside `path` when it is a zip

  @property
  def file_name(self) -> str:
    return f'{self.path.name}:{self.member}' if self.member else self.path.name


def parse_sample_name(name: str, path: Path, member: str | None = None) -> Sample | None:
  match = SAMPLE_NAME.fullmatch(name)
  if match is None:
    return None
  setup, camera, subject, replication, action = map(int, match.groups())
  return Sample(name, setup, camera, subject, replication, action, path, member)


def find_samples(manual_dir: Path) -> dict[str, Sample]:
  """Every `.skeleton` file in the official zips, the extracted folder or `manual_dir`.

  A sample found in several places is read from the first: zips, then folders.
  """
  found: dict[str, Sample] = {}

  def add(name: str, path: Path, member: str | None = None) -> None:
    sample = parse_sample_name(name, path, member)
    if sample is None:
      logging.warning('ignoring %s: not an NTU sample name', member or path)
    elif name not in found:
      found[name] = sample

  for zip_name in (ZIP_60, ZIP_120):
    if (manual_dir / zip_name).is_file():
      with zipfile.ZipFile(manual_dir / zip_name) as archive:
        for member in archive.namelist():
          if member.endswith('.skeleton'):
            add(Path(member).stem, manual_dir / zip_name, member)
  for folder in (manual_dir / FOLDER, manual_dir):
    if folder.is_dir():
      for path in folder.glob('*.skeleton'):
        add(path.stem, path)
  return dict(sorted(found.items()))


def is_train(sample: Sample, variant: str, protocol: str) -> bool:
  """The standard split of each protocol."""
  if protocol == 'xsub':
    return sample.subject in (XSUB_TRAIN_60 if variant == 'ntu60' else XSUB_TRAIN_120)
  if protocol == 'xview':
    return sample.camera in XVIEW_TRAIN_CAMERAS
  if protocol == 'xset':
    return sample.setup % 2 == 0
  raise ValueError(f'unknown NTU protocol {protocol!r}; use xsub, xview or xset')


def read_list(file_name: str) -> list[str]:
  """Non-comment, non-blank lines of a text file next to this module."""
  lines = (_DIR / file_name).read_text().splitlines()
  return [s.strip() for s in lines if s.strip() and not s.startswith('#')]


@dataclasses.dataclass
class NtuConfig(tfds.core.BuilderConfig):
  """A protocol: which NTU release and which split rule.

  Attributes:
    variant: 'ntu60' (actions 1-60, setups 1-17) or 'ntu120' (1-120, 1-32).
    protocol: 'xsub' (training subjects), 'xview' (cameras 2, 3 train) or
      'xset' (even setups train).
    max_bad_fraction: the build fails when more than this fraction of the
      parsed files of a split is malformed.
  """

  variant: str = 'ntu60'
  protocol: str = 'xsub'
  max_bad_fraction: float = 0.05


class NtuRgbd(tfds.core.GeneratorBasedBuilder):
  """NTU RGB+D 60 and 120 3D skeletons (Kinect v2, 25 joints, up to 2 people)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release; body selection v1 (README.md).'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
    NtuConfig(name='ntu60_xsub', variant='ntu60', protocol='xsub', description='NTU60 X-Sub'),
    NtuConfig(name='ntu60_xview', variant='ntu60', protocol='xview', description='NTU60 X-View'),
    NtuConfig(name='ntu120_xsub', variant='ntu120', protocol='xsub', description='NTU120 X-Sub'),
    NtuConfig(name='ntu120_xset', variant='ntu120', protocol='xset', description='NTU120 X-Set'),
  ]
  BODY_SELECTION = skeleton_file.BodySelection(max_bodies=2)

  def __init__(self, *, max_bad_fraction: float | None = None, **kwargs):
    """`max_bad_fraction`, when given, overrides the config's."""
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)
    self._max_bad_fraction = max_bad_fraction

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__.splitlines()[0],
      features=common.skeleton_features(2, skeleton_file.NUM_JOINTS, 3, self.label_names()),
      homepage='https://rose1.ntu.edu.sg/dataset/actionRecognition/',
      citation=(_DIR / 'CITATIONS.bib').read_text(),
      metadata=tfds.core.MetadataDict(),
    )

  def label_names(self) -> list[str]:
    return read_list('label_names_ntu120.txt')[: VARIANTS[self.builder_config.variant][0]]

  def _manual_dir(self, dl_manager) -> Path:
    try:
      manual_dir = Path(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS's way of saying the directory is missing or empty
      raise FileNotFoundError(f'{self.name}: NTU RGB+D skeletons not found. {e}') from None
    return manual_dir

  def _split_generators(self, dl_manager):
    config = self.builder_config
    n_actions, last_setup, missing_list = VARIANTS[config.variant]
    manual_dir = self._manual_dir(dl_manager)
    samples = [
      s
      for s in find_samples(manual_dir).values()
      if s.setup <= last_setup and s.action <= n_actions
    ]
    if not samples:
      raise FileNotFoundError(
        f'{self.name}: no NTU .skeleton files in {manual_dir}.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    if config.variant == 'ntu120' and not any(s.setup > 17 for s in samples):
      raise FileNotFoundError(
        f'{self.name}/{config.name}: no setup 18-32 files in {manual_dir}: add {ZIP_120}.\n'
        f'{MANUAL_DOWNLOAD_INSTRUCTIONS}'
      )
    missing = frozenset(read_list(missing_list))
    self.info.metadata['preprocessing'] = {
      'version': str(self.VERSION),
      'body_selection': self.BODY_SELECTION.as_metadata(),
      'missing_skeleton_list': missing_list,
      'missing_skeleton_list_size': len(missing),
    }
    self.info.metadata['build'] = {}
    train = [s for s in samples if is_train(s, config.variant, config.protocol)]
    test = [s for s in samples if not is_train(s, config.variant, config.protocol)]
    return {
      'train': self._generate_examples(train, missing, 'train'),
      'test': self._generate_examples(test, missing, 'test'),
    }

  def _generate_examples(self, samples: list[Sample], missing: frozenset, split: str):
    """Yields (sample name, example) per file, streaming; one zip is opened once."""
    bad_fraction = self._max_bad_fraction
    if bad_fraction is None:
      bad_fraction = self.builder_config.max_bad_fraction
    log = common.SkipLog(max_bad_fraction=bad_fraction)
    with contextlib.ExitStack() as stack:
      archives = {}
      for sample in common.progress(samples, self, split):
        if sample.name in missing:
          log.exclude('missing_skeleton_list')
          continue
        log.seen += 1
        if sample.member is None:
          data = sample.path.read_bytes()
        else:
          if sample.path not in archives:
            archives[sample.path] = stack.enter_context(zipfile.ZipFile(sample.path))
          data = archives[sample.path].read(sample.member)
        try:
          records = skeleton_file.parse_skeleton(data)
        except common.BadFileError as e:
          log.skip(sample.file_name, e.reason, e.line)
          continue
        if records.n_frames == 0:
          log.exclude('zero_frames')
          continue
        skeleton = skeleton_file.select_bodies(records, self.BODY_SELECTION)
        if skeleton.shape[0] == 0:
          log.exclude('no_bodies')
          continue
        yield (
          sample.name,
          common.make_example(
            skeleton,
            sample.action - 1,
            sample.name,
            subject=sample.subject,
            view=sample.camera,
            setup=sample.setup,
            replication=sample.replication,
          ),
        )
    self.info.metadata['build'][split] = log.as_metadata()
    logging.info(
      '%s %s: %d files read, %d bad, excluded %s',
      self.builder_config.name,
      split,
      log.seen,
      len(log.bad),
      log.excluded,
    )
    log.check()
