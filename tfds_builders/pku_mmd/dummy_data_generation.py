"""Writes the synthetic `dummy_data/` used by the builder test, in PKU-MMD's raw format.

Run: `python tfds_builders/pku_mmd/dummy_data_generation.py`. The poses are a
fixed standing skeleton plus smooth deterministic motion, so the files are
reproducible byte for byte and contain no real data.
"""

from __future__ import annotations

import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dummy_data')
FRAMES = 20

# video id -> (persons, label rows "label,start,end,confidence" with 1-based labels)
VIDEOS = {
  'part1': {
    '0002-L': (1, ['5,1,8,1', '13,10,18,2']),
    '0002-M': (1, ['33,0,6,1', '34,9,19,1']),
    '0003-R': (2, ['14,2,11,2', '16,12,17,1']),
  },
  'part2': {
    'A01N01-L': (1, ['8,0,9,1', '41,11,19,2']),
    'A02N01-R': (2, ['27,3,14,1']),
  },
}
# (split file names, training ids, validation ids); phase 1 keeps the official header typo.
SPLITS = {
  'part1': {
    'cross-subject.txt': (['0002-L', '0002-M'], ['0003-R']),
    'cross-view.txt': (['0002-M', '0003-R'], ['0002-L']),
  },
  'part2': {
    'cross_subject_v2.txt': (['A01N01-L'], ['A02N01-R']),
    'cross_view_v2.txt': (['A02N01-R'], ['A01N01-L']),
  },
}
SKELETON_DIR = {'part1': 'PKU_Skeleton_Renew', 'part2': 'skeleton'}
LABEL_DIR = {'part1': 'Train_Label_PKU_final', 'part2': 'label'}


def synthetic_frames(persons: int, phase: float) -> np.ndarray:
  """float [FRAMES, 2, 25, 3] in metres; absent persons are zeros, as in PKU-MMD."""
  j = np.arange(25, dtype=np.float64)
  t = np.arange(FRAMES, dtype=np.float64)[:, None]
  out = np.zeros((FRAMES, 2, 25, 3))
  for p in range(persons):
    out[:, p, :, 0] = 0.6 * p - 0.3 + 0.1 * np.sin(0.3 * t + 0.5 * j + phase)
    out[:, p, :, 1] = 0.8 - 0.07 * j + 0.05 * np.cos(0.2 * t + j)
    out[:, p, :, 2] = 3.0 + 0.02 * np.sin(0.1 * t * (p + 1) + j)
  return out


def write(out: str = OUT) -> None:
  for part, videos in VIDEOS.items():
    root = os.path.join(out, part)
    os.makedirs(os.path.join(root, SKELETON_DIR[part]), exist_ok=True)
    os.makedirs(os.path.join(root, LABEL_DIR[part]), exist_ok=True)
    for i, (video, (persons, rows)) in enumerate(videos.items()):
      frames = synthetic_frames(persons, float(i)).reshape(FRAMES, -1)
      with open(os.path.join(root, SKELETON_DIR[part], video + '.txt'), 'w', newline='') as f:
        f.writelines(' '.join(f'{v:.4f}' for v in row) + '\n' for row in frames)
      with open(os.path.join(root, LABEL_DIR[part], video + '.txt'), 'w', newline='') as f:
        f.writelines(r + '\n' for r in rows)
    for name, (train, test) in SPLITS[part].items():
      with open(os.path.join(root, name), 'w', newline='') as f:
        f.write('Training videos: \n' + ', '.join(train) + ', \n')
        f.write('Validataion videos: \n' + ', '.join(test) + ', \n')


if __name__ == '__main__':
  write()
  print(f'wrote {OUT}')
