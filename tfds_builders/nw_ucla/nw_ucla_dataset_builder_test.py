"""Tests of the nw_ucla builder on dummy_data/ and, when present, the real release."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders.common import BadFileError
from tfds_builders.nw_ucla import dummy_data_generation as gen
from tfds_builders.nw_ucla import nw_ucla_dataset_builder as ucla

REAL = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data' / 'nw_ucla'
DUMMY = Path(__file__).resolve().parent / 'dummy_data'
DUMMY_FILES = DUMMY / ucla.FOLDER


def build(tmp_path, config, manual_dir, **kwargs):
  builder = ucla.NwUcla(config=config, data_dir=tmp_path / 'data', **kwargs)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  )
  return builder


def names(builder, split) -> set[str]:
  return {ex['file_name'].decode() for ex in builder.as_data_source()[split]}


def test_real_release_xview(tmp_path):
  if not (REAL / ucla.FOLDER).is_dir():
    pytest.skip(f'real NW-UCLA data not found in {REAL}')
  builder = build(tmp_path, 'xview', REAL)
  assert 'tensorflow' not in sys.modules
  assert builder.info.splits['train'].num_examples == 1020
  assert builder.info.splits['test'].num_examples == 464
  assert builder.info.features['label'].names == ucla.label_names()
  assert builder.info.features['label'].names[6] == 'donning'
  source = REAL / ucla.FOLDER / 'a08_s03_e01_v01.json'
  record = json.loads(source.read_text())
  (ex,) = [
    ex for ex in builder.as_data_source()['train'] if ex['file_name'] == source.stem.encode()
  ]
  assert ex['label'] == record['label'] - 1 == 6
  assert (ex['subject'], ex['view'], ex['replication'], ex['setup']) == (3, 1, 1, -1)
  np.testing.assert_array_equal(ex['skeleton'][:, 0], np.asarray(record['skeletons'], np.float32))
  assert ex['n_frames'] == len(record['skeletons'])


def test_dummy_xview_and_xsub_splits(tmp_path):
  xview = build(tmp_path, 'xview', DUMMY)
  assert 'tensorflow' not in sys.modules
  train = {'a01_s01_e00_v01', 'a02_s02_e01_v02', 'a04_s07_e02_v01', 'a05_s10_e01_v02'}
  assert names(xview, 'train') == train
  assert names(xview, 'test') == {'a12_s06_e00_v03', 'a11_s03_e00_v03'}
  one = [ex for ex in xview.as_data_source()['train'] if ex['file_name'] == b'a05_s10_e01_v02']
  assert one[0]['n_frames'] == 1 and one[0]['skeleton'].shape == (1, 1, 20, 3)
  assert one[0]['label'] == 4  # a05 'sit down'
  meta = ucla.NwUcla(config='xview', data_dir=tmp_path / 'data').info.metadata  # from disk
  assert meta['build']['train']['excluded'] == {'zero_frames': 1}  # a06_s04_e00_v01
  xsub = build(tmp_path, 'xsub', DUMMY)
  assert names(xsub, 'train') == {'a01_s01_e00_v01', 'a02_s02_e01_v02', 'a11_s03_e00_v03'}
  assert names(xsub, 'test') == {'a12_s06_e00_v03', 'a04_s07_e02_v01', 'a05_s10_e01_v02'}


def test_files_directly_in_manual_dir(tmp_path):
  flat = tmp_path / 'flat'
  shutil.copytree(DUMMY_FILES, flat)
  assert build(tmp_path, 'xview', flat).info.splits['train'].num_examples == 4


def valid() -> dict:
  return json.loads(gen.sequence_json('a01_s01_e00_v01', 3))


def edited(**changes) -> bytes:
  record = valid()
  record.update(changes)
  return json.dumps(record).encode()


@pytest.mark.parametrize(
  'data, line, reason',
  [
    (json.dumps(valid(), indent=1).encode()[:200], 23, 'not valid JSON'),
    (
      edited(skeletons=valid()['skeletons'][:2] + [valid()['skeletons'][2][:19]]),
      None,
      '19 joints',
    ),
    (edited(skeletons=[[['x', 0, 0]] * 20]), None, '\\[T\\]\\[20\\]\\[3\\] numbers'),
    (edited(skeletons=[[[0, 0]] * 20]), None, '\\[T\\]\\[20\\]\\[3\\] numbers'),
    (edited(label=2), None, 'label 2 but the name says 1'),
    (edited(file_name='a01_s01_e00_v02'), None, 'does not match'),
    (b'[1, 2]', None, 'JSON object'),
    (edited(skeletons=[[[float('nan'), 0, 0]] * 20]), None, 'non-finite'),
  ],
)
def test_malformed_sequences(data, line, reason):
  with pytest.raises(BadFileError, match=reason) as err:
    ucla.parse_sequence(data, 'a01_s01_e00_v01')
  assert err.value.line == line


def with_bad_files(tmp_path) -> Path:
  manual = tmp_path / 'manual'
  shutil.copytree(DUMMY_FILES, manual / ucla.FOLDER)
  (manual / ucla.FOLDER / 'a03_s01_e00_v01.json').write_text('{"file_name": "a03')
  bad = edited(skeletons=[[[0, 0, 0]] * 19], file_name='a08_s02_e00_v02', label=7)
  (manual / ucla.FOLDER / 'a08_s02_e00_v02.json').write_bytes(bad)
  return manual


def test_bad_files_are_skipped_and_reported(tmp_path):
  builder = build(tmp_path, 'xview', with_bad_files(tmp_path), max_bad_fraction=0.5)
  assert builder.info.splits['train'].num_examples == 4
  bad = builder.info.metadata['build']['train']['bad_files']
  assert [(b['file'], b['line']) for b in bad] == [
    ('a03_s01_e00_v01.json', 1),
    ('a08_s02_e00_v02.json', None),
  ]
  assert 'not valid JSON' in bad[0]['reason'] and '19 joints' in bad[1]['reason']


def test_too_many_bad_files_fail_and_leave_no_dataset(tmp_path):
  with pytest.raises(RuntimeError, match='raise max_bad_fraction'):
    build(tmp_path, 'xview', with_bad_files(tmp_path))
  assert not list((tmp_path / 'data').rglob('dataset_info.json'))


def test_missing_manual_dir_fails_with_instructions(tmp_path):
  absent = tmp_path / 'nowhere'
  with pytest.raises(FileNotFoundError, match='all_sqe') as err:
    build(tmp_path, 'xview', absent)
  assert str(absent) in str(err.value)
  other = tmp_path / 'other'
  other.mkdir()
  (other / 'notes.json').write_text('{}')
  with pytest.raises(FileNotFoundError, match='no aAA_sSS_eEE_vVV.json files'):
    build(tmp_path, 'xview', other)


def test_interrupted_build_leaves_nothing_complete(tmp_path, monkeypatch):
  calls = []
  parse = ucla.parse_sequence

  def crash_on_second(data, name):
    calls.append(name)
    if len(calls) == 2:
      raise RuntimeError('simulated crash in the middle of the train split')
    return parse(data, name)

  monkeypatch.setattr(ucla, 'parse_sequence', crash_on_second)
  with pytest.raises(RuntimeError, match='simulated crash'):
    build(tmp_path, 'xview', DUMMY)
  assert not list((tmp_path / 'data').rglob('dataset_info.json'))
  monkeypatch.undo()
  assert not ucla.NwUcla(config='xview', data_dir=tmp_path / 'data').data_path.exists()
  assert build(tmp_path, 'xview', DUMMY).info.splits['test'].num_examples == 2


def test_label_names_and_dummy_data_match_generator():
  assert len(ucla.label_names()) == len(ucla.ACTION_IDS) == 10
  for name, n_frames in gen.SEQUENCES.items():
    assert (DUMMY_FILES / f'{name}.json').read_text() == gen.sequence_json(name, n_frames)
