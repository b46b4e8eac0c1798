"""Writes the synthetic NTU `.skeleton` files in dummy_data/ (no real data).

Each body is a deterministic stick figure (a fixed standing pose whose arms
swing sinusoidally), written in the official text format with the projected
depth/colour coordinates, so the files exercise the real parser end to end.

  python -m tfds_builders.ntu_rgbd.dummy_data_generation

The sample set and what each file tests (see the builder test):
  S001C001P001R001A001  5 frames, 1 body
  S001C002P003R002A002  4 frames, 1 body, LF line endings (the rest are CRLF)
  S002C003P002R001A050  12 frames, 2 people + a spurious wide body in 2 frames
  S002C001P004R001A058  3 frames, 2 people
  S017C002P040R002A060  4 frames, frame 2 has no body (dropped: 3 stored)
  S003C001P007R001A010  0 frames (excluded: zero_frames)
  S004C003P005R001A020  3 frames, no body in any (excluded: no_bodies)
  S001C002P005R002A008  on the official NTU60 missing-skeleton list
  S018C001P045R001A061  NTU120 only, 3 frames, 1 body
  S019C002P046R002A120  NTU120 only, 3 frames, 2 people
  S032C003P106R001A100  NTU120 only, 3 frames, 1 body
  S019C001P046R001A075  on the official NTU120 missing-skeleton list
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DUMMY_DIR = Path(__file__).resolve().parent / 'dummy_data' / 'nturgb+d_skeletons'

# A standing pose in NTU joint order, metres relative to the spine base.
_POSE = np.array(
  [
    [0.0, 0.0, 0.0], [0.0, 0.3, 0.0], [0.0, 0.6, 0.0], [0.0, 0.75, 0.0],  # spine, neck, head
    [-0.18, 0.52, 0.0], [-0.25, 0.28, 0.0], [-0.28, 0.05, 0.0], [-0.29, -0.02, 0.0],  # left arm
    [0.18, 0.52, 0.0], [0.25, 0.28, 0.0], [0.28, 0.05, 0.0], [0.29, -0.02, 0.0],  # right arm
    [-0.09, -0.02, 0.0], [-0.1, -0.45, 0.0], [-0.1, -0.85, 0.0], [-0.1, -0.9, -0.1],  # left leg
    [0.09, -0.02, 0.0], [0.1, -0.45, 0.0], [0.1, -0.85, 0.0], [0.1, -0.9, -0.1],  # right leg
    [0.0, 0.52, 0.0], [-0.3, -0.08, 0.0], [-0.26, -0.03, 0.02],  # spine shoulder, left tips
    [0.3, -0.08, 0.0], [0.26, -0.03, 0.02],  # right tips
  ]
)  # fmt: skip
_ARM = np.array([5, 6, 7, 9, 10, 11, 21, 22, 23, 24])  # elbows, wrists, hands, tips, thumbs


def person(n_frames: int, x: float, phase: float) -> np.ndarray:
  """float [n_frames, 25, 3]: a figure at horizontal offset x, swinging its arms."""
  t = np.arange(n_frames)[:, None]
  xyz = np.repeat(_POSE[None] + np.array([x, 0.0, 3.0]), n_frames, axis=0)
  xyz[:, _ARM, 1] += 0.15 * np.sin(0.6 * t + phase)
  xyz[:, _ARM, 2] -= 0.1 * np.cos(0.6 * t + phase)
  xyz[:, :, 0] += 0.01 * t
  return xyz


def bar(n_frames: int) -> np.ndarray:
  """float [n_frames, 25, 3]: a wide, flat spurious 'body' (e.g. a table edge)."""
  xyz = np.zeros((n_frames, 25, 3))
  xyz[:, :, 0] = np.linspace(-1.0, 1.0, 25)
  xyz[:, :, 1] = -0.5
  xyz[:, :, 2] = 3.5
  return xyz


def _g(v: float) -> str:
  return f'{v:.7g}'


def skeleton_text(frames: list[list[tuple[int, np.ndarray]]], newline: str = '\r\n') -> str:
  """The `.skeleton` text of frames given as lists of (body_id, [25, 3] xyz)."""
  out = [str(len(frames))]
  for bodies in frames:
    out.append(str(len(bodies)))
    for body_id, xyz in bodies:
      out.append(f'{body_id} 0 1 1 1 1 0 0.01 -0.02 2')
      out.append('25')
      for x, y, z in xyz:
        depth = (256 + 365 * x / z, 212 - 365 * y / z)
        color = (960 + 1050 * x / z, 540 - 1050 * y / z)
        values = (x, y, z, *depth, *color, 1.0, 0.0, 0.0, 0.0)
        out.append(' '.join(map(_g, values)) + ' 2')
  return newline.join(out) + newline


def tracks_to_frames(n_frames: int, tracks: list[tuple[int, np.ndarray, int]]) -> list:
  """Frames from (body_id, xyz [n, 25, 3], first_frame) tracks, in track order."""
  frames = [[] for _ in range(n_frames)]
  for body_id, xyz, first in tracks:
    for i, pose in enumerate(xyz):
      frames[first + i].append((body_id, pose))
  return frames


_ID = 72057594037927936  # the tracker's IDs are large integers like this one


def dummy_samples() -> dict[str, str]:
  """Sample name -> file text for every dummy file."""
  one = lambda n, phase=0.0: tracks_to_frames(n, [(_ID + 1, person(n, 0.0, phase), 0)])  # noqa: E731
  two = lambda n: tracks_to_frames(  # noqa: E731
    n, [(_ID + 2, person(n, -0.5, 0.0), 0), (_ID + 3, person(n, 0.5, 1.0), 0)]
  )
  crowded = tracks_to_frames(
    12,
    [
      (_ID + 4, person(12, -0.5, 0.0), 0),
      (_ID + 5, person(12, 0.5, 2.0), 0),
      (_ID + 6, bar(2), 3),
    ],
  )
  gap = one(4, 0.5)
  gap[1] = []
  samples = {
    'S001C001P001R001A001': skeleton_text(one(5)),
    'S001C002P003R002A002': skeleton_text(one(4, 1.0), newline='\n'),
    'S002C003P002R001A050': skeleton_text(crowded),
    'S002C001P004R001A058': skeleton_text(two(3)),
    'S017C002P040R002A060': skeleton_text(gap),
    'S003C001P007R001A010': skeleton_text([]),
    'S004C003P005R001A020': skeleton_text([[], [], []]),
    'S001C002P005R002A008': skeleton_text([[], [], []]),
    'S018C001P045R001A061': skeleton_text(one(3, 2.0)),
    'S019C002P046R002A120': skeleton_text(two(3)),
    'S032C003P106R001A100': skeleton_text(one(3, 3.0)),
    'S019C001P046R001A075': skeleton_text([[], []]),
  }
  return samples


def write_benchmark_files(folder: Path) -> list[Path]:
  """Five synthetic files shaped like the real samples (70-124 frames, one with 2 people)."""
  paths = []
  for i, n in enumerate((82, 100, 71, 124)):
    paths.append(folder / f'S001C001P001R001A{i + 1:03d}.skeleton')
    paths[-1].write_bytes(skeleton_text(tracks_to_frames(n, [(_ID, person(n, 0, i), 0)])).encode())
  n = 70
  pair = [(_ID + 1, person(n, -0.5, 0), 0), (_ID + 2, person(n, 0.5, 1), 0)]
  paths.append(folder / 'S001C003P008R002A058.skeleton')
  paths[-1].write_bytes(skeleton_text(tracks_to_frames(n, pair)).encode())
  return paths


def main() -> None:
  DUMMY_DIR.mkdir(parents=True, exist_ok=True)
  for name, text in dummy_samples().items():
    # newline='' keeps the CRLF / LF endings exactly as generated.
    with open(DUMMY_DIR / f'{name}.skeleton', 'w', newline='') as f:
      f.write(text)
  print(f'wrote {len(dummy_samples())} files to {DUMMY_DIR}')


if __name__ == '__main__':
  main()
