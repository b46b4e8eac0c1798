"""Tests of the NTU parser, the body selection and the ntu_rgbd builder.

Builds run on the synthetic files in dummy_data/ (see dummy_data_generation.py
for what each file exercises); parser tests also read the five real samples in
../shared/data/ntu_rgbd_samples when they are present.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders.common import BadFileError
from tfds_builders.ntu_rgbd import dummy_data_generation as gen
from tfds_builders.ntu_rgbd import ntu_rgbd_dataset_builder as ntu
from tfds_builders.ntu_rgbd import skeleton_file
from tfds_builders.ntu_rgbd.skeleton_file import SkeletonRecords, parse_skeleton, select_bodies

REAL = Path(__file__).resolve().parents[2] / '..' / 'shared' / 'data' / 'ntu_rgbd_samples'
DUMMY = Path(__file__).resolve().parent / 'dummy_data'
DUMMY_FILES = DUMMY / ntu.FOLDER


def real_files() -> list[Path]:
  files = sorted(REAL.glob('*.skeleton'))
  if not files:
    pytest.skip(f'real NTU samples not found in {REAL}')
  return files


def reference_parse(text: str):
  """A plain line-by-line reader: (n_frames, frame per body, ids, xyz [N, 25, 3])."""
  lines = iter(text.splitlines())
  n_frames = int(next(lines))
  frames, ids, xyz = [], [], []
  for f in range(n_frames):
    for _ in range(int(next(lines))):
      ids.append(next(lines).split()[0].encode())
      joints = [[float(v) for v in next(lines).split()[:3]] for _ in range(int(next(lines)))]
      frames.append(f)
      xyz.append(joints)
  return n_frames, frames, ids, np.asarray(xyz, np.float32).reshape(-1, 25, 3)


# ---------------------------------------------------------------- parser


def test_real_files_match_header_and_reference_parser():
  for path in real_files():
    data = path.read_bytes()
    assert b'\r\n' in data  # the official files are CRLF
    records = parse_skeleton(data)
    n_frames, frames, ids, xyz = reference_parse(data.decode())
    assert records.n_frames == int(data.split(b'\r\n', 1)[0]) == n_frames
    np.testing.assert_array_equal(records.frame, frames)
    assert records.body_id == tuple(ids)
    np.testing.assert_array_equal(records.xyz, xyz)  # exactly float(token) in float32
    # LF endings give the same result.
    lf = parse_skeleton(data.replace(b'\r\n', b'\n'))
    np.testing.assert_array_equal(lf.xyz, records.xyz)


def test_real_two_body_file():
  path = REAL / 'S001C003P008R002A058.skeleton'
  if not path.exists():
    pytest.skip(f'{path} not found')
  records = parse_skeleton(path.read_bytes())
  assert len(set(records.body_id)) == 2 and records.xyz.shape == (140, 25, 3)
  out = select_bodies(records)
  assert out.shape == (70, 2, 25, 3)
  assert (np.abs(out).sum(axis=(2, 3)) > 0).all()  # both people present in every frame
  # Slot 0 is the body that appears first in the file.
  first = np.asarray([i for i, b in enumerate(records.body_id) if b == records.body_id[0]])
  np.testing.assert_array_equal(out[:, 0], records.xyz[first])


def test_dummy_files_match_reference_parser():
  for path in sorted(DUMMY_FILES.glob('*.skeleton')):
    data = path.read_bytes()
    records = parse_skeleton(data)
    n_frames, frames, ids, xyz = reference_parse(data.decode())
    assert records.n_frames == n_frames and records.body_id == tuple(ids)
    np.testing.assert_array_equal(records.frame, frames)
    np.testing.assert_array_equal(records.xyz, xyz)


def test_decimal_values_equal_python_float():
  rng = np.random.default_rng(0)  # test data only
  values = rng.normal(scale=3.0, size=2000) * 10.0 ** rng.integers(-6, 4, size=2000)
  texts = [f'{v:.7g}' for v in values] + ['0', '-0', '+1.5', '12.', '.25', '-0.000001', '1e-05']
  texts += ['123456789.012345', '1.2.3', '--1', '1-2', '.', '-', '1234567890123456']
  data = (' ' * 32 + ' '.join(texts) + ' ').encode()  # tokens too near the start fall back
  buf = np.frombuffer(data, np.uint8)
  starts, ends = skeleton_file._tokenize(buf)
  got, read = skeleton_file.decimal_values(buf, starts, ends)
  for text, value, ok in zip(texts, got, read, strict=True):
    try:
      expected = float(text)
    except ValueError:
      assert not ok, text  # malformed tokens are never read as numbers
      continue
    if ok:
      assert value == expected, text
    else:  # exponents and >15 digits are left to float()
      assert 'e' in text or len(text.strip('+-').replace('.', '')) > 15, text


def test_exponent_coordinates_go_through_float():
  text = gen.skeleton_text(gen.tracks_to_frames(1, [(7, gen.person(1, 0.0, 0.0), 0)]))
  text = text.replace('\r\n0 0.75 3 ', '\r\n1.5E-03 0.75 3 ', 1)
  records = parse_skeleton(text.encode())
  assert records.xyz[0, 3, 0] == np.float32(1.5e-3)


def _lines(text: str) -> list[str]:
  return text.split('\r\n')


def split_joint_line(line: str) -> list[str]:
  """One 12-value line as lines of 1, 1 and 10 values: same tokens, wrong lines."""
  v = line.split()
  return [v[0], v[1], ' '.join(v[2:])]


GOOD = gen.skeleton_text(gen.tracks_to_frames(2, [(7, gen.person(2, 0.0, 0.0), 0)]))


@pytest.mark.parametrize(
  'edit, line, reason',
  [
    (lambda ls: ls[:3] + ['24'] + ls[4:], 4, '24 joints, expected 25'),
    (lambda ls: ls[:6] + ['0.1 abc 3'] + ls[7:], 7, 'non-numeric'),
    (lambda ls: ls[:35], 31, 'file ends inside body 1 of frame 2'),
    (lambda ls: ['3'] + ls[1:], 57, 'file ends after 2 of 3 announced frames'),
    (lambda ls: ls[:7] + [ls[7] + ' 1'] + ls[8:], 8, 'line has 13 values'),
    (lambda ls: ls[:4] + split_joint_line(ls[4]) + ls[5:], 6, 'wrong kind of line'),
    (lambda ls: ls[:-1] + ['1', ''], 58, 'values after the last announced frame'),
    (lambda ls: ls[:9] + ['1.2.3' + ls[9][ls[9].index(' ') :]] + ls[10:], 10, "b'1.2.3'"),
    (lambda ls: ['x'], 1, 'non-numeric'),
    (lambda ls: [''], 1, 'empty file'),
  ],
)
def test_malformed_files_report_line_and_reason(edit, line, reason):
  data = '\r\n'.join(edit(_lines(GOOD))).encode()
  with pytest.raises(BadFileError, match=reason.replace('(', r'\(')) as err:
    parse_skeleton(data)
  assert err.value.line == line


# ---------------------------------------------------------------- body selection


def records_of(tracks, n_frames) -> SkeletonRecords:
  """SkeletonRecords from (body_id, xyz [n, 25, 3], first_frame) tracks."""
  frames = gen.tracks_to_frames(n_frames, tracks)
  flat = [(f, b, x) for f, bodies in enumerate(frames) for b, x in bodies]
  return SkeletonRecords(
    n_frames=n_frames,
    frame=np.asarray([f for f, _, _ in flat], np.int32),
    body_id=tuple(str(b).encode() for _, b, _ in flat),
    xyz=np.asarray([x for _, _, x in flat], np.float32).reshape(-1, 25, 3),
  )


def test_select_keeps_two_most_moving_in_order_of_appearance():
  still = np.repeat(gen.person(1, 2.0, 0.0), 20, axis=0)
  calm, lively = gen.person(20, 0.0, 0.0), gen.person(20, -1.0, 1.0)
  lively[:, :, 1] += 0.2 * np.sin(np.arange(20))[:, None]
  out = select_bodies(records_of([(1, still, 0), (2, calm, 0), (3, lively, 0)], 20))
  assert out.shape == (20, 2, 25, 3)
  np.testing.assert_allclose(out[:, 0], calm, rtol=1e-6)  # 'still' has the least energy
  np.testing.assert_allclose(out[:, 1], lively, rtol=1e-6)


def test_select_merges_non_overlapping_tracks_and_drops_spurious():
  a, b = gen.person(12, 0.0, 0.0), gen.person(12, 0.5, 1.0)
  tracks = [(1, a, 0), (2, gen.bar(12), 0), (3, b, 12), (4, gen.person(3, 1.0, 0.0), 5)]
  out = select_bodies(records_of(tracks, 24))
  # The bar (wide) and the 3-frame body (short) are dropped; a then b share slot 0.
  np.testing.assert_allclose(out[:12, 0], a, rtol=1e-6)
  np.testing.assert_allclose(out[12:, 0], b, rtol=1e-6)
  assert not out[:, 1].any()


def test_select_keeps_everything_when_all_look_spurious_and_drops_empty_frames():
  short = gen.person(3, 0.0, 0.0)
  out = select_bodies(records_of([(1, short, 2)], 6))
  assert out.shape == (3, 2, 25, 3)  # frames 0, 1 and 5 had no body
  np.testing.assert_allclose(out[:, 0], short, rtol=1e-6)


# ---------------------------------------------------------------- builder


def build(tmp_path, config, manual_dir, **kwargs):
  builder = ntu.NtuRgbd(config=config, data_dir=tmp_path / 'data', **kwargs)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  )
  return builder


def names(builder, split) -> set[str]:
  return {ex['file_name'].decode() for ex in builder.as_data_source()[split]}


def zip_variant(tmp_path) -> Path:
  """The dummy files packed like the official archives."""
  manual = tmp_path / 'manual_zip'
  manual.mkdir()
  for zip_name, setups in ((ntu.ZIP_60, range(1, 18)), (ntu.ZIP_120, range(18, 33))):
    with zipfile.ZipFile(manual / zip_name, 'w') as archive:
      for path in sorted(DUMMY_FILES.glob('*.skeleton')):
        if int(path.name[1:4]) in setups:
          archive.write(path, f'{ntu.FOLDER}/{path.name}')
  return manual


A, B, C, D, E = (
  'S001C001P001R001A001',
  'S001C002P003R002A002',
  'S002C003P002R001A050',
  'S002C001P004R001A058',
  'S017C002P040R002A060',
)
F, G, H = 'S018C001P045R001A061', 'S019C002P046R002A120', 'S032C003P106R001A100'


def test_ntu60_xsub_from_folder(tmp_path):
  builder = build(tmp_path, 'ntu60_xsub', DUMMY)
  assert 'tensorflow' not in sys.modules
  assert names(builder, 'train') == {A, C, D} and names(builder, 'test') == {B, E}
  assert builder.info.features['label'].num_classes == 60
  assert builder.info.features['label'].names[57] == 'handshaking'
  examples = {ex['file_name'].decode(): ex for ex in builder.as_data_source()['train']}
  ex = examples[C]
  assert (ex['label'], ex['subject'], ex['view'], ex['setup'], ex['replication']) == (
    49,
    2,
    3,
    2,
    1,
  )
  expected = select_bodies(parse_skeleton((DUMMY_FILES / f'{C}.skeleton').read_bytes()))
  np.testing.assert_array_equal(ex['skeleton'], expected)
  assert ex['n_frames'] == 12 and ex['skeleton'].shape == (12, 2, 25, 3)
  assert ex['skeleton'][:, 1].any()  # two people; the spurious third body went
  gap = {ex['file_name'].decode(): ex for ex in builder.as_data_source()['test']}[E]
  assert gap['n_frames'] == 3  # the frame without a body was removed
  # Counts travel with the data: reload the prepared dataset from disk.
  meta = ntu.NtuRgbd(config='ntu60_xsub', data_dir=tmp_path / 'data').info.metadata
  excluded = [meta['build'][s]['excluded'] for s in ('train', 'test')]
  assert excluded == [{'missing_skeleton_list': 1, 'no_bodies': 1}, {'zero_frames': 1}]
  assert meta['preprocessing']['body_selection']['min_frames'] == 11


def test_ntu60_xview_from_zip(tmp_path):
  builder = build(tmp_path, 'ntu60_xview', zip_variant(tmp_path))
  assert names(builder, 'train') == {B, C, E} and names(builder, 'test') == {A, D}


def test_ntu120_xsub_from_zips(tmp_path):
  builder = build(tmp_path, 'ntu120_xsub', zip_variant(tmp_path))
  assert names(builder, 'train') == {A, C, D, F, G} and names(builder, 'test') == {B, E, H}
  assert builder.info.features['label'].num_classes == 120
  build_meta = builder.info.metadata['build']
  assert sum(build_meta[s]['excluded'].get('missing_skeleton_list', 0) for s in build_meta) == 2


def test_ntu120_xset_from_folder(tmp_path):
  builder = build(tmp_path, 'ntu120_xset', DUMMY)
  assert names(builder, 'train') == {C, D, F, H} and names(builder, 'test') == {A, B, E, G}


def test_ntu120_without_the_second_archive_names_it(tmp_path):
  manual = zip_variant(tmp_path)
  (manual / ntu.ZIP_120).unlink()
  with pytest.raises(FileNotFoundError, match=ntu.ZIP_120):
    build(tmp_path, 'ntu120_xsub', manual)


def test_missing_manual_dir_fails_with_instructions(tmp_path):
  absent = tmp_path / 'nowhere'
  with pytest.raises(FileNotFoundError, match=ntu.ZIP_60) as err:
    build(tmp_path, 'ntu60_xsub', absent)
  assert str(absent) in str(err.value)
  unrelated = tmp_path / 'unrelated'
  unrelated.mkdir()
  (unrelated / 'README').write_text('not a skeleton')
  with pytest.raises(FileNotFoundError, match='no NTU .skeleton files'):
    build(tmp_path, 'ntu60_xsub', unrelated)


def with_bad_files(tmp_path) -> Path:
  manual = tmp_path / 'manual'
  shutil.copytree(DUMMY_FILES, manual / ntu.FOLDER)
  with open(DUMMY_FILES / f'{A}.skeleton', newline='') as f:
    good = _lines(f.read())
  bad = {
    'S005C001P001R001A001': good[:3] + ['20'] + good[4:],
    'S005C001P001R001A002': good[:6] + ['1 2 x'] + good[7:],
    'S005C001P003R001A003': good[:60],
  }
  for name, lines in bad.items():
    (manual / ntu.FOLDER / f'{name}.skeleton').write_bytes('\r\n'.join(lines).encode())
  return manual


def test_bad_files_are_skipped_and_reported(tmp_path):
  builder = build(tmp_path, 'ntu60_xsub', with_bad_files(tmp_path), max_bad_fraction=0.5)
  assert names(builder, 'train') == {A, C, D} and names(builder, 'test') == {B, E}
  bad = builder.info.metadata['build']['train']['bad_files']
  assert [(b['file'], b['line']) for b in bad] == [
    ('S005C001P001R001A001.skeleton', 4),
    ('S005C001P001R001A002.skeleton', 7),
  ]
  assert '20 joints' in bad[0]['reason'] and 'non-numeric' in bad[1]['reason']
  test_bad = builder.info.metadata['build']['test']
  assert test_bad['files_bad'] == 1 and 'file ends' in test_bad['bad_files'][0]['reason']


def test_too_many_bad_files_fail_and_leave_no_dataset(tmp_path):
  with pytest.raises(RuntimeError, match='raise max_bad_fraction'):
    build(tmp_path, 'ntu60_xsub', with_bad_files(tmp_path))  # config default: 5%
  assert not list((tmp_path / 'data').rglob('dataset_info.json'))


def test_interrupted_build_leaves_nothing_complete(tmp_path, monkeypatch):
  calls = []

  def crash_on_third(records, rule):
    calls.append(1)
    if len(calls) == 3:
      raise RuntimeError('simulated crash in the middle of the train split')
    return select_bodies(records, rule)

  monkeypatch.setattr(skeleton_file, 'select_bodies', crash_on_third)
  with pytest.raises(RuntimeError, match='simulated crash'):
    build(tmp_path, 'ntu60_xsub', DUMMY)
  assert not list((tmp_path / 'data').rglob('dataset_info.json'))
  assert not list((tmp_path / 'data').rglob('*.array_record*'))
  monkeypatch.undo()
  assert not ntu.NtuRgbd(config='ntu60_xsub', data_dir=tmp_path / 'data').data_path.exists()
  builder = build(tmp_path, 'ntu60_xsub', DUMMY)  # a rerun starts clean and completes
  assert builder.info.splits['train'].num_examples == 3


def test_official_lists_and_label_names():
  ntu60 = ntu.read_list('missing_skeletons_ntu60.txt')
  ntu120 = ntu.read_list('missing_skeletons_ntu120.txt')
  assert len(set(ntu60)) == 302 and len(set(ntu120)) == 535 and set(ntu60) <= set(ntu120)
  assert all(ntu.SAMPLE_NAME.fullmatch(n) for n in ntu120)
  labels = ntu.read_list('label_names_ntu120.txt')
  assert len(set(labels)) == 120 and labels[10] == 'reading' and labels[119].startswith('finger')
  assert len(ntu.XSUB_TRAIN_60) == 20 and len(set(ntu.XSUB_TRAIN_120)) == 53


def test_dummy_data_is_what_the_generator_writes():
  for name, text in gen.dummy_samples().items():
    assert (DUMMY_FILES / f'{name}.skeleton').read_bytes() == text.encode(), name


def test_build_from_real_samples(tmp_path):
  files = real_files()
  builder = build(tmp_path, 'ntu60_xview', REAL)  # the .skeleton files directly in manual_dir
  headers = {p.stem: int(p.read_bytes().split(b'\r\n', 1)[0]) for p in files}
  examples = [ex for split in ('train', 'test') for ex in builder.as_data_source()[split]]
  assert {ex['file_name'].decode(): int(ex['n_frames']) for ex in examples} == headers
  for ex in builder.as_data_source()['train']:
    assert ex['view'] in ntu.XVIEW_TRAIN_CAMERAS
  pair = [ex for ex in examples if ex['file_name'] == b'S001C003P008R002A058'][0]
  assert pair['label'] == 57 and pair['skeleton'][:, 1].any()
