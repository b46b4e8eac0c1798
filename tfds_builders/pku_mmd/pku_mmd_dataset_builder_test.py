"""pku_mmd builder: prepared from the synthetic dummy_data/ into a temporary data_dir."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders.pku_mmd import dummy_data_generation as gen
from tfds_builders.pku_mmd import pku_mmd_dataset_builder as pku

DUMMY = Path(__file__).resolve().parent / 'dummy_data'
SKELETONS = Path('part1') / 'PKU_Skeleton_Renew'
LABELS = Path('part1') / 'Train_Label_PKU_final'


def _prepare(manual_dir, data_dir, config='part1_xsub', **kwargs):
  builder = pku.PkuMmd(config=config, data_dir=str(data_dir), file_format='array_record', **kwargs)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  )
  return builder


def _records(builder, split):
  source = builder.as_data_source(split=split)
  return {r['file_name'].decode(): r for r in (source[i] for i in range(len(source)))}


@pytest.fixture
def manual(tmp_path):
  """A writable copy of dummy_data/."""
  return Path(shutil.copytree(DUMMY, tmp_path / 'manual'))


def test_dummy_data_is_what_the_generator_writes(tmp_path):
  gen.write(str(tmp_path))
  for path in DUMMY.rglob('*'):
    if path.is_file():
      assert (tmp_path / path.relative_to(DUMMY)).read_bytes() == path.read_bytes(), path.name


def test_label_names():
  assert len(pku.LABEL_NAMES) == 51 == len(set(pku.LABEL_NAMES))
  assert pku.LABEL_NAMES[0] == 'bow' and pku.LABEL_NAMES[13] == 'handshaking'
  assert pku.LABEL_NAMES[50] == 'writing'


def test_segments_are_cut_from_the_continuous_sequence(tmp_path):
  builder = _prepare(DUMMY, tmp_path)
  assert builder.info.features['label'].num_classes == 51
  train, test = _records(builder, 'train'), _records(builder, 'test')
  assert sorted(train) == ['0002-L_000', '0002-L_001', '0002-M_000', '0002-M_001']
  assert sorted(test) == ['0003-R_000', '0003-R_001']

  frames = np.loadtxt(DUMMY / SKELETONS / '0002-L.txt', dtype=np.float32).reshape(-1, 2, 25, 3)
  r = train['0002-L_001']  # label row '13,10,18,2': hand waving, frames 10..18 inclusive
  np.testing.assert_array_equal(r['skeleton'], frames[10:19])
  assert (r['n_frames'], r['label'], r['view'], r['subject']) == (9, 12, 1, -1)
  assert not r['skeleton'][:, 1].any()  # one actor: the second body is zeros
  r = test['0003-R_000']  # handshaking: two actors
  assert r['label'] == 13 and r['view'] == 3 and r['skeleton'][:, 1].any()
  assert train['0002-M_000']['view'] == 2
  skips = builder.info.metadata['skips']
  assert skips['train']['segments_written'] == 4 and skips['train']['files_bad'] == 0
  assert 'tensorflow' not in sys.modules


@pytest.mark.parametrize(
  'config, train_videos, test_videos',
  [
    ('part1_xview', {'0002-M', '0003-R'}, {'0002-L'}),
    ('part2_xsub', {'A01N01-L'}, {'A02N01-R'}),
    ('part2_xview', {'A02N01-R'}, {'A01N01-L'}),
  ],
)
def test_other_protocols_follow_their_split_files(tmp_path, config, train_videos, test_videos):
  builder = _prepare(DUMMY, tmp_path, config)
  for split, videos in (('train', train_videos), ('test', test_videos)):
    assert {k.rsplit('_', 1)[0] for k in _records(builder, split)} == videos


def test_build_is_deterministic(tmp_path):
  a, b = _prepare(DUMMY, tmp_path / 'a'), _prepare(DUMMY, tmp_path / 'b')
  for split in ('train', 'test'):
    sa, sb = a.as_data_source(split=split), b.as_data_source(split=split)
    assert len(sa) == len(sb)
    for i in range(len(sa)):
      assert sa[i]['file_name'] == sb[i]['file_name']
      np.testing.assert_array_equal(sa[i]['skeleton'], sb[i]['skeleton'])


@pytest.mark.parametrize(
  'edit, line, reason',
  [
    (lambda lines: lines.__setitem__(4, ' '.join(lines[4].split()[:149])), 5, '149 values'),
    (lambda lines: lines.__setitem__(7, lines[7].replace('3.0', 'x.0', 1)), 8, 'non-numeric'),
    (lambda lines: lines.__setitem__(2, 'nan ' + lines[2].split(' ', 1)[1]), 3, 'non-finite'),
  ],
)
def test_malformed_skeleton_file_is_skipped_with_line(manual, tmp_path, edit, line, reason):
  path = manual / SKELETONS / '0002-M.txt'
  lines = path.read_text().splitlines()
  edit(lines)
  path.write_text('\n'.join(lines) + '\n')
  builder = _prepare(manual, tmp_path / 'data', max_bad_fraction=0.5)
  assert sorted(_records(builder, 'train')) == ['0002-L_000', '0002-L_001']
  skips = builder.info.metadata['skips']['train']
  assert skips['files_seen'] == 2 and skips['files_bad'] == 1
  (bad,) = skips['bad_files']
  assert (bad['file'], bad['line']) == ('0002-M.txt', line) and reason in bad['reason']


def test_malformed_label_row_is_skipped_with_line(manual, tmp_path):
  (manual / LABELS / '0002-L.txt').write_text('5,1,8,1\n5,one,8,1\n')
  builder = _prepare(manual, tmp_path / 'data', max_bad_fraction=0.5)
  assert sorted(_records(builder, 'train')) == ['0002-M_000', '0002-M_001']
  (bad,) = builder.info.metadata['skips']['train']['bad_files']
  assert bad == {'file': '0002-L.txt', 'line': 2, 'reason': "non-integer field in '5,one,8,1'"}


def test_missing_skeleton_file_is_skipped(manual, tmp_path):
  (manual / SKELETONS / '0002-M.txt').unlink()
  builder = _prepare(manual, tmp_path / 'data', max_bad_fraction=0.5)
  (bad,) = builder.info.metadata['skips']['train']['bad_files']
  assert bad == {'file': '0002-M.txt', 'line': None, 'reason': 'missing PKU_Skeleton_Renew/ file'}


def test_split_without_segments_fails_clearly(manual, tmp_path):
  (manual / SKELETONS / '0003-R.txt').unlink()
  with pytest.raises(RuntimeError, match='the test split has no segments'):
    _prepare(manual, tmp_path / 'data', max_bad_fraction=1.0)


def test_label_out_of_range_is_a_bad_file(manual, tmp_path):
  (manual / LABELS / '0002-L.txt').write_text('52,1,8,1\n')
  builder = _prepare(manual, tmp_path / 'data', max_bad_fraction=0.5)
  (bad,) = builder.info.metadata['skips']['train']['bad_files']
  assert bad['line'] == 1 and 'outside 1..51' in bad['reason']


def test_too_many_bad_files_fail_the_build(manual, tmp_path):
  (manual / SKELETONS / '0002-M.txt').write_text('1 2 3\n')
  with pytest.raises(RuntimeError, match=r'1 of 2 raw files are bad.*0002-M\.txt:1: 3 values'):
    _prepare(manual, tmp_path / 'data')
  assert not list((tmp_path / 'data').rglob('dataset_info.json'))


def test_truncated_recording_drops_segments_past_its_end(manual, tmp_path):
  path = manual / SKELETONS / '0002-M.txt'
  path.write_text(''.join(path.read_text().splitlines(keepends=True)[:12]))  # 12 of 20 frames
  builder = _prepare(manual, tmp_path / 'data')
  assert '0002-M_001' not in _records(builder, 'train')  # frames 9..19
  skips = builder.info.metadata['skips']['train']
  assert skips['excluded'] == {'segments_out_of_range': 1} and skips['files_bad'] == 0


def test_reversed_and_empty_segments(manual, tmp_path):
  (manual / LABELS / '0002-L.txt').write_text('5,8,1,1\n13,10,18,2\n')
  path = manual / SKELETONS / '0002-L.txt'
  lines = path.read_text().splitlines(keepends=True)
  zero = ' '.join(['0.0000'] * 150) + '\n'
  path.write_text(''.join(lines[:10] + [zero] * 9 + lines[19:]))  # frames 10..18 untracked
  builder = _prepare(manual, tmp_path / 'data')
  train = _records(builder, 'train')
  assert train['0002-L_000']['n_frames'] == 8  # 8,1 read as 1..8
  assert '0002-L_001' not in train
  skips = builder.info.metadata['skips']['train']
  assert skips['segments_reversed'] == 1
  assert skips['excluded'] == {'segments_without_body': 1}


def test_examples_are_streamed_one_video_at_a_time(monkeypatch):
  parsed = []
  real = pku.parse_skeleton_file
  monkeypatch.setattr(pku, 'parse_skeleton_file', lambda text: parsed.append(1) or real(text))
  builder = pku.PkuMmd(config='part1_xsub', data_dir=str(DUMMY / 'unused'))
  examples = builder._generate_examples(
    str(DUMMY / SKELETONS), str(DUMMY / LABELS), ['0002-L', '0002-M', '0003-R'], 'train'
  )
  key, example = next(examples)
  assert key == '0002-L_000' and example['skeleton'].shape == (8, 2, 25, 3)
  assert len(parsed) == 1


def test_missing_manual_dir_fails_with_instructions(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'(?s)does not exist.*PKU_Skeleton_Renew'):
    _prepare(tmp_path / 'nope', tmp_path / 'data')


def test_missing_part_or_split_file_is_named(manual, tmp_path):
  shutil.rmtree(manual / 'part2')
  with pytest.raises(FileNotFoundError, match=r'no part2/ folder'):
    _prepare(manual, tmp_path / 'data', 'part2_xsub')
  (manual / 'part1' / 'cross-subject.txt').unlink()
  with pytest.raises(FileNotFoundError, match=r'no xsub split file.*cross-subject\.txt'):
    _prepare(manual, tmp_path / 'data')


def test_split_file_parsing():
  text = 'Training videos: \n0002-L, 0002-M, \nValidataion videos: \n0003-R, \n'
  assert pku.parse_split_file(text) == (['0002-L', '0002-M'], ['0003-R'])
  with pytest.raises(ValueError, match='needs a training and a validation list'):
    pku.parse_split_file('Training videos:\n0002-L,\n')
  with pytest.raises(ValueError, match='both a training and a validation'):
    pku.parse_split_file('Training videos:\n0002-L,\nValidation videos:\n0002-L\n')
  with pytest.raises(ValueError, match='before any'):
    pku.parse_split_file('0002-L, 0002-M\n')
