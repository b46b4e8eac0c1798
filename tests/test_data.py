"""Builders behave like TFDS builders; own data gets its sizes from the data, bad data one line.

- importing `tfds_builders.<name>` registers the builder, so `tfds.builder('<name>/<config>')`
  works (a fresh interpreter per builder: an earlier import elsewhere cannot help it);
- `skeljax.data.DATASETS` is the registry, and an unknown name is one line;
- `python -m tfds_builders.build` prepares without TensorFlow and leaves nothing on failure;
- fields left at 0 are derived from the prepared training split, checked end to end on
  NW-UCLA converted into the skeleton_folder format.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from skeljax import config as config_lib
from skeljax import data

from .conftest import REPO, shared_data

DUMMY_FOLDER = REPO / 'tfds_builders' / 'skeleton_folder' / 'dummy_data'
BUILDER_CONFIGS = {
  'kinetics_skeleton': ['default'],
  'ntu_rgbd': ['ntu60_xsub', 'ntu60_xview', 'ntu120_xsub', 'ntu120_xset'],
  'nw_ucla': ['xview', 'xsub'],
  'pku_mmd': ['part1_xsub', 'part1_xview', 'part2_xsub', 'part2_xview'],
  'skeleton_folder': ['ntu25', 'kinect20', 'openpose18'],
  'synthetic_skeleton': ['default', 'tiny'],
}


def _python(*args, timeout=300):
  return subprocess.run(
    [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
  )


def _data_cfg(tmp_path, **fields) -> ml_collections.ConfigDict:
  cfg = config_lib.base_config().data
  cfg.data_dir = str(tmp_path / 'data')
  cfg.update(fields)
  return cfg


def _folder_config(manual_dir, data_dir, layout='kinect20'):
  c = config_lib.load_config(REPO / 'configs' / 'folder.py')
  c.data.manual_dir = str(manual_dir)
  c.data.data_dir = str(data_dir)
  c.data.layout = layout
  return c


# ------------------------------------------------------------- the registry ---


def test_registry_lists_every_builder_package():
  packages = {p.parent.name for p in (REPO / 'tfds_builders').glob('*/__init__.py')}
  assert set(data.DATASETS) == packages == set(BUILDER_CONFIGS)


@pytest.mark.parametrize('name', sorted(BUILDER_CONFIGS))
def test_importing_the_package_registers_the_builder(name, tmp_path):
  code = f"""
import sys
import tensorflow_datasets as tfds
try:
  tfds.builder_cls({name!r})
  sys.exit('registered before the import')
except tfds.core.registered.DatasetNotFoundError:
  pass
import tfds_builders.{name}
for config in {BUILDER_CONFIGS[name]!r}:
  builder = tfds.builder(f'{name}/{{config}}', data_dir={str(tmp_path)!r})
  assert builder.builder_config.name == config, builder.builder_config
  assert 'label' in builder.info.features and 'skeleton' in builder.info.features
