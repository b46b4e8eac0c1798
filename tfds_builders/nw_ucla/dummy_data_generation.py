"""Writes the synthetic NW-UCLA `all_sqe` JSON files in dummy_data/ (no real data).

Each sequence is a deterministic Kinect v1 stick figure (NW-UCLA joint order)
whose arms swing sinusoidally, written like the release:
{"file_name": ..., "skeletons": [T][20][3] (6 decimals), "label": 1..10}.

  python -m tfds_builders.nw_ucla.dummy_data_generation

  a01_s01_e00_v01  6 frames   xview train, xsub train
  a02_s02_e01_v02  5 frames   xview train, xsub train
  a12_s06_e00_v03  4 frames   xview test,  xsub test
  a04_s07_e02_v01  5 frames   xview train, xsub test
  a11_s03_e00_v03  4 frames   xview test,  xsub train
  a05_s10_e01_v02  1 frame    xview train, xsub test; kept (n_frames = 1)
  a06_s04_e00_v01  0 frames   xview train, xsub train; excluded (zero_frames)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DUMMY_DIR = Path(__file__).resolve().parent / 'dummy_data' / 'all_sqe'
ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)

# Hip centre, spine, shoulder centre, head, left arm (shoulder, elbow, wrist,
# hand), right arm, left leg (hip, knee, ankle, foot), right leg; metres.
_POSE = np.array(
  [
    [0.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.45, 0.0], [0.0, 0.62, 0.0],
    [-0.17, 0.4, 0.0], [-0.24, 0.15, 0.0], [-0.27, -0.08, 0.0], [-0.28, -0.15, 0.0],
    [0.17, 0.4, 0.0], [0.24, 0.15, 0.0], [0.27, -0.08, 0.0], [0.28, -0.15, 0.0],
    [-0.08, -0.05, 0.0], [-0.09, -0.48, 0.0], [-0.09, -0.88, 0.0], [-0.09, -0.93, -0.1],
    [0.08, -0.05, 0.0], [0.09, -0.48, 0.0], [0.09, -0.88, 0.0], [0.09, -0.93, -0.1],
  ]
)  # fmt: skip
_ARM = np.array([5, 6, 7, 9, 10, 11])

SEQUENCES = {
  'a01_s01_e00_v01': 6,
  'a02_s02_e01_v02': 5,
  'a12_s06_e00_v03': 4,
  'a04_s07_e02_v01': 5,
  'a11_s03_e00_v03': 4,
  'a05_s10_e01_v02': 1,
  'a06_s04_e00_v01': 0,
}


def sequence(n_frames: int, phase: float) -> np.ndarray:
  """float [n_frames, 20, 3]: the figure at about 3 m depth, swinging its arms."""
  t = np.arange(n_frames)[:, None]
  xyz = np.repeat(_POSE[None] + np.array([-0.5, 0.3, 3.2]), n_frames, axis=0)
  xyz[:, _ARM, 1] += 0.12 * np.sin(0.5 * t + phase)
  xyz[:, _ARM, 2] -= 0.08 * np.cos(0.5 * t + phase)
  return xyz


def sequence_json(name: str, n_frames: int) -> str:
  action = int(name[1:3])
  xyz = np.round(sequence(n_frames, phase=0.3 * action), 6)
  record = {'file_name': name, 'skeletons': xyz.tolist(), 'label': ACTION_IDS.index(action) + 1}
  return json.dumps(record)


def main() -> None:
  DUMMY_DIR.mkdir(parents=True, exist_ok=True)
  for name, n_frames in SEQUENCES.items():
    (DUMMY_DIR / f'{name}.json').write_text(sequence_json(name, n_frames))
  print(f'wrote {len(SEQUENCES)} files to {DUMMY_DIR}')


if __name__ == '__main__':
  main()
