"""How stable the view alignment is on real NW-UCLA clips, old rule against new.

    python -m benchmarks.view_align_stats --data=/path/to/nw_ucla/all_sqe

Reads every aAA_sSS_eEE_vVV.json there (the raw files; nothing is copied) and prints,
in degrees, percentiles over the clips of:

  shoulder vs hip     the angle between the shoulder and hip headings (right - left,
                      horizontal): at the first frame in the camera's horizontal plane
                      (what the old rule saw), and averaged over the first
                      transforms.ALIGN_FRAMES frames in the levelled frame (new rule)
  shoulder jitter     the range of the per-frame shoulder heading over frames 0-4
  spine tilt          the angle of the (5-frame mean) spine from the camera's vertical,
                      i.e. the pitch and roll the new rule removes; per view, the tilt
                      of the view's median spine (the camera's own pitch, the same for
                      every clip of a view) and how far each clip's 5-frame spine is from
                      it (the body's lean and noise, which levelling adds instead)
  heading vs hips     the angle between the new rule's heading and the hip heading
                      (5-frame, levelled); the old rule's is the shoulder-vs-hip line
  spine moves         how far the spine estimate turns when the clip starts 1-4 frames
                      later: one frame, the first ALIGN_FRAMES (the new rule), or the
                      mean over the whole window (an alternative, not used)
  start shift         how far the alignment rotation moves when the clip starts 1-4
                      frames later (max over the shifts of the rotation angle between
                      R(start s) and R(start 0)): two views of one sequence cropped at
                      nearby starts should get nearly the same rotation
  start shift (yaw)   the same, heading (yaw) part only

No training; about a minute on two cores.
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import numpy as np

from skeljax import skeleton, transforms

LAYOUT = skeleton.get_layout('kinect20')
SHIFTS = 5  # starts 0..4


def load(folder: pathlib.Path) -> list[np.ndarray]:
  from tfds_builders.nw_ucla import nw_ucla_dataset_builder as nw

  clips, views = [], []
  for path in sorted(folder.glob('*.json')):
    xyz = nw.parse_sequence(path.read_bytes(), path.stem)
    if len(xyz) >= SHIFTS + 1:
      clips.append(xyz)
      views.append(nw.parse_name(path.stem)['view'])
  return clips, np.asarray(views)


def heading(v):
  """Heading angle (degrees) of vectors [..., 3] in the x-z plane."""
  return np.rad2deg(np.arctan2(v[..., 2], v[..., 0]))


def wrap(a):
  return (a + 180.0) % 360.0 - 180.0


def old_rotation(clip):
  """The first-frame rule: yaw taking person 0's shoulder vector at frame 0 to +x."""
  ls, rs = LAYOUT.shoulders
  a = np.deg2rad(heading(clip[0, rs] - clip[0, ls]))
  return np.asarray(transforms.rotation_matrix(np.array([0.0, a, 0.0])))


def rotation_angle(a, b):
  """Angle (degrees) of the rotation a @ b.T, [..., 3, 3] each."""
  c = (np.trace(a @ np.swapaxes(b, -1, -2), axis1=-2, axis2=-1) - 1.0) / 2.0
  return np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0)))


def yaw_of(r):
  """Yaw (degrees) of a rotation: where it sends the +x axis, in the x-z plane."""
  return heading(r[..., 0, :])  # first row: the camera vector that goes to +x


def angle3(a, b):
  """Angle (degrees) between two 3-vectors."""
  c = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
  return np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0)))


