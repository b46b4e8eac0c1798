"""Writes the synthetic `dummy_data/` folder used by the builder test.

Run from anywhere: `python tfds_builders/skeleton_folder/dummy_data_generation.py`.
The values are smooth deterministic functions of (frame, person, joint, channel),
so the files are reproducible byte for byte and contain no real data.
"""

from __future__ import annotations

import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dummy_data')
NUM_JOINTS, NUM_CHANNELS = 20, 3  # the kinect20 layout

LABEL_NAMES = ('sit', 'walk', 'wave')  # label k is LABEL_NAMES[k]

# name, label, split, subject, view, shape (persons axis omitted = [T, V, C])
SEQUENCES = (
  ('a01_walk', 1, 'train', '1', '1', (12, NUM_JOINTS, NUM_CHANNELS)),
  ('a02_wave', 2, 'train', '2', '1', (10, 2, NUM_JOINTS, NUM_CHANNELS)),
  ('a03_sit', 0, 'train', '2', '2', (8, 3, NUM_JOINTS, NUM_CHANNELS)),
  ('a04_walk', 1, 'test', '3', '2', (9, 1, NUM_JOINTS, NUM_CHANNELS)),
  ('a05_wave', 2, 'test', '', '', (11, NUM_JOINTS, NUM_CHANNELS)),
)


def synthetic_sequence(shape: tuple[int, ...], phase: float) -> np.ndarray:
  """A smooth float32 array of `shape`, different for every `phase`."""
  grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing='ij')
  value = phase + sum((0.1 + 0.37 * i) * g for i, g in enumerate(grids))
  return (np.sin(value) * 0.5).astype(np.float32)


def write(out: str = OUT) -> None:
  os.makedirs(os.path.join(out, 'sequences'), exist_ok=True)
  lines = ['name,label,split,subject,view']
  for i, (name, label, split, subject, view, shape) in enumerate(SEQUENCES):
    np.save(os.path.join(out, 'sequences', name + '.npy'), synthetic_sequence(shape, float(i)))
    lines.append(f'{name},{label},{split},{subject},{view}')
  with open(os.path.join(out, 'index.csv'), 'w', newline='') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(out, 'label_names.txt'), 'w', newline='') as f:
    f.write('\n'.join(LABEL_NAMES) + '\n')


if __name__ == '__main__':
  write()
  print(f'wrote {OUT}')
