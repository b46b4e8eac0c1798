"""kinetics_skeleton builder: prepared from the synthetic dummy_data/ into a temporary data_dir."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders.kinetics_skeleton import dummy_data_generation as gen
from tfds_builders.kinetics_skeleton import kinetics_skeleton_dataset_builder as ks

DUMMY = Path(__file__).resolve().parent / 'dummy_data'


def _prepare(manual_dir, data_dir, **kwargs):
  builder = ks.KineticsSkeleton(data_dir=str(data_dir), file_format='array_record', **kwargs)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  )
  return builder


def _records(builder, split):
  source = builder.as_data_source(split=split)
  return {r['file_name'].decode(): r for r in (source[i] for i in range(len(source)))}


def _video(manual_dir, split, video_id):
  return json.loads((Path(manual_dir) / f'kinetics_{split}' / f'{video_id}.json').read_text())


@pytest.fixture
def manual(tmp_path):
  """A writable copy of dummy_data/."""
  return Path(shutil.copytree(DUMMY, tmp_path / 'manual'))


def test_dummy_data_is_what_the_generator_writes(tmp_path):
  gen.write(str(tmp_path))
  for path in DUMMY.rglob('*'):
    if path.is_file():
      assert (tmp_path / path.relative_to(DUMMY)).read_bytes() == path.read_bytes(), path.name


def test_label_names_are_the_400_kinetics_classes():
  assert len(ks.LABEL_NAMES) == 400 == len(set(ks.LABEL_NAMES))
  assert list(ks.LABEL_NAMES) == sorted(ks.LABEL_NAMES)  # label_index is alphabetical
  assert (ks.LABEL_NAMES[0], ks.LABEL_NAMES[399]) == ('abseiling', 'zumba')


def test_builds_train_and_test_with_release_quirks(tmp_path):
  builder = _prepare(DUMMY, tmp_path)
  assert builder.info.features['label'].num_classes == 400
  train, test = _records(builder, 'train'), _records(builder, 'test')
  assert sorted(train) == ['synth_tr_01', 'synth_tr_02']
  assert sorted(test) == ['synth_va_01', 'synth_va_02']
  # 1-based frame indices 1..12 keep their native slot; slot 0 stays empty.
  r = train['synth_tr_01']
  assert r['skeleton'].shape == (13, 2, 18, 3) and r['n_frames'] == 13 and r['label'] == 0
  assert not r['skeleton'][0].any() and r['skeleton'][1].any()
  assert (r['subject'], r['view']) == (-1, -1)
  assert not test['synth_va_01']['skeleton'][:, 1].any()  # one person: slot 2 is zeros
  skips = builder.info.metadata['skips']
  assert skips['train']['excluded'] == {'no_skeleton': 1, 'empty': 1}
  assert skips['test']['frames_dropped'] == 1  # frame_index 300
  assert skips['test']['candidates_ignored'] == 7  # 7 frames with a sixth detection
  assert test['synth_va_02']['n_frames'] == 7
  assert 'tensorflow' not in sys.modules


def test_channels_and_per_frame_ranking(tmp_path):
  builder = _prepare(DUMMY, tmp_path)
  for split, video_id, records in (
    ('train', 'synth_tr_02', _records(builder, 'train')),
    ('val', 'synth_va_02', _records(builder, 'test')),
  ):
    got = records[video_id]['skeleton']
    for frame in _video(DUMMY, split, video_id)['data']:
      t = frame['frame_index']
      if t >= 300:
        continue
      candidates = frame['skeleton'][:5]
      best = sorted(range(len(candidates)), key=lambda m: -sum(candidates[m]['score']))[:2]
      for slot, m in enumerate(best):
        pose, score = candidates[m]['pose'], candidates[m]['score']
        expected = np.stack([pose[0::2], pose[1::2], score], axis=-1).astype(np.float32)
        np.testing.assert_array_equal(got[t, slot], expected)


def test_build_is_deterministic(tmp_path):
  a, b = _prepare(DUMMY, tmp_path / 'a'), _prepare(DUMMY, tmp_path / 'b')
  for split in ('train', 'test'):
    sa, sb = a.as_data_source(split=split), b.as_data_source(split=split)
    for i in range(len(sa)):
      assert sa[i]['file_name'] == sb[i]['file_name']
      np.testing.assert_array_equal(sa[i]['skeleton'], sb[i]['skeleton'])


def _edit_pose(video):
  video['data'][3]['skeleton'][1]['pose'].pop()


def _edit_score(video):
  video['data'][0]['skeleton'][0]['score'][4] = 'high'


def _edit_nan(video):
  video['data'][5]['skeleton'][2]['pose'][0] = float('nan')


def _edit_label(video):
  video['label_index'] = 7


@pytest.mark.parametrize(
  'edit, reason',
  [
    (_edit_pose, 'frame 3 person 1 pose has 35 values, expected 36'),
    (_edit_score, 'frame 0 person 0 score has a non-numeric value'),
    (_edit_nan, 'frame 5 has a non-finite value'),
    (_edit_label, 'label_index 7 differs from the label index file (58)'),
  ],
)
def test_malformed_video_is_skipped_with_reason(manual, tmp_path, edit, reason):
  video = _video(manual, 'train', 'synth_tr_02')
  edit(video)
  (manual / 'kinetics_train' / 'synth_tr_02.json').write_text(json.dumps(video))
  builder = _prepare(manual, tmp_path / 'data', max_bad_fraction=0.5)
  assert sorted(_records(builder, 'train')) == ['synth_tr_01']
  skips = builder.info.metadata['skips']['train']
  assert skips['bad_files'] == [{'file': 'synth_tr_02.json', 'line': None, 'reason': reason}]
  assert skips['files_seen'] == 3 and skips['files_bad'] == 1


def test_truncated_json_reports_the_line(manual, tmp_path):
  path = manual / 'kinetics_train' / 'synth_tr_01.json'
  path.write_text(json.dumps(json.loads(path.read_text()), indent=1)[:900])
  builder = _prepare(manual, tmp_path / 'data', max_bad_fraction=0.5)
  (bad,) = builder.info.metadata['skips']['train']['bad_files']
  assert bad['file'] == 'synth_tr_01.json' and 'invalid JSON' in bad['reason']
  assert bad['line'] > 1


def test_label_name_mismatch_is_skipped(manual, tmp_path):
  index_path = manual / 'kinetics_train_label.json'
  index = json.loads(index_path.read_text())
  index['synth_tr_02']['label'] = 'juggling'
  index_path.write_text(json.dumps(index))
  builder = _prepare(manual, tmp_path / 'data', max_bad_fraction=0.5)
  (bad,) = builder.info.metadata['skips']['train']['bad_files']
  assert bad['file'] == 'synth_tr_02.json'
  assert bad['reason'] == "label 'juggling' is not class 58 'clay pottery making'"


def test_missing_file_is_skipped(manual, tmp_path):
  (manual / 'kinetics_val' / 'synth_va_01.json').unlink()
  builder = _prepare(manual, tmp_path / 'data', max_bad_fraction=0.5)
  assert sorted(_records(builder, 'test')) == ['synth_va_02']
  (bad,) = builder.info.metadata['skips']['test']['bad_files']
  assert bad == {'file': 'synth_va_01.json', 'line': None, 'reason': 'file not found'}


def test_too_many_bad_files_fail_the_build(manual, tmp_path):
  (manual / 'kinetics_val' / 'synth_va_01.json').write_text('{"data": [')
  with pytest.raises(RuntimeError, match=r'1 of 2 raw files are bad.*synth_va_01\.json'):
    _prepare(manual, tmp_path / 'data')
  assert not list((tmp_path / 'data').rglob('dataset_info.json'))


def test_examples_are_streamed_one_file_at_a_time(monkeypatch):
  loaded = []
  real = ks._load_json
  monkeypatch.setattr(ks, '_load_json', lambda path: loaded.append(path) or real(path))
  builder = ks.KineticsSkeleton(data_dir=str(DUMMY / 'unused'))
  index = ks.read_label_index(str(DUMMY / 'kinetics_train_label.json'))
  examples = builder._generate_examples(str(DUMMY / 'kinetics_train'), index, 'train')
  key, example = next(examples)
  assert key == 'synth_tr_01' and example['skeleton'].shape == (13, 2, 18, 3)
  assert len(loaded) == 1


def test_extracted_release_folder_is_found(tmp_path):
  shutil.copytree(DUMMY, tmp_path / 'manual' / 'kinetics-skeleton')
  builder = _prepare(tmp_path / 'manual', tmp_path / 'data')
  assert len(builder.as_data_source(split='test')) == 2


def test_missing_manual_download_fails_with_instructions(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'(?s)does not exist.*kinetics_train_label\.json'):
    _prepare(tmp_path / 'nope', tmp_path / 'data')
  (tmp_path / 'other').mkdir()
  (tmp_path / 'other' / 'readme.txt').write_text('x')
  with pytest.raises(FileNotFoundError, match=r'no kinetics_train_label\.json in'):
    _prepare(tmp_path / 'other', tmp_path / 'data')


def test_parse_video_rejects_bad_structure():
  counts = {'frames_dropped': 0, 'candidates_ignored': 0}
  with pytest.raises(ks.common.BadFileError, match='no "data" list'):
    ks.parse_video({'frames': []}, counts)
  with pytest.raises(ks.common.BadFileError, match='integer frame_index'):
    ks.parse_video({'data': [{'frame_index': 1.5, 'skeleton': []}]}, counts)
  assert ks.parse_video({'data': []}, counts).shape == (0, 2, 18, 3)
