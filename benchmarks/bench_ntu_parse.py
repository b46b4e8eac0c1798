"""Files parsed per second: our NTU `.skeleton` parser vs a line-by-line reader.

Both readers run side by side on the same copies of the real NTU samples in
../shared/data/ntu_rgbd_samples (or on synthetic files of the same shape when
that folder is absent), each turning a file into a [T, 2, 25, 3] xyz array.

  line-by-line  the peers' style (st-gcn's `read_skeleton` + `read_xyz`): read
                the file line by line, build a dict per body and per joint with
                every field as a Python float, then copy the first two bodies of
                each frame into the array.
  ours          `parse_skeleton` (one split of the whole file, integer offsets,
                one NumPy float conversion of the x, y, z tokens), alone and
                followed by `select_bodies` (tracks, denoising, slot assignment).

Speed is CPU time of this process (time.process_time), best of a few passes,
so other load on a shared machine does not skew the ratio; the files are read
from the page cache after the first pass. Peak memory is tracemalloc's peak
over a whole pass (a separate pass, so tracing does not touch the timings), for
N and 4N files, to show it stays flat in the number of files.

  python benchmarks/bench_ntu_parse.py [--copies 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfds_builders.ntu_rgbd import dummy_data_generation  # noqa: E402
from tfds_builders.ntu_rgbd.skeleton_file import parse_skeleton, select_bodies  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'ntu_rgbd_samples'


def line_by_line_read(path: Path) -> dict:
  """The peers' reader: one dict per frame, body and joint, every field a float."""
  fields = ('x', 'y', 'z', 'depthX', 'depthY', 'colorX', 'colorY')
  fields += ('orientationW', 'orientationX', 'orientationY', 'orientationZ', 'trackingState')
  info_keys = ('bodyID', 'clipedEdges', 'handLeftConfidence', 'handLeftState')
  info_keys += ('handRightConfidence', 'handRightState', 'isResticted', 'leanX', 'leanY')
  info_keys += ('trackingState',)
  with open(path) as f:
    sequence = {'numFrame': int(f.readline()), 'frameInfo': []}
    for _ in range(sequence['numFrame']):
      frame = {'numBody': int(f.readline()), 'bodyInfo': []}
      for _ in range(frame['numBody']):
        body = dict(zip(info_keys, map(float, f.readline().split()), strict=True))
        body['numJoint'] = int(f.readline())
        body['jointInfo'] = []
        for _ in range(body['numJoint']):
          values = map(float, f.readline().split())
          body['jointInfo'].append(dict(zip(fields, values, strict=True)))
        frame['bodyInfo'].append(body)
      sequence['frameInfo'].append(frame)
  return sequence


def line_by_line_xyz(path: Path, max_bodies: int = 2) -> np.ndarray:
  """[T, M, 25, 3]: the first `max_bodies` bodies of each frame, in file order."""
  seq = line_by_line_read(path)
  out = np.zeros((seq['numFrame'], max_bodies, 25, 3), np.float32)
  for t, frame in enumerate(seq['frameInfo']):
    for m, body in enumerate(frame['bodyInfo'][:max_bodies]):
      for v, joint in enumerate(body['jointInfo']):
        out[t, m, v] = (joint['x'], joint['y'], joint['z'])
  return out


def ours_parse(path: Path) -> np.ndarray:
  return parse_skeleton(path.read_bytes()).xyz


def ours_select(path: Path) -> np.ndarray:
  return select_bodies(parse_skeleton(path.read_bytes()))


READERS = {
  'line-by-line (peers)': line_by_line_xyz,
  'ours: parse': ours_parse,
  'ours: parse + select_bodies': ours_select,
}


def make_files(folder: Path, copies: int) -> list[Path]:
  """`copies` copies of each real sample (synthetic stand-ins when absent)."""
  sources = sorted(SAMPLES.glob('*.skeleton'))
  if not sources:
    print(f'{SAMPLES} not found: using synthetic files of the same shape')
    src = folder / 'src'
    src.mkdir()
    dummy_data_generation.write_benchmark_files(src)
    sources = sorted(src.glob('*.skeleton'))
  files = []
  for c in range(copies):
    for s in sources:
      dst = folder / f'{c:04d}_{s.name}'
      shutil.copyfile(s, dst)
      files.append(dst)
  return files


def files_per_second(reader, files, repeats: int) -> float:
  best = np.inf
  for _ in range(repeats):
    start = time.process_time()
    for p in files:
      reader(p)
    best = min(best, time.process_time() - start)
  return len(files) / best


def peak_mib(reader, files) -> float:
  tracemalloc.start()
  for p in files:
    reader(p)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  return peak / 2**20


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--copies', type=int, default=40, help='copies of each sample file')
  parser.add_argument('--repeats', type=int, default=3, help='timed passes; the best is kept')
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as tmp:
    files = make_files(Path(tmp), args.copies)
    for p in files[:5]:  # the readers must agree before their speed means anything
      ref = line_by_line_xyz(p)
      if not np.allclose(ref, ours_select(p), atol=1e-6):
        raise SystemExit(f'readers disagree on {p.name}')
    mib = sum(p.stat().st_size for p in files) / 2**20
    print(f'{len(files)} files, {mib:.1f} MiB, CPU time, best of {args.repeats} passes')
    print(f'{"reader":30s} {"files/s":>9s} {"MiB/s":>7s} {"peak MiB (N)":>13s} {"(4N)":>7s}')
    rates = {}
    for name, reader in READERS.items():
      rates[name] = files_per_second(reader, files, args.repeats)
      peak_n = peak_mib(reader, files)
      peak_4n = peak_mib(reader, files * 4)
      print(
        f'{name:30s} {rates[name]:9.1f} {rates[name] * mib / len(files):7.1f} '
        f'{peak_n:13.2f} {peak_4n:7.2f}'
      )
    base = rates['line-by-line (peers)']
    for name in list(READERS)[1:]:
      print(f'speed-up of {name!r} over line-by-line: {rates[name] / base:.1f}x')


if __name__ == '__main__':
  main()
