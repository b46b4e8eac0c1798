"""skeleton_folder builder: prepared from dummy_data/ into a temporary data_dir."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders.common import BadDataError
from tfds_builders.skeleton_folder import dummy_data_generation as gen
from tfds_builders.skeleton_folder import skeleton_folder_dataset_builder as sf

DUMMY = Path(__file__).resolve().parent / 'dummy_data'


def _builder(data_dir, layout='kinect20', **kwargs):
  return tfds.builder(f'skeleton_folder/{layout}', data_dir=str(data_dir), **kwargs)


def _prepare(manual_dir, data_dir, layout='kinect20', **kwargs):
  builder = _builder(data_dir, layout, **kwargs)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
  )
  return builder


def _records(builder, split):
  source = builder.as_data_source(split=split)
  return {r['file_name'].decode(): r for r in (source[i] for i in range(len(source)))}


def _nothing_prepared(data_dir: Path) -> bool:
  """No dataset_info.json and no TFDS `incomplete.*` folder left anywhere under data_dir."""
  return not list(data_dir.rglob('dataset_info.json')) and not list(data_dir.rglob('*incomplete*'))


@pytest.fixture
def folder(tmp_path):
  """A writable copy of dummy_data/."""
  return Path(shutil.copytree(DUMMY, tmp_path / 'own'))


def _write_index(folder: Path, *rows: str) -> None:
  (folder / 'index.csv').write_text('name,label,split,subject,view\n' + '\n'.join(rows) + '\n')


def test_dummy_data_is_what_the_generator_writes(tmp_path):
  gen.write(str(tmp_path))
  for path in DUMMY.rglob('*'):
    if path.is_file():
      assert (tmp_path / path.relative_to(DUMMY)).read_bytes() == path.read_bytes(), path.name


def test_one_config_per_layout():
  from skeljax import skeleton

  assert list(sf.SkeletonFolder.builder_configs) == list(skeleton.LAYOUTS)


def test_builds_both_shapes_with_labels_and_metadata(tmp_path):
  builder = _prepare(DUMMY, tmp_path / 'data')
  assert builder.info.features['label'].names == ['sit', 'walk', 'wave']
  train, test = _records(builder, 'train'), _records(builder, 'test')
  assert sorted(train) == ['a01_walk', 'a02_wave', 'a03_sit']
  assert sorted(test) == ['a04_walk', 'a05_wave']

  # [T, V, C] becomes one person.
  raw = np.load(DUMMY / 'sequences' / 'a01_walk.npy')
  r = train['a01_walk']
  assert r['skeleton'].shape == (12, 1, 20, 3) and r['skeleton'].dtype == np.float32
  np.testing.assert_array_equal(r['skeleton'][:, 0], raw)
  assert (r['n_frames'], r['label'], r['subject'], r['view']) == (12, 1, 1, 1)

  # [T, 3, V, C] keeps all three persons: the pipeline chooses how many it uses.
  raw = np.load(DUMMY / 'sequences' / 'a03_sit.npy')
  np.testing.assert_array_equal(train['a03_sit']['skeleton'], raw)
  assert train['a03_sit']['label'] == 0

  # Empty subject/view cells mean unknown.
  r = test['a05_wave']
  assert (r['subject'], r['view'], r['setup'], r['replication']) == (-1, -1, -1, -1)
  skips = builder.info.metadata['skips']
  assert skips['train']['files_seen'] == 3 and skips['train']['files_bad'] == 0
  assert 'tensorflow' not in sys.modules


def test_without_label_names_the_classes_are_their_ids(folder, tmp_path):
  (folder / 'label_names.txt').unlink()
  builder = _prepare(folder, tmp_path / 'data')
  assert builder.info.features['label'].names == ['0', '1', '2']


def test_build_is_deterministic_and_reads_back_from_a_fresh_builder(tmp_path):
  a = _prepare(DUMMY, tmp_path / 'a')
  b = _prepare(DUMMY, tmp_path / 'b')
  again = _builder(tmp_path / 'a')  # prepared: info, label names and metadata from the files
  assert again.info.metadata['skips']['test']['files_seen'] == 2
  assert again.info.features['label'].names == ['sit', 'walk', 'wave']
  for split in ('train', 'test'):
    sa, sb = a.as_data_source(split=split), b.as_data_source(split=split)
    sc = again.as_data_source(split=split)
    for i in range(len(sa)):
      assert sa[i]['file_name'] == sb[i]['file_name'] == sc[i]['file_name']
      np.testing.assert_array_equal(sa[i]['skeleton'], sb[i]['skeleton'])


def test_source_changed_tracks_the_folder(folder, tmp_path):
  builder = _prepare(folder, tmp_path / 'data')
  assert not builder.source_changed(str(folder))
  assert not builder.source_changed(str(DUMMY))  # a copy: the same folder, wherever it lies
  np.save(folder / 'sequences' / 'a01_walk.npy', np.zeros((13, 20, 3), np.float32))
  assert builder.source_changed(str(folder))
  shutil.copytree(DUMMY, tmp_path / 'again')
  (tmp_path / 'again' / 'label_names.txt').write_text('sitting\nwalking\nwaving\n')
  assert builder.source_changed(str(tmp_path / 'again'))


def test_content_fingerprint_sees_same_size_edits(folder):
  rows = sf.read_index(str(folder)).rows
  before = sf.fingerprint(str(folder), rows, 'content')
  assert sf.fingerprint(str(folder), rows, 'size') != before
  path = folder / 'sequences' / 'a04_walk.npy'
  size = sf.fingerprint(str(folder), rows, 'size')
  np.save(path, np.load(path) + 1.0)
  assert sf.fingerprint(str(folder), rows, 'content') != before
  assert sf.fingerprint(str(folder), rows, 'size') == size


# ------------------------------------------------------- labels given as names ---


def _labels(builder) -> dict[str, int]:
  return {
    name: int(r['label'])
    for split in ('train', 'test')
    for name, r in _records(builder, split).items()
  }


def test_class_names_sort_with_numbers_by_value():
  names = ['a10', 'a2', 'B1', 'a1', 'walk', 'sitDown', 'a01', 'Walk', 'A2']
  assert sorted(names, key=sf.natural_key) == [
    'a01',
    'a1',
    'A2',
    'a2',
    'a10',
    'B1',
    'sitDown',
    'Walk',
    'walk',
  ]


def test_name_labels_get_the_ids_of_their_sorted_names(folder, tmp_path):
  """Without label_names.txt the dummy's names sort as its ids: the same dataset."""
  _write_index(
    folder,
    'a01_walk,walk,train,1,1',
    'a02_wave,wave,train,2,1',
    'a03_sit,sit,train,2,2',
    'a04_walk,walk,test,3,2',
    'a05_wave,wave,test,,',
  )
  (folder / 'label_names.txt').unlink()
  builder = _prepare(folder, tmp_path / 'names')
  assert builder.info.features['label'].names == ['sit', 'walk', 'wave']
  assert _labels(builder) == _labels(_prepare(DUMMY, tmp_path / 'ids'))
  labels = builder.info.metadata['labels']
  assert labels == {'column': 'names', 'order': 'sorted', 'ids': {'sit': 0, 'walk': 1, 'wave': 2}}
  again = _builder(tmp_path / 'names')  # read back from the prepared files
  assert again.info.metadata['labels'] == labels


