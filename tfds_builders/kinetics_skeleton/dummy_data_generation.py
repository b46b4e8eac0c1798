"""Writes the synthetic `dummy_data/` used by the builder test, in the ST-GCN release format.

Run: `python tfds_builders/kinetics_skeleton/dummy_data_generation.py`. Poses are
smooth deterministic functions of (frame, person, joint), so the files are
reproducible byte for byte and contain no real data. The set includes the
release's irregular cases: a video flagged without skeleton, one flagged with
skeleton but holding no detection, 1-based frame indices, a frame index past
299 and a frame with more than five detections.
"""

from __future__ import annotations

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'dummy_data')
with open(os.path.join(HERE, 'label_names.txt'), encoding='utf-8') as f:
  LABEL_NAMES = [line.strip() for line in f if line.strip()]

# split infix -> video id -> (label_index, has_skeleton, frame indices, people per frame)
VIDEOS = {
  'train': {
    'synth_tr_01': (0, True, range(1, 13), 2),  # 1-based like the release
    'synth_tr_02': (58, True, range(0, 9), 3),
    'synth_tr_03': (399, False, range(0), 0),  # has_skeleton false: no data
    'synth_tr_04': (5, True, range(0, 4), 0),  # flagged, but no detection at all
  },
  'val': {
    'synth_va_01': (58, True, range(0, 10), 1),
    'synth_va_02': (399, True, (0, 1, 2, 3, 4, 5, 6, 300), 6),  # 300 is past the last slot
  },
}


def person(t: int, m: int, people: int, phase: float) -> dict:
  """One OpenPose detection: 18 (x, y) in [0, 1] and 18 confidences, 3 decimals.

  The most confident of the `people` detections rotates from frame to frame, so
  the per-frame ranking has something to do.
  """
  j = np.arange(18)
  x = 0.5 + 0.2 * np.sin(0.2 * t + 0.4 * j + m + phase)
  y = 0.5 + 0.2 * np.cos(0.3 * t + 0.5 * j + 2 * m)
  score = 0.9 - 0.12 * ((m + t) % people) + 0.05 * np.sin(t + j + phase)
  pose = np.stack([x, y], axis=-1).reshape(-1)
  return {'pose': [round(float(v), 3) for v in pose], 'score': [round(float(s), 3) for s in score]}


def write(out: str = OUT) -> None:
  for infix, videos in VIDEOS.items():
    folder = os.path.join(out, f'kinetics_{infix}')
    os.makedirs(folder, exist_ok=True)
    index = {}
    for i, (video_id, (label_index, has_skeleton, frames, people)) in enumerate(videos.items()):
      label = LABEL_NAMES[label_index]
      data = [
        {'frame_index': t, 'skeleton': [person(t, m, people, float(i)) for m in range(people)]}
        for t in frames
      ]
      with open(os.path.join(folder, video_id + '.json'), 'w', encoding='utf-8') as f:
        json.dump({'data': data, 'label': label, 'label_index': label_index}, f)
      index[video_id] = {'has_skeleton': has_skeleton, 'label': label, 'label_index': label_index}
    with open(os.path.join(out, f'kinetics_{infix}_label.json'), 'w', encoding='utf-8') as f:
      json.dump(index, f, indent=1)


if __name__ == '__main__':
  write()
  print(f'wrote {OUT}')
