"""How hard synthetic_skeleton is for shallow models: the numpy rows of the README.

  python -m tfds_builders.synthetic_skeleton.difficulty [default|tiny]

Generates the config's clips directly (no TFDS), keeps the first person's xyz resampled
to 30 frames and centred on the first frame's SpineBase, z-scores each feature set on the
training split and reports nearest class centroid and ridge regression (lambda 1-1000,
each picked on the test split, so an upper bound) on three feature sets: the
time-averaged pose (the static cue), mean pose + mean absolute velocity, and the whole
resampled clip.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tfds_builders.synthetic_skeleton import generator, kinematics
from tfds_builders.synthetic_skeleton import synthetic_skeleton_dataset_builder as ssb

FRAMES = 30
LAMBDAS = (1.0, 10.0, 100.0, 1000.0)


def resample(x: np.ndarray, frames: int = FRAMES) -> np.ndarray:
  """[T, ...] -> [frames, ...] by linear interpolation in time."""
  pos = np.linspace(0, len(x) - 1, frames)
  lo = np.floor(pos).astype(int)
  hi = np.minimum(lo + 1, len(x) - 1)
  w = (pos - lo).reshape(-1, *([1] * (x.ndim - 1)))
  return x[lo] * (1 - w) + x[hi] * w


def clips(config, split: str) -> tuple[np.ndarray, np.ndarray]:
  """[N, FRAMES, V, 3] centred first-person clips and [N] labels of one split."""
  xs, ys = [], []
  for subject in config.subjects(split):
    for label in range(len(ssb.LABEL_NAMES)):
      for rep in range(1, config.replications + 1):
        camera = ssb.camera_for(subject, label, rep, config.views)
        x = generator.synthesize(config.seed, subject, label, rep, camera, config.sensor())
        x = resample(x[:, 0])
        xs.append(x - x[0, kinematics.joint('SpineBase')])
        ys.append(label)
  return np.asarray(xs), np.asarray(ys)


def scores(train, test) -> tuple[float, float]:
  """(nearest-centroid, best ridge) test top-1 in % on z-scored features."""
  (xtr, ytr), (xte, yte) = train, test
  mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
  xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
  k = int(ytr.max()) + 1
  centroids = np.stack([xtr[ytr == c].mean(0) for c in range(k)])
  nearest = np.argmin(((xte[:, None] - centroids[None]) ** 2).sum(-1), 1)
  targets = np.eye(k)[ytr]
  gram = xtr @ xtr.T
  ridge = []
  for lam in LAMBDAS:  # the dual form: the features outnumber the clips
    w = xtr.T @ np.linalg.solve(gram + lam * np.eye(len(xtr)), targets)
    ridge.append(np.mean((xte @ w).argmax(1) == yte))
  return 100 * float(np.mean(nearest == yte)), 100 * float(max(ridge))


FEATURES = {
  'time-averaged pose': lambda x: x.mean(1).reshape(len(x), -1),
  'mean pose + mean |velocity|': lambda x: np.concatenate(
    [x.mean(1), np.abs(np.diff(x, axis=1)).mean(1)], -1
  ).reshape(len(x), -1),
  f'clip resampled to {FRAMES} frames': lambda x: x.reshape(len(x), -1),
}


def main(name: str = 'default') -> None:
  configs = {c.name: c for c in ssb.SyntheticSkeleton.BUILDER_CONFIGS}
  if name not in configs:
    raise SystemExit(f'unknown config {name!r}; known: {sorted(configs)}')
  t0 = time.perf_counter()
  data = {split: clips(configs[name], split) for split in ('train', 'test')}
  n = sum(len(y) for _, y in data.values())
  print(f'{name}: {n} clips in {time.perf_counter() - t0:.1f} s')
  for label, feature in FEATURES.items():
    train, test = ((feature(x), y) for x, y in (data['train'], data['test']))
    nc, ridge = scores(train, test)
    print(f'{label:32s} nearest centroid {nc:5.1f}%  ridge {ridge:5.1f}%')


if __name__ == '__main__':
  main(*sys.argv[1:2])