print(sorted(tfds.builder_cls({name!r}).builder_configs))
assert 'tensorflow' not in sys.modules
"""
  r = _python('-c', code)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.strip() == str(sorted(BUILDER_CONFIGS[name]))


def test_unknown_dataset_is_one_line_with_the_known_names(tmp_path):
  with pytest.raises(data.DataError) as e:
    data.get_builder(_data_cfg(tmp_path, name='ntu_rgb'))
  known = ', '.join(sorted(BUILDER_CONFIGS))
  assert str(e.value) == f"unknown dataset 'ntu_rgb'; known datasets: {known}"


def test_unknown_config_names_the_configs(tmp_path):
  with pytest.raises(data.DataError, match=r"nw_ucla has no config 'xveiw'.*'xview', 'xsub'"):
    data.get_builder(_data_cfg(tmp_path, name='nw_ucla', config='xveiw'))


def test_skeleton_folder_without_manual_dir_is_one_line(tmp_path):
  with pytest.raises(data.DataError, match='set --config.data.manual_dir=DIR'):
    data.prepare(_data_cfg(tmp_path, name='skeleton_folder', config='kinect20'))


@pytest.mark.parametrize(
  'flags, needle',
  [
    (['--config=configs/demo.py', '--config.data.name=nope'], "unknown dataset 'nope'"),
    (['--config=configs/folder.py'], 'set --config.data.manual_dir=DIR'),
  ],
)
def test_main_exits_2_with_one_line(flags, needle, tmp_path):
  r = _python('-m', 'skeljax.main', *flags, f'--workdir={tmp_path / "run"}', timeout=120)
  assert r.returncode == 2, r.stderr[-2000:]
  (line,) = [x for x in r.stderr.splitlines() if x.startswith('skeljax: error:')]
  assert needle in line and 'Traceback' not in r.stderr


# ------------------------------------------------------------- the build CLI ---


def test_build_cli_prepares_without_tensorflow(tmp_path, capsys):
  from tfds_builders import build

  manual = REPO / 'tfds_builders' / 'nw_ucla' / 'dummy_data'
  argv = ['nw_ucla/xview', f'--data_dir={tmp_path}', f'--manual_dir={manual}']
  assert build.main(argv) == 0
  assert 'tensorflow' not in sys.modules
  out = capsys.readouterr().out
  assert f'nw_ucla/xview: train 4, test 2 sequences in {tmp_path}/nw_ucla/xview/1.0.0' in out
  assert (tmp_path / 'nw_ucla' / 'xview' / '1.0.0' / 'dataset_info.json').is_file()
  assert build.main(argv) == 0  # already prepared: says what is there
  assert 'Preparing' not in capsys.readouterr().out


def test_build_cli_as_a_module(tmp_path):
  args = [f'--data_dir={tmp_path}', f'--manual_dir={DUMMY_FOLDER}']
  r = _python('-m', 'tfds_builders.build', 'skeleton_folder/kinect20', *args)
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'skeleton_folder/kinect20: train 3, test 2 sequences' in r.stdout


def test_build_cli_failure_is_one_line_and_leaves_nothing(tmp_path):
  folder = Path(shutil.copytree(DUMMY_FOLDER, tmp_path / 'own'))
  np.save(folder / 'sequences' / 'a04_walk.npy', np.zeros((5, 25, 3), np.float32))
  out = tmp_path / 'data'
  r = _python('-m', 'tfds_builders.build', 'skeleton_folder/kinect20', f'--data_dir={out}',
              f'--manual_dir={folder}')  # fmt: skip
  assert r.returncode == 2, r.stderr[-2000:]
  (line,) = [x for x in r.stderr.splitlines() if x.startswith('tfds_builders.build: error:')]
  assert 'a04_walk.npy' in line and 'kinect20 needs 20 x 3' in line and 'Traceback' not in r.stderr
  # TFDS built into an incomplete.* folder and removed it: nothing reads as prepared.
  assert not list(out.rglob('dataset_info.json')) and not list(out.rglob('*incomplete*'))


# --------------------------------------------------------- own data folder ---


def test_edited_folder_is_prepared_again(tmp_path, capsys):
  folder = Path(shutil.copytree(DUMMY_FOLDER, tmp_path / 'own'))
  cfg = _data_cfg(tmp_path, name='skeleton_folder', config='kinect20', manual_dir=str(folder))
  builder = data.prepare(cfg)
  assert builder.info.features['label'].names == ['sit', 'walk', 'wave']
  assert data.prepare(cfg).info.splits['train'].num_examples == 3
  assert 'changed since' not in capsys.readouterr().out
  (folder / 'label_names.txt').write_text('sitting\nwalking\nwaving\n')
  builder = data.prepare(cfg)
  assert 'changed since it was prepared' in capsys.readouterr().out
  assert builder.info.features['label'].names == ['sitting', 'walking', 'waving']


def _names_folder(tmp_path, *rows) -> Path:
  """The dummy folder with class names in its label column and no label_names.txt."""
  folder = Path(shutil.copytree(DUMMY_FOLDER, tmp_path / 'own'))
  (folder / 'label_names.txt').unlink()
  (folder / 'index.csv').write_text('name,label,split\n' + '\n'.join(rows) + '\n')
  return folder


NAME_ROWS = ('a01_walk,walk,train', 'a02_wave,wave,train', 'a03_sit,sitDown,train',
             'a04_walk,walk,test', 'a05_wave,wave,test')  # fmt: skip


def test_class_name_mapping_is_printed_once(tmp_path, capsys):
  folder = _names_folder(tmp_path, *NAME_ROWS)
  cfg = _data_cfg(tmp_path, name='skeleton_folder', config='kinect20', manual_dir=str(folder))
  builder = data.prepare(cfg)
  assert builder.info.features['label'].names == ['sitDown', 'walk', 'wave']
  lines = capsys.readouterr().out.splitlines()
  mapping = (
    'skeleton_folder/kinect20: class ids of the 3 label names (sorted, numbers by value): '
    'sitDown=0, walk=1, wave=2'
  )
  assert lines.count(mapping) == 1
  data.prepare(cfg)  # prepared: the mapping is in its metadata, not printed again
  assert 'class ids' not in capsys.readouterr().out
  assert data.label_mapping(builder, shown=2).endswith(
    f'sitDown=0, walk=1, ... (all 3 in {builder.data_dir}/metadata.json)'
  )


def test_main_exits_2_with_one_line_per_label_error(tmp_path):
  folder = _names_folder(tmp_path, 'a01_walk,walk,train', 'a02_wave,2,train')
  r = _python('-m', 'skeljax.main', '--config=configs/folder.py', f'--workdir={tmp_path / "run"}',
              f'--config.data.manual_dir={folder}', f'--config.data.data_dir={tmp_path / "data"}',
              '--config.data.layout=kinect20', timeout=120)  # fmt: skip
  assert r.returncode == 2, r.stderr[-2000:]
  (line,) = [x for x in r.stderr.splitlines() if x.startswith('skeljax: error:')]
  assert "index.csv:3: label '2' is a class id, but line 2 has the class name 'walk'" in line
  assert 'Traceback' not in r.stderr


def test_bad_folder_data_is_one_data_error(tmp_path):
  folder = Path(shutil.copytree(DUMMY_FOLDER, tmp_path / 'own'))
  (folder / 'sequences' / 'a02_wave.npy').unlink()
  cfg = _data_cfg(tmp_path, name='skeleton_folder', config='kinect20', manual_dir=str(folder))
  with pytest.raises(data.DataError, match=r'index\.csv:3: sequences/a02_wave\.npy does not'):
    data.prepare(cfg)


def test_folder_config_follows_the_layout_and_leaves_sizes_to_the_data():
  c = _folder_config('/x', '/y', layout='openpose18')
  assert c.data.config == 'openpose18'
  assert (c.data.persons, c.data.frames, c.data.max_frames, c.mcc.queue_size) == (0, 0, 0, 0)
  assert c.pretrain.epochs == 0
  config_lib.validate(c)


# --------------------------------------------------------- derived fields ---


@pytest.mark.parametrize(
  'train_size, batch, expected',
  [
    (1020, 64, 512),  # NW-UCLA x-view, as configs/nw_ucla.py sets it
    (600, 64, 512),  # the demo, as configs/demo.py sets it
    (40091, 128, 32768),  # NTU-60 x-sub: the peers' queue, the cap
    (512, 64, 256),  # strictly below the set: no query meets its own key
    (1020, 48, 480),  # whole batches
    (20, 64, 64),  # at least one batch (check_against_data rejects the batch itself)
  ],
)
def test_queue_size_for(train_size, batch, expected):
  assert data.queue_size_for(train_size, batch, 32768) == expected


def _dummy_splits(tmp_path, folder=DUMMY_FOLDER):
  cfg = _data_cfg(
    tmp_path, name='skeleton_folder', config='kinect20', layout='kinect20', manual_dir=str(folder)
  )
  builder = data.prepare(cfg)
  return data.load_split(builder, cfg, 'train'), data.load_split(builder, cfg, 'test')


def test_derive_fills_only_the_zero_fields(tmp_path):
  config = config_lib.base_config()
  config.data.persons, config.data.frames, config.data.layout = 0, 0, 'kinect20'
  train, test = _dummy_splits(tmp_path)
  train, test, line = data.derive_from_data(config, train, test)
  # Train lengths 12, 10, 8; the 3-person file's persons are all non-zero.
  assert (config.data.persons, config.data.frames) == (3, 10)
  assert (config.data.max_frames, config.mcc.queue_size) == (300, 32768)  # set: kept
  assert line == (
    'derived from the training split (3 sequences): data.persons=3 data.frames=10 '
    '(set e.g. --config.data.persons=3 to override)'
  )
  assert train.preprocess.persons == test.preprocess.persons == 3
  assert train.read([0])['x'].shape == (1, 3, 300, 20, 3)
  assert data.derive_from_data(config, train, test)[2] == ''


@pytest.mark.parametrize(
  'train_size, batch, epochs',
  [(1020, 64, 200), (20000, 64, 10), (500, 64, 429), (100, 32, 1000), (10**6, 64, 1)],
)
def test_derived_epochs_are_a_step_budget(train_size, batch, epochs):
  config = config_lib.base_config()
  config.pretrain.epochs, config.pretrain.batch_size = 0, batch
  split = data.Split([None] * train_size, train_size, 2, ('a', 'b'), preprocess=None)
  _, _, line = data.derive_from_data(config, split, split)
  assert config.pretrain.epochs == epochs
  assert line == (
    f'derived from the training split ({train_size} sequences): pretrain.epochs={epochs} '
    f'(set e.g. --config.pretrain.epochs={epochs} to override)'
  )


def test_derive_counts_persons_present_not_stored(tmp_path):
  folder = Path(shutil.copytree(DUMMY_FOLDER, tmp_path / 'own'))
  arr = np.load(folder / 'sequences' / 'a03_sit.npy')
  arr[:, 2] = 0.0  # the third person is padding
  np.save(folder / 'sequences' / 'a03_sit.npy', arr)
  config = config_lib.base_config()
  config.data.update(persons=0, frames=0, max_frames=0, layout='kinect20')
  config.mcc.queue_size = 0
  config.pretrain.batch_size = 2
  train, test = _dummy_splits(tmp_path, folder)
  data.derive_from_data(config, train, test)
  assert (config.data.persons, config.data.frames, config.data.max_frames) == (2, 10, 12)
  assert config.mcc.queue_size == 2  # below 3 sequences, in whole batches of 2


def nw_ucla_as_folder(out: Path, names: bool = False) -> Path:
  """Writes the real NW-UCLA release as a skeleton_folder (x-view split) under `out`.

  names: the label column holds the action names ('pick up with one hand', ...) and there
  is no label_names.txt, as users' own datasets ship; else ids with label_names.txt.
  """
  from tfds_builders.common import BadFileError
  from tfds_builders.nw_ucla import nw_ucla_dataset_builder as ucla

  src = shared_data('nw_ucla', ucla.FOLDER)
  (out / 'sequences').mkdir(parents=True)
  rows = ['name,label,split,subject,view']
  for path in sorted(src.glob('*.json')):
    fields = ucla.parse_name(path.stem)
    try:
      xyz = ucla.parse_sequence(path.read_bytes(), path.stem)
    except BadFileError:
      continue
    np.save(out / 'sequences' / f'{path.stem}.npy', xyz)
    split = 'train' if ucla.is_train(fields, 'xview') else 'test'
    label = ucla.ACTION_IDS.index(fields['action'])
    if names:
      label = ucla.label_names()[label]
    rows.append(f'{path.stem},{label},{split},{fields["subject"]},{fields["view"]}')
  (out / 'index.csv').write_text('\n'.join(rows) + '\n')
  if not names:
    (out / 'label_names.txt').write_text('\n'.join(ucla.label_names()) + '\n')
  return out


def test_nw_ucla_as_own_folder_end_to_end(tmp_path, capsys):
  from skeljax import run
  from tfds_builders.nw_ucla import nw_ucla_dataset_builder as ucla

  folder = nw_ucla_as_folder(tmp_path / 'own', names=True)
  index = [line.split(',') for line in (folder / 'index.csv').read_text().splitlines()[1:]]
  lengths = [
    len(np.load(folder / 'sequences' / f'{name}.npy'))
    for name, _, split, *_ in index
    if split == 'train'
  ]
  lengths = [n for n in lengths if n > 0]  # zero-frame sequences are excluded when prepared
  assert len(lengths) == 1020
  # A test sequence with a NaN is skipped and counted (1 of 464, below the 5% that stop it).
  bad = folder / 'sequences' / 'a01_s01_e00_v03.npy'
  np.save(bad, np.full_like(np.load(bad), np.nan))
  config = _folder_config(folder, tmp_path / 'data')
  config.stages = ()  # prepare, derive and write config.json; no training
  run.train_and_evaluate(config, str(tmp_path / 'run'))
  out = capsys.readouterr().out
  assert (
    f'skeleton_folder/kinect20: train 1020, test 463 sequences in {tmp_path}/data/'
    'skeleton_folder/kinect20/2.1.0; skipped 1 bad files (first: a01_s01_e00_v03.npy: frame 0 '
    'has a non-finite coordinate (nan or inf))'
  ) in out.splitlines()
  # The action names, sorted, are the class ids; every record keeps its file's action.
  names = sorted(ucla.label_names())
  assert names[:2] == ['carry', 'doffing']
  mapping = ', '.join(f'{name}={i}' for i, name in enumerate(names))
  assert (
    'skeleton_folder/kinect20: class ids of the 10 label names (sorted, numbers by value): '
    f'{mapping}'
  ) in out.splitlines()
  builder = data.get_builder(config.data)
  assert builder.info.features['label'].names == names
  source = builder.as_data_source(split='test')
  for i in range(0, len(source), 50):
    record = source[i]
    action = ucla.parse_name(record['file_name'].decode())['action']
    assert names[record['label']] == ucla.label_names()[ucla.ACTION_IDS.index(action)]
  frames, longest = math.ceil(float(np.median(lengths))), max(lengths)
  expected = (
    f'derived from the training split (1020 sequences): data.persons=1 data.frames={frames} '
    f'data.max_frames={longest} mcc.queue_size=512 pretrain.epochs=200 '
    '(set e.g. --config.data.persons=1 to override)'
  )
  assert expected in out.splitlines()
  # configs/nw_ucla.py sets max_frames 208 by hand: the longest of all 1,484 is 201.
  assert (frames, longest) == (34, 201)
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert saved['data']['persons'] == 1 and saved['data']['frames'] == frames
  assert saved['data']['max_frames'] == longest and saved['mcc']['queue_size'] == 512
  # 3,000 steps of 64 over 1,020 sequences (15 an epoch): configs/nw_ucla.py's length.
  assert saved['pretrain']['epochs'] == 200
  assert saved['data']['config'] == 'kinect20'
