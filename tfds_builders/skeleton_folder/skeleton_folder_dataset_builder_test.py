"""skeleton_folder builder: prepared from dummy_data/ into a temporary data_dir."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders.skeleton_folder import dummy_data_generation as gen
from tfds_builders.skeleton_folder import skeleton_folder_dataset_builder as sf

DUMMY = Path(__file__).resolve().parent / 'dummy_data'


def _prepare(manual_dir, data_dir, layout='kinect20', persons=2, **kwargs):
  builder = sf.make_builder(str(manual_dir), layout, str(data_dir), persons, **kwargs)
  builder.download_and_prepare(
    file_format='array_record',
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
  )
  return builder


def _records(builder, split):
  source = builder.as_data_source(split=split)
  return {r['file_name'].decode(): r for r in (source[i] for i in range(len(source)))}


@pytest.fixture
def folder(tmp_path):
  """A writable copy of dummy_data/."""
  return Path(shutil.copytree(DUMMY, tmp_path / 'own'))


def test_dummy_data_is_what_the_generator_writes(tmp_path):
  gen.write(str(tmp_path))
  for path in DUMMY.rglob('*'):
    if path.is_file():
      assert (tmp_path / path.relative_to(DUMMY)).read_bytes() == path.read_bytes(), path.name


def test_builds_both_shapes_with_labels_and_metadata(tmp_path):
  builder = _prepare(DUMMY, tmp_path / 'data')
  assert builder.info.features['label'].names == ['sit', 'walk', 'wave']
  train, test = _records(builder, 'train'), _records(builder, 'test')
  assert sorted(train) == ['a01_walk', 'a02_wave', 'a03_sit']
  assert sorted(test) == ['a04_walk', 'a05_wave']

  # [T, V, C] becomes person 0; the second person is zero padding.
  raw = np.load(DUMMY / 'sequences' / 'a01_walk.npy')
  r = train['a01_walk']
  assert r['skeleton'].shape == (12, 2, 20, 3) and r['skeleton'].dtype == np.float32
  np.testing.assert_array_equal(r['skeleton'][:, 0], raw)
  assert not r['skeleton'][:, 1].any()
  assert (r['n_frames'], r['label'], r['subject'], r['view']) == (12, 1, 1, 1)

  # [T, 3, V, C] keeps its first two persons.
  raw = np.load(DUMMY / 'sequences' / 'a03_sit.npy')
  np.testing.assert_array_equal(train['a03_sit']['skeleton'], raw[:, :2])

  # Empty subject/view cells mean unknown.
  r = test['a05_wave']
  assert (r['subject'], r['view'], r['setup'], r['replication']) == (-1, -1, -1, -1)
  skips = builder.info.metadata['skips']
  assert skips['train']['files_seen'] == 3 and skips['train']['files_bad'] == 0
  assert 'tensorflow' not in sys.modules


def test_build_is_deterministic_and_reads_back_from_a_fresh_builder(tmp_path):
  a = _prepare(DUMMY, tmp_path / 'a')
  b = _prepare(DUMMY, tmp_path / 'b')
  again = sf.make_builder(str(DUMMY), 'kinect20', str(tmp_path / 'a'), 2)
  assert again.info.metadata['skips']['test']['files_seen'] == 2
  for split in ('train', 'test'):
    sa, sb = a.as_data_source(split=split), b.as_data_source(split=split)
    sc = again.as_data_source(split=split)
    for i in range(len(sa)):
      assert sa[i]['file_name'] == sb[i]['file_name'] == sc[i]['file_name']
      np.testing.assert_array_equal(sa[i]['skeleton'], sb[i]['skeleton'])


def test_config_name_tracks_folder_content(folder, tmp_path):
  same = sf.make_builder(str(folder), 'kinect20', str(tmp_path), 2).builder_config.name
  assert same == sf.make_builder(str(DUMMY), 'kinect20', str(tmp_path), 2).builder_config.name
  assert same.startswith('kinect20_m2_')
  np.save(folder / 'sequences' / 'a01_walk.npy', np.zeros((13, 20, 3), np.float32))
  assert sf.make_builder(str(folder), 'kinect20', str(tmp_path), 2).builder_config.name != same
  persons_1 = sf.make_builder(str(folder), 'kinect20', str(tmp_path), 1).builder_config.name
  assert persons_1.startswith('kinect20_m1_')


def test_content_fingerprint_sees_same_size_edits(folder, tmp_path):
  kw = {'fingerprint_mode': 'content'}
  before = sf.make_builder(str(folder), 'kinect20', str(tmp_path), 2, **kw).builder_config.name
  path = folder / 'sequences' / 'a04_walk.npy'
  np.save(path, np.load(path) + 1.0)
  after = sf.make_builder(str(folder), 'kinect20', str(tmp_path), 2, **kw).builder_config.name
  assert before != after


def test_folder_changed_after_make_builder_fails(folder, tmp_path):
  builder = sf.make_builder(str(folder), 'kinect20', str(tmp_path), 2)
  np.save(folder / 'sequences' / 'a01_walk.npy', np.zeros((3, 20, 3), np.float32))
  with pytest.raises(ValueError, match='changed since make_builder'):
    builder.download_and_prepare(file_format='array_record')


def test_wrong_joint_count_names_the_file(folder, tmp_path):
  np.save(folder / 'sequences' / 'a02_wave.npy', np.zeros((5, 2, 25, 3), np.float32))
  with pytest.raises(ValueError, match=r'a02_wave\.npy.*25 joints.*kinect20 needs 20 x 3'):
    _prepare(folder, tmp_path / 'data')


def test_missing_file_is_skipped_and_counted(folder, tmp_path):
  (folder / 'sequences' / 'a02_wave.npy').unlink()
  builder = _prepare(folder, tmp_path / 'data', max_bad_fraction=0.5)
  assert sorted(_records(builder, 'train')) == ['a01_walk', 'a03_sit']
  skips = builder.info.metadata['skips']['train']
  assert skips['files_seen'] == 3 and skips['files_bad'] == 1
  assert skips['bad_files'] == [{'file': 'a02_wave.npy', 'line': None, 'reason': 'file not found'}]


def test_too_many_bad_files_fail_the_build(folder, tmp_path):
  (folder / 'sequences' / 'a02_wave.npy').unlink()
  with pytest.raises(RuntimeError, match=r'1 of 3 raw files are bad.*a02_wave\.npy'):
    _prepare(folder, tmp_path / 'data')  # default max_bad_fraction 0.05
  assert not list((tmp_path / 'data').rglob('dataset_info.json'))


@pytest.mark.parametrize(
  'content, reason',
  [
    (np.array([['a', 'b']]), 'not numeric'),
    (np.array([{'x': 1}], dtype=object), 'cannot load'),
    (np.full((4, 20, 3), np.nan, np.float32), 'non-finite'),
    (np.zeros((4, 3), np.float32), 'neither'),
  ],
)
def test_malformed_files_are_skipped_with_reason(folder, tmp_path, content, reason):
  np.save(folder / 'sequences' / 'a01_walk.npy', content, allow_pickle=True)
  builder = _prepare(folder, tmp_path / 'data', max_bad_fraction=0.5)
  (bad,) = builder.info.metadata['skips']['train']['bad_files']
  assert bad['file'] == 'a01_walk.npy' and reason in bad['reason']
  assert 'a01_walk' not in _records(builder, 'train')


def test_truncated_file_is_skipped(folder, tmp_path):
  path = folder / 'sequences' / 'a04_walk.npy'
  path.write_bytes(path.read_bytes()[:200])
  builder = _prepare(folder, tmp_path / 'data', max_bad_fraction=0.5)
  (bad,) = builder.info.metadata['skips']['test']['bad_files']
  assert bad['file'] == 'a04_walk.npy' and 'cannot load' in bad['reason']


def test_empty_sequence_is_excluded_and_counted(folder, tmp_path):
  np.save(folder / 'sequences' / 'a05_wave.npy', np.zeros((0, 20, 3), np.float32))
  builder = _prepare(folder, tmp_path / 'data')
  assert sorted(_records(builder, 'test')) == ['a04_walk']
  skips = builder.info.metadata['skips']['test']
  assert skips['excluded'] == {'empty_sequence': 1} and skips['files_bad'] == 0


def test_split_without_usable_sequence_fails_clearly(folder, tmp_path):
  for name in ('a04_walk', 'a05_wave'):
    np.save(folder / 'sequences' / f'{name}.npy', np.zeros((0, 20, 3), np.float32))
  with pytest.raises(RuntimeError, match='the test split has no usable sequence'):
    _prepare(folder, tmp_path / 'data')


def test_bad_csv_header_fails_at_make(folder, tmp_path):
  (folder / 'index.csv').write_text('name,lable,split\na01_walk,walk,train\n')
  with pytest.raises(ValueError, match='bad header'):
    sf.make_builder(str(folder), 'kinect20', str(tmp_path), 2)


@pytest.mark.parametrize(
  'row, message',
  [
    ('a01_walk,walk,train,one,1', 'subject'),
    ('a01_walk,walk,Train Set,1,1', 'bad split'),
    ('../x,walk,train,1,1', 'bad sequence name'),
    ('a01_walk,,train,1,1', 'empty label'),
    ('a01_walk,walk,train,1', 'fields'),
  ],
)
def test_bad_index_rows_name_the_line(row, message):
  text = f'name,label,split,subject,view\n{row}\n'
  with pytest.raises(ValueError, match=rf'index\.csv:2: .*{message}'):
    sf.parse_index(text)


def test_duplicate_name_is_an_error():
  with pytest.raises(ValueError, match='listed twice'):
    sf.parse_index('name,label,split\na,x,train\na,y,test\n')


def test_missing_manual_dir_fails_with_instructions(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'does not exist.*index\.csv'):
    sf.make_builder(str(tmp_path / 'nope'), 'kinect20', str(tmp_path), 2)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match=r'index\.csv not found'):
    sf.make_builder(str(tmp_path / 'empty'), 'kinect20', str(tmp_path), 2)


def test_builder_without_folder_config_explains_make_builder(tmp_path):
  with pytest.raises(ValueError, match='make_builder'):
    sf.SkeletonFolder(data_dir=str(tmp_path))


def test_bad_arguments_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match='unknown joint layout'):
    sf.make_builder(str(DUMMY), 'ntu26', str(tmp_path), 2)
  with pytest.raises(ValueError, match='persons'):
    sf.make_builder(str(DUMMY), 'kinect20', str(tmp_path), 0)
  with pytest.raises(ValueError, match='fingerprint'):
    sf.make_builder(str(DUMMY), 'kinect20', str(tmp_path), 2, fingerprint_mode='mtime')