def test_name_labels_follow_the_order_of_label_names_txt(folder, tmp_path):
  _write_index(
    folder,
    'a01_walk,a10,train,1,1',
    'a02_wave,a2,train,2,1',
    'a03_sit,a1,train,2,2',
    'a04_walk,a10,test,3,2',
    'a05_wave,a2,test,,',
  )
  (folder / 'label_names.txt').unlink()
  sorted_ = _prepare(folder, tmp_path / 'sorted')
  assert sorted_.info.features['label'].names == ['a1', 'a2', 'a10']  # numbers by value
  assert _labels(sorted_) == {'a01_walk': 2, 'a02_wave': 1, 'a03_sit': 0, 'a04_walk': 2,
                              'a05_wave': 1}  # fmt: skip
  (folder / 'label_names.txt').write_text('a10\na1\na2\n')
  listed = _prepare(folder, tmp_path / 'listed')
  assert listed.info.features['label'].names == ['a10', 'a1', 'a2']
  assert _labels(listed)['a01_walk'] == 0 and _labels(listed)['a02_wave'] == 2
  assert listed.info.metadata['labels']['order'] == 'label_names.txt'


def test_id_labels_record_their_mapping(tmp_path):
  builder = _prepare(DUMMY, tmp_path / 'data')
  labels = builder.info.metadata['labels']
  assert labels == {'column': 'ids', 'order': 'ids', 'ids': {'sit': 0, 'walk': 1, 'wave': 2}}


