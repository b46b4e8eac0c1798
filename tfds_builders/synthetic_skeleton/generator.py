"""Samples subjects and performances and renders them as Kinect-like skeletons.

One clip = one performance of one action by one subject, seen by one camera:

  subject      bone lengths (body size), handedness, rest posture, tempo;
               drawn once per subject id, so a subject has the same body in
               every clip.
  performance  clip length (speed), idle time before and after the action,
               the pace of each stroke (tempo varies between repetitions) and a
               smooth time warp (and within them), amplitude, per-key pose noise,
               which hand does it, sway, glances and a gesture of the free hand,
               a small drift and turn, the person's facing (+-45 degrees) and
               place on the floor.
  camera       one of three azimuths (-45, 0, +45 degrees, jittered) around
               the person, distance 2-4 m, height 0.5-1.8 m, aimed at the
               body; then Gaussian joint noise like Kinect's and, in some clips,
               tracking loss: a hand or foot held still or missing (all zeros,
               which skeljax reads as an absent joint) for a few frames.

Every clip draws from its own `np.random.default_rng([seed, subject, action,
replication, camera])`, so a clip does not depend on which other clips are generated or
in which order.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tfds_builders.synthetic_skeleton import actions as actions_lib
from tfds_builders.synthetic_skeleton import kinematics

FPS = 30
MIN_FRAMES, MAX_FRAMES = 40, 120
NUM_CAMERAS = 3
_CAMERA_AZIMUTH_DEG = {1: -45.0, 2: 0.0, 3: 45.0}
_ANKLE_HEIGHT = 0.08  # Kinect's ankle joint sits this far above the floor
_V = kinematics.LAYOUT.num_joints
# Kinect tracks hands and feet worse than the trunk.
_NOISE_SCALE = np.ones(_V)
for _name in ('HandLeft', 'HandRight', 'HandTipLeft', 'HandTipRight', 'ThumbLeft', 'ThumbRight'):
  _NOISE_SCALE[kinematics.joint(_name)] = 2.5
for _name in ('FootLeft', 'FootRight', 'AnkleLeft', 'AnkleRight'):
  _NOISE_SCALE[kinematics.joint(_name)] = 1.5
# What Kinect loses: a hand (with its tip and thumb), a wrist and the hand below it, a
# foot, an ankle and the foot below it.
_LOSABLE = tuple(
  tuple(kinematics.joint(f'{j}{side}') for j in chain)
  for side in ('Left', 'Right')
  for chain in (
    ('Hand', 'HandTip', 'Thumb'),
    ('Wrist', 'Hand', 'HandTip', 'Thumb'),
    ('Foot',),
    ('Ankle', 'Foot'),
  )
)


@dataclasses.dataclass(frozen=True)
class Sensor:
  """What the camera adds: joint noise and tracking loss.

  Attributes:
    noise: (low, high) metres; each clip draws its noise sigma uniformly in it.
    drop: fraction of clips with tracking loss (1-3 episodes of 2-15 frames).
  """

  noise: tuple[float, float] = (0.003, 0.010)
  drop: float = 0.3

  def __post_init__(self):
    if len(self.noise) != 2 or not 0.0 <= self.noise[0] <= self.noise[1] <= 0.05:
      raise ValueError(
        f'noise must be (low, high) metres with 0 <= low <= high <= 0.05, got {self.noise}'
      )
    if not 0.0 <= self.drop <= 1.0:
      raise ValueError(f'drop must be a fraction in [0, 1], got {self.drop}')


@dataclasses.dataclass(frozen=True)
class Subject:
  bone_lengths: np.ndarray  # [V] metres
  left_handed: bool  # uses the left hand in 75% of clips, a right-hander in 25%
  rest: np.ndarray  # [V, 3] rest posture angles, radians
  tempo: float  # personal speed: > 1 is slower (more frames)


def sample_subject(rng: np.random.Generator) -> Subject:
  rest = actions_lib.pose(
    {
      'shoulder_abd_lr': rng.uniform(4, 12),
      'elbow_flex_lr': rng.uniform(5, 20),
      'knee_flex_lr': rng.uniform(0, 6),
      'hip_abd_lr': rng.uniform(2, 6),
      'head_flex': rng.uniform(-5, 8),
      'trunk_flex': rng.uniform(-3, 6),
    }
  )
  return Subject(
    bone_lengths=kinematics.sample_bone_lengths(rng),
    left_handed=bool(rng.random() < 0.15),
    rest=rest,
    tempo=rng.uniform(0.85, 1.2),
  )


@functools.lru_cache(maxsize=256)
def subject_for(seed: int, subject: int) -> Subject:
  """The subject with this id: the same body in every clip it appears in."""
  return sample_subject(np.random.default_rng([seed, subject]))


def _bump(u: np.ndarray, start: float, end: float, ramp: float = 0.15) -> np.ndarray:
  """Smooth 0 -> 1 -> 0 envelope over [start, end] with min-jerk ramps."""
  s = (u - start) / (end - start)
  return actions_lib.min_jerk(s / ramp) * actions_lib.min_jerk((1.0 - s) / ramp)


def _clip_timing(rng, action, tempo):
  """Number of frames T and the action phase u(t) in [0, 1] for every frame.

  The action covers a random stretch of the clip (idle before and after) and
  its own pace drifts (a smooth monotone time warp), as people hesitate.
  """
  n_action = action.seconds * FPS * tempo * rng.uniform(0.7, 1.5)
  pre, post = rng.uniform(0.0, 0.7, size=2)
  n = int(np.clip(round(n_action * (1 + pre + post)), MIN_FRAMES, MAX_FRAMES))
  t = np.arange(n) * (1 + pre + post) / n  # in units of the action's duration
  u = np.clip(t - pre, 0.0, 1.0)
  warp = rng.uniform(-0.3, 0.3)  # |warp| < 1 keeps u increasing
  return n, np.clip(u + warp * np.sin(2 * np.pi * u) / (2 * np.pi), 0.0, 1.0)


def _key_times(rng, action) -> np.ndarray:
  """Key times [K]: every segment between keys lasts its nominal share times a
  log-normal factor, so strokes (and the rounds of a repeated path) differ in pace."""
  times = np.array([t for t, _ in action.keys])
  durations = np.diff(times) * np.exp(rng.normal(0.0, 0.2, len(times) - 1))
  return np.concatenate([[0.0], np.cumsum(durations) / durations.sum()])


def perform(rng, subject: Subject, action, u: np.ndarray):
  """Joint angles [T, V, 3] of one performance at action phases u [T]."""
  times = _key_times(rng, action)
  amplitude = rng.uniform(0.7, 1.15)
  keys = np.stack([actions_lib.pose(p) for _, p in action.keys]) * amplitude
  keys += np.where(keys != 0, rng.normal(0, np.deg2rad(7), keys.shape), 0.0)
  angles = subject.rest + actions_lib.key_angles(times, keys, u)

  # Sway while standing and the odd glance aside keep idle frames alive.
  seconds = np.arange(len(u)) / FPS
  for dof in ('trunk_flex', 'trunk_side', 'head_turn', 'head_flex', 'shoulder_flex_lr'):
    hz, phase, degrees = rng.uniform(0.15, 0.6), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2.5)
    sway = degrees * np.sin(2 * np.pi * hz * seconds + phase)
    angles += sway[:, None, None] * actions_lib.pose({dof: 1.0})
  if rng.random() < 0.3:
    start = rng.uniform(0, 0.7)
    glance = _bump(seconds / seconds[-1], start, start + 0.3, ramp=0.4)
    angles += glance[:, None, None] * actions_lib.pose({'head_turn': rng.uniform(-35, 35)})
  if rng.random() < 0.7:
    angles += _fidget(rng, action, seconds)
  return angles


# Things people do with a hand the action leaves free, as (key pose, how long
# it is held as a fraction of the clip). Written for the left hand; a clip done
# with the left hand is mirrored as a whole, so it lands on the free hand.
_FIDGETS = (
  ({'shoulder_abd_l': 35, 'elbow_flex_l': 100, 'elbow_rot_l': -30}, 0.6),  # hand on hip
  ({'shoulder_flex_l': -25, 'shoulder_hadd_l': 20, 'elbow_flex_l': 70}, 0.5),  # behind the back
  ({'shoulder_flex_l': 25, 'shoulder_hadd_l': 35, 'elbow_flex_l': 90}, 0.6),  # hand to belly
)


def _uses_left_arm(action) -> bool:
  return any(k.endswith(('_l', '_lr')) and 'shoulder' in k for _, p in action.keys for k in p)


def _fidget(rng, action, seconds: np.ndarray) -> np.ndarray:
  """[T, V, 3] angles of a free-hand gesture or of shifting weight between feet."""
  if _uses_left_arm(action) or rng.random() < 0.3:
    # Hips sway sideways and one knee gives a little, back and forth.
    hz, phase = rng.uniform(0.3, 0.8), rng.uniform(0, 2 * np.pi)
    sway = np.sin(2 * np.pi * hz * seconds + phase)
    shift = {'trunk_side': rng.uniform(2, 5), 'hip_abd_l': rng.uniform(2, 5), 'knee_flex_l': 4}
    return sway[:, None, None] * actions_lib.pose(shift)
  pose, hold = _FIDGETS[rng.integers(len(_FIDGETS))]
  start = rng.uniform(0.0, 1.0 - hold)
  envelope = _bump(seconds / seconds[-1], start, start + hold, ramp=0.3)
  return envelope[:, None, None] * actions_lib.pose(pose) * rng.uniform(0.7, 1.1)


def _flatten_feet(angles: np.ndarray, sides) -> np.ndarray:
  """Turns each planted foot back to flat: ankle pitch cancels hip + knee pitch."""
  out = angles.copy()
  for side in sides:
    hip, knee, ankle = (kinematics.joint(f'{j}{side}') for j in ('Hip', 'Knee', 'Ankle'))
    out[:, ankle, 0] -= angles[:, hip, 0] + angles[:, knee, 0]
  return out


def stand(angles, bone_lengths, action, mirrored: bool) -> np.ndarray:
  """Positions [T, V, 3], upright as in the body frame, with the planted ankles
  held at their height above the floor (y = 0) and where they stood in frame 0."""
  anchor = {'feet': ('Left', 'Right'), 'left': ('Left',), 'right': ('Right',)}[action.anchor]
  if mirrored:
    anchor = tuple({'Left': 'Right', 'Right': 'Left'}[s] for s in anchor)
  angles = _flatten_feet(angles, anchor)
  body = kinematics.forward_kinematics(angles, bone_lengths)
  planted = np.mean([body[:, kinematics.joint(f'Ankle{s}')] for s in anchor], axis=0)
  target = np.array([planted[0, 0], _ANKLE_HEIGHT, planted[0, 2]])
  return body + (target - planted)[:, None, :]


def render(rng, world: np.ndarray, camera: int, sensor: Sensor) -> np.ndarray:
  """World positions [T, V, 3] -> camera space [T, M=2, V, 3] + noise and tracking
  loss; the second person is all zeros."""
  azimuth = np.deg2rad(_CAMERA_AZIMUTH_DEG[camera] + rng.normal(0, 5))
  rotation, centre = kinematics.camera_pose(
    azimuth, rng.uniform(2.0, 4.0), rng.uniform(0.5, 1.8), rng.uniform(0.6, 1.0)
  )
  sigma = rng.uniform(*sensor.noise)
  out = np.zeros((world.shape[0], 2, _V, 3))
  noise = rng.normal(0, sigma, world.shape) * _NOISE_SCALE[:, None]
  out[:, 0] = kinematics.to_camera(world, rotation, centre) + noise
  if rng.random() < sensor.drop:
    out[:, 0] = lose_tracking(rng, out[:, 0])
  return out.astype(np.float32)


def lose_tracking(rng, person: np.ndarray) -> np.ndarray:
  """[T, V, 3] -> [T, V, 3] with 1-3 episodes of 2-15 frames in which a hand or a
  foot (`_LOSABLE`) is lost: held at its last tracked position (Kinect's inferred
  joints lag and freeze) or all zeros (not tracked; skeljax reads an all-zero joint as
  absent). The trunk, and so the centre joint, is never lost."""
  out = person.copy()
  t = len(out)
  for _ in range(rng.integers(1, 4)):
    joints = list(_LOSABLE[rng.integers(len(_LOSABLE))])
    length = int(rng.integers(2, 16))
    start = int(rng.integers(1, t - length))
    if rng.random() < 0.5:
      out[start : start + length, joints] = out[start - 1, joints]
    else:
      out[start : start + length, joints] = 0.0
  return out


def synthesize(
  seed: int, subject_id: int, label: int, replication: int, camera: int, sensor: Sensor = Sensor()
):
  """One clip: skeleton float32 [T, 2, V, 3] in camera space; person 2 is zeros."""
  if camera not in _CAMERA_AZIMUTH_DEG:
    raise ValueError(f'camera must be in {sorted(_CAMERA_AZIMUTH_DEG)}, got {camera}')
  if not 0 <= label < len(actions_lib.ACTIONS):
    raise ValueError(f'label must be in [0, {len(actions_lib.ACTIONS)}), got {label}')
  action = actions_lib.ACTIONS[label]
  subject = subject_for(seed, subject_id)
  rng = np.random.default_rng([seed, subject_id, label, replication, camera])
  n, u = _clip_timing(rng, action, subject.tempo)
  facing = rng.uniform(-45, 45)
  turn = rng.normal(0, 12) * actions_lib.min_jerk(np.linspace(-0.2, 1.2, n))

  angles = perform(rng, subject, action, u)
  mirrored = rng.random() < (0.75 if subject.left_handed else 0.25)
  if mirrored:
    angles = kinematics.mirror_angles(angles)
  body = stand(angles, subject.bone_lengths, action, mirrored)
  # A slow drift of a few centimetres: people shift their weight and step.
  drift = rng.normal(0, 0.03, size=3) * np.array([1, 0, 1])
  body += np.linspace(0, 1, n)[:, None, None] * drift
  # People turn a little while they act.
  yaws = kinematics.rotation_matrices(
    np.stack([np.zeros(n), np.deg2rad(facing + turn), np.zeros(n)], -1)
  )
  world = np.einsum('tij,tvj->tvi', yaws, body)
  world += np.array([rng.normal(0, 0.15), 0.0, rng.normal(0, 0.15)]) - world[0, 0] * [1, 0, 1]
  return render(rng, world, camera, sensor)