def pct(name, values):
  q = np.percentile(values, [50, 90, 99, 100])
  print(
    f'{name:34s} median {q[0]:6.2f}  p90 {q[1]:6.2f}  p99 {q[2]:6.2f}  max {q[3]:6.2f}'
    f'  (> 20 deg: {100 * np.mean(np.asarray(values) > 20):4.1f}%)'
  )


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--data', default='../shared/data/nw_ucla/all_sqe')
  args = ap.parse_args()
  clips, views = load(pathlib.Path(args.data).expanduser())
  t_max = max(len(c) for c in clips)
  x = np.zeros((len(clips), 1, t_max, LAYOUT.num_joints, 3), np.float32)
  n = np.array([len(c) for c in clips])
  for i, c in enumerate(clips):
    x[i, 0, : len(c)] = c
  print(f'{len(clips)} NW-UCLA clips, {t_max} frames at most')

  @jax.jit
  def rotations(x, n):
    def one(xi, ni):
      mask = transforms.presence_mask(xi, ni)
      return transforms.view_rotation(xi[..., :3], mask, LAYOUT)

    return jax.vmap(one)(x, n)

  (ls, rs), (lh, rh) = LAYOUT.shoulders, LAYOUT.hips
  k = transforms.ALIGN_FRAMES
  sh, hp = x[:, 0, :, rs] - x[:, 0, :, ls], x[:, 0, :, rh] - x[:, 0, :, lh]  # [N, T, 3]
  new = np.stack([np.asarray(rotations(np.roll(x, -s, axis=2), n - s)) for s in range(SHIFTS)])
  old = np.stack([[old_rotation(c[s:]) for c in clips] for s in range(SHIFTS)])

  print('\nbody, as the camera sees it (degrees)')
  pct('shoulder vs hip, frame 0', np.abs(wrap(heading(sh[:, 0]) - heading(hp[:, 0]))))
  pct('shoulder jitter, frames 0-4', np.ptp(np.unwrap(heading(sh[:, :k]), period=360), axis=1))
  spine = (0.5 * (x[:, 0, :k, ls] + x[:, 0, :k, rs] - x[:, 0, :k, lh] - x[:, 0, :k, rh])).mean(1)
  spine = spine / np.linalg.norm(spine, axis=-1, keepdims=True)
  pct('spine tilt from +y, frames 0-4', np.rad2deg(np.arccos(spine[:, 1])))
  for v in np.unique(views):
    med = np.median(spine[views == v], axis=0)
    med = med / np.linalg.norm(med)
    off = np.rad2deg(np.arccos(np.clip(spine[views == v] @ med, -1, 1)))
    print(f'  view {v}: its median spine is {np.rad2deg(np.arccos(med[1])):.1f} deg from +y')
    pct(f'  view {v}: clip spine vs view median', off)
  # In the new rule's levelled frame: the 5-frame means, made horizontal.
  r0 = new[0]
  sh5 = np.einsum('nij,nj->ni', r0, sh[:, :k].mean(1))
  hp5 = np.einsum('nij,nj->ni', r0, hp[:, :k].mean(1))
  pct('shoulder vs hip, 5-frame, levelled', np.abs(wrap(heading(sh5) - heading(hp5))))
  pct('heading vs hips: new (bisector)', np.abs(wrap(0.0 - heading(hp5))))

  print('\nalignment rotation when the clip starts 1-4 frames later (degrees)')
  for name, rot in (('old (frame-0 shoulders)', old), ('new (5 frames, hips, spine)', new)):
    angle = np.max([rotation_angle(rot[s], rot[0]) for s in range(1, SHIFTS)], axis=0)
    yaw = np.max([np.abs(wrap(yaw_of(rot[s]) - yaw_of(rot[0]))) for s in range(1, SHIFTS)], 0)
    pct(f'{name}: angle', angle)
    pct(f'{name}: yaw', yaw)
  mid = 0.5 * (x[:, 0, :, ls] + x[:, 0, :, rs] - x[:, 0, :, lh] - x[:, 0, :, rh])  # [N, T, 3]

  def spine_shift(est):
    return np.max(
      [
        np.asarray([angle3(est(m[s:n_]), est(m[:n_])) for m, n_ in zip(mid, n, strict=True)])
        for s in range(1, SHIFTS)
      ],
      axis=0,
    )

  pct('spine moves: 1 frame', spine_shift(lambda m: m[0]))
  pct('spine moves: first 5 frames', spine_shift(lambda m: m[:k].mean(0)))
  pct('spine moves: whole window', spine_shift(lambda m: m.mean(0)))
  # How far the new rotation is from the old one (the change for each clip).
  pct('new vs old rotation, start 0', rotation_angle(new[0], old[0]))


if __name__ == '__main__':
  main()