@pytest.mark.parametrize(
  'rows, message',
  [
    (('a,walk,train', 'b,2,test'), r"index\.csv:3: label '2' is a class id, but line 2 has the "
     r"class name 'walk'; use class names in every row, or integer ids 0\.\.K-1 in every row"),
    (('a,0,train', 'b,1,train', 'c,sit,test'), r"index\.csv:4: label 'sit' is a class name, "
     r"but line 2 has the class id '0'"),
  ],
)  # fmt: skip
def test_a_column_mixing_ids_and_names_names_the_row(rows, message):
  with pytest.raises(BadDataError, match=message):
    sf.parse_index('name,label,split\n' + '\n'.join(rows) + '\n')


def test_label_names_txt_that_disagrees_with_the_names_is_one_line(folder, tmp_path):
  _write_index(folder, 'a01_walk,walk,train,1,1', 'a02_wave,wave,train,2,1',
               'a03_sit,sitting,train,2,2', 'a04_walk,walk,test,3,2')  # fmt: skip
  # sitting is not in the file (sit, walk, wave)
  with pytest.raises(
    BadDataError,
    match=r"index\.csv:4: label 'sitting' is not in \S*label_names\.txt \(3 names: "
    r'sit, walk, wave\); add it there, or fix the row',
  ):
    _prepare(folder, tmp_path / 'data')
  assert _nothing_prepared(tmp_path / 'data')
  # sit is in the file, but no row uses it
  _write_index(folder, 'a01_walk,walk,train,1,1', 'a02_wave,wave,train,2,1',
               'a04_walk,walk,test,3,2')  # fmt: skip
  with pytest.raises(
    BadDataError, match=r"label_names\.txt:1: class 'sit' is the label of no row of \S*index\.csv"
  ):
    _prepare(folder, tmp_path / 'data')


# ------------------------------------------------ bad data: one clear line each ---


def test_wrong_joint_count_names_the_file_and_the_fitting_layout(folder, tmp_path):
  np.save(folder / 'sequences' / 'a02_wave.npy', np.zeros((5, 2, 25, 3), np.float32))
  # Never skipped as one bad file: a wrong layout makes every file wrong.
  with pytest.raises(
    BadDataError, match=r'^\S*a02_wave\.npy: .*25 joints.*kinect20 needs 20 x 3.*ntu25'
  ):
    _prepare(folder, tmp_path / 'data', max_bad_fraction=0.5)
  assert _nothing_prepared(tmp_path / 'data')


def test_missing_file_names_the_index_row(folder, tmp_path):
  (folder / 'sequences' / 'a02_wave.npy').unlink()
  (folder / 'sequences' / 'a05_wave.npy').unlink()
  with pytest.raises(
    BadDataError, match=r'index\.csv:3: sequences/a02_wave\.npy does not exist \(2 of 5 listed'
  ):
    _prepare(folder, tmp_path / 'data')
  assert _nothing_prepared(tmp_path / 'data')


@pytest.mark.parametrize(
  'row, message',
  [
    ('a01_walk,1,val,1,1', "split 'val' is not train or test"),
    ('a01_walk,1,Train,1,1', "split 'Train' is not train or test"),
    ('a01_walk,-1,train,1,1', "label '-1' is a number but not an integer class id 0..K-1"),
    ('a01_walk,1.5,train,1,1', "label '1.5' is a number but not an integer class id"),
    ('a01_walk,1e3,train,1,1', "label '1e3' is a number but not an integer class id"),
    ('a01_walk,1,train,one,1', "subject 'one' is not an integer"),
    ('../x,1,train,1,1', 'bad sequence name'),
    ('a01_walk,,train,1,1', "label '' is empty; give a class name"),
    ('a01_walk,1,train,1', 'fields'),
  ],
)
def test_bad_index_rows_name_the_line(row, message):
  text = f'name,label,split,subject,view\n{row}\n'
  with pytest.raises(BadDataError, match=rf'index\.csv:2: .*{message}'):
    sf.parse_index(text)


def test_labels_with_gaps_are_an_error():
  text = 'name,label,split\na,0,train\nb,3,train\nc,1,test\n'
  with pytest.raises(BadDataError, match=r'0\.\.K-1 without gaps.*1 of 0\.\.3 never occur \(2\)'):
    sf.parse_index(text)
  with pytest.raises(BadDataError, match=r'never occur \(0\); the ids start at 1: subtract 1'):
    sf.parse_index('name,label,split\na,1,train\nb,2,test\n')


def test_bad_label_names_file_is_an_error(folder, tmp_path):
  (folder / 'label_names.txt').write_text('sit\nwalk\n')
  with pytest.raises(BadDataError, match=r'label_names\.txt: 2 names, but index\.csv has 3'):
    _prepare(folder, tmp_path / 'data')
  (folder / 'label_names.txt').write_text('sit\nwalk\nsit\n')
  with pytest.raises(BadDataError, match='distinct'):
    _prepare(folder, tmp_path / 'data')


def test_index_errors_fail_the_build_with_nothing_prepared(folder, tmp_path):
  _write_index(folder, 'a01_walk,1,train,1,1', 'a02_wave,2,validation,2,1')
  with pytest.raises(BadDataError, match=r"index\.csv:3: split 'validation'"):
    _prepare(folder, tmp_path / 'data')
  assert _nothing_prepared(tmp_path / 'data')


@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
def test_non_finite_files_are_skipped_and_counted(folder, tmp_path, value):
  arr = np.load(folder / 'sequences' / 'a01_walk.npy')
  arr[2, 5, 1] = value
  np.save(folder / 'sequences' / 'a01_walk.npy', arr)
  builder = _prepare(folder, tmp_path / 'data', max_bad_fraction=0.5)
  assert sorted(_records(builder, 'train')) == ['a02_wave', 'a03_sit']
  skips = builder.info.metadata['skips']['train']
  assert skips['files_seen'] == 3 and skips['files_bad'] == 1
  reason = 'frame 2 has a non-finite coordinate (nan or inf)'
  assert skips['bad_files'] == [{'file': 'a01_walk.npy', 'line': None, 'reason': reason}]


def test_too_many_bad_files_fail_the_build(folder, tmp_path):
  np.save(folder / 'sequences' / 'a02_wave.npy', np.full((4, 20, 3), np.inf, np.float32))
  with pytest.raises(
    BadDataError,
    match=r'1 of 3 raw files are bad \(more than 5%\); first: a02_wave\.npy: frame 0 has a '
    r'non-finite coordinate \(nan or inf\)\. Fix those files, or remove their rows',
  ):
    _prepare(folder, tmp_path / 'data')  # default max_bad_fraction 0.05
  assert _nothing_prepared(tmp_path / 'data')


@pytest.mark.parametrize(
  'content, reason',
  [
    (np.array([['a', 'b']]), 'not numeric'),
    (np.array([{'x': 1}], dtype=object), 'cannot load'),
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
  with pytest.raises(BadDataError, match='the test split has no usable sequence'):
    _prepare(folder, tmp_path / 'data')


def test_bad_csv_header_fails(folder):
  (folder / 'index.csv').write_text('name,lable,split\na01_walk,1,train\n')
  with pytest.raises(BadDataError, match='bad header'):
    sf.read_index(str(folder))


def test_duplicate_name_is_an_error():
  with pytest.raises(BadDataError, match='listed twice'):
    sf.parse_index('name,label,split\na,0,train\na,1,test\n')


def test_missing_manual_dir_fails_with_instructions(tmp_path):
  with pytest.raises(BadDataError, match=r'does not exist.*index\.csv'):
    sf.read_index(str(tmp_path / 'nope'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(BadDataError, match=r'index\.csv not found'):
    sf.read_index(str(tmp_path / 'empty'))
  with pytest.raises(BadDataError, match='index.csv'):
    _prepare(tmp_path / 'nope', tmp_path / 'data')


def test_bad_arguments_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match='kinect21'):
    _builder(tmp_path, 'kinect21')
  with pytest.raises(ValueError, match='fingerprint'):
    _builder(tmp_path, fingerprint_mode='mtime')
  with pytest.raises(ValueError, match='max_bad_fraction'):
    _builder(tmp_path, max_bad_fraction=2.0)
