"""The action library: each action is a sequence of key poses in joint angles.

A key pose names anatomical degrees of freedom in degrees, e.g.
`{'shoulder_flex_r': 90}` lifts the right arm forward to horizontal. Suffix
`_l`, `_r` or `_lr` (both sides) picks the side. Between keys the angles follow
a minimum-jerk profile, the smooth point-to-point profile of human reaching, so a
motion played backwards is again a plausible motion.

Classes differ in *motion*, not in a static pose. Every action starts and ends
at the subject's rest posture, and the actions come in groups whose members visit
the same key poses for the same share of the time:

  strokes     a stroke goes rest -> key pose -> rest, the same way out and back
              (time-symmetric);
  order       'a, then b' and 'b, then a' are the same two strokes in the other
              order, and each is the exact time reverse of the other;
  rhythm      'a and b twice' is the same pose path at twice the pace, two
              rounds in the time of one; 'quick up, slow down' and 'slow up,
              quick down' are one stroke with an uneven pace, time reverses of
              each other with the same poses held for the same time.

So a model that sees which poses occur, and for how long, cannot tell a group's
members apart; it has to see the order of events or the rhythm.

Right-side degrees of freedom are defined as the mirror images of the left
ones, so a left-handed subject is the mirror image of the whole motion
(`kinematics.mirror_angles`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfds_builders.synthetic_skeleton import kinematics

# dof -> (joint, angle channel, sign) for the left side and the midline. Signs
# turn anatomical angles (flexion forward, abduction outward, positive = the
# usual direction of the movement) into (rx, ry, rz) of `kinematics`.
_DOFS = {
  'trunk_flex': ('SpineMid', 0, 1.0),
  'trunk_twist': ('SpineMid', 1, 1.0),  # + turns the chest to the left
  'trunk_side': ('SpineMid', 2, 1.0),
  'head_flex': ('Neck', 0, 1.0),
  'head_turn': ('Neck', 1, 1.0),
  'shoulder_flex': ('Shoulder{}', 0, -1.0),
  'shoulder_hadd': ('Shoulder{}', 1, -1.0),  # + swings the arm towards the midline
  'shoulder_abd': ('Shoulder{}', 2, 1.0),
  'elbow_flex': ('Elbow{}', 0, -1.0),
  'elbow_rot': ('Elbow{}', 1, 1.0),  # turns the forearm about the upper arm's axis
  'wrist_flex': ('Wrist{}', 0, -1.0),
  'hip_flex': ('Hip{}', 0, -1.0),
  'hip_abd': ('Hip{}', 2, 1.0),
  'knee_flex': ('Knee{}', 0, 1.0),
  'ankle_flex': ('Ankle{}', 0, 1.0),  # + points the toes down
}


def pose(spec: dict[str, float]) -> np.ndarray:
  """Key pose in degrees -> joint angles [V, 3] in radians."""
  out = np.zeros((kinematics.LAYOUT.num_joints, 3))
  for name, degrees in spec.items():
    base, _, side = name.rpartition('_')
    if side in ('l', 'r', 'lr') and base in _DOFS:
      sides = {'l': ('Left',), 'r': ('Right',), 'lr': ('Left', 'Right')}[side]
    elif name in _DOFS and '{}' not in _DOFS[name][0]:
      base, sides = name, ('',)
    else:
      raise ValueError(f'unknown degree of freedom {name!r}')
    joint_name, channel, sign = _DOFS[base]
    for s in sides:
      # Reflecting x keeps rx and negates ry and rz (see mirror_angles).
      mirror = -1.0 if s == 'Right' and channel > 0 else 1.0
      out[kinematics.joint(joint_name.format(s)), channel] += np.deg2rad(degrees) * sign * mirror
  return out


@dataclasses.dataclass(frozen=True)
class Action:
  """One action class.

  Attributes:
    name: the label name.
    keys: (time in [0, 1], key pose in degrees) pairs, times increasing, first at
      0 and last at 1; the pose is an offset from the subject's rest posture.
    seconds: typical duration of the action part of a clip.
    anchor: which feet stay planted: 'feet', 'left' or 'right'.
  """

  name: str
  keys: tuple[tuple[float, dict[str, float]], ...]
  seconds: float
  anchor: str = 'feet'

  def __post_init__(self):
    times = [t for t, _ in self.keys]
    if times[0] != 0.0 or times[-1] != 1.0 or np.any(np.diff(times) <= 0):
      raise ValueError(f'{self.name}: key times must rise from 0 to 1, got {times}')


def reverse(action: Action, name: str) -> Action:
  """The same action played backwards in time."""
  return dataclasses.replace(
    action, name=name, keys=tuple((1.0 - t, p) for t, p in reversed(action.keys))
  )


def strokes(name: str, poses, seconds: float, hold: float = 0.2) -> Action:
  """Rest -> pose -> rest for each pose in turn, each stroke in an equal share of
  the time, `hold` of its share spent still at the pose (time-symmetric strokes)."""
  keys = [(0.0, {})]
  share = 1.0 / len(poses)
  for i, p in enumerate(poses):
    start = i * share
    keys += [(start + share * (0.5 - hold / 2), p), (start + share * (0.5 + hold / 2), p)]
    keys.append((1.0 if i == len(poses) - 1 else start + share, {}))
  return Action(name, tuple(keys), seconds)


def min_jerk(s: np.ndarray) -> np.ndarray:
  """Minimum-jerk 0 -> 1 profile; symmetric: 1 - f(1 - s) = f(s)."""
  s = np.clip(s, 0.0, 1.0)
  return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


def key_angles(times: np.ndarray, poses: np.ndarray, u: np.ndarray) -> np.ndarray:
  """Interpolates key poses [K, V, 3] at key times [K] to phases u [T] -> [T, V, 3]."""
  seg = np.clip(np.searchsorted(times, u, side='right') - 1, 0, len(times) - 2)
  s = min_jerk((u - times[seg]) / (times[seg + 1] - times[seg]))[:, None, None]
  return poses[seg] + s * (poses[seg + 1] - poses[seg])


# Key poses, offsets from the rest posture. One-arm poses use the right arm.
_REACH = {'shoulder_flex_r': 90, 'shoulder_hadd_r': 10, 'elbow_flex_r': 10}
_SIDE = {'shoulder_abd_r': 85, 'elbow_flex_r': 10, 'head_turn': -10}
_HANDS_ON_HEAD = {
  'shoulder_flex_lr': 135,
  'shoulder_abd_lr': 30,
  'elbow_flex_lr': 100,
  'elbow_rot_lr': -45,
  'head_flex': 8,
}
_ARMS_WIDE = {'shoulder_abd_lr': 80, 'shoulder_flex_lr': 10, 'elbow_flex_lr': 10, 'head_flex': -5}
_BOW = {'trunk_flex': 45, 'head_flex': 15, 'shoulder_flex_lr': 15}
_SQUAT = {
  'hip_flex_lr': 80,
  'knee_flex_lr': 100,
  'trunk_flex': 25,
  'shoulder_flex_lr': 60,
  'elbow_flex_lr': 20,
}
_HAND_UP = {'shoulder_flex_r': 165, 'shoulder_abd_r': 10, 'elbow_flex_r': 8, 'head_flex': -5}


def _order_group(a: tuple[str, dict], b: tuple[str, dict], seconds: float) -> tuple[Action, ...]:
  """'a, then b', its reverse 'b, then a', and both twice at double pace (and reverse)."""
  (name_a, pose_a), (name_b, pose_b) = a, b
  once = strokes(f'{name_a}, then {name_b}', (pose_a, pose_b), seconds)
  twice = strokes(f'{name_a} and {name_b} twice', (pose_a, pose_b) * 2, seconds)
  return (
    once,
    reverse(once, f'{name_b}, then {name_a}'),
    twice,
    reverse(twice, f'{name_b} and {name_a} twice'),
  )


_QUICK_UP = Action(
  'raise hand quickly, lower it slowly',
  ((0.0, {}), (0.22, _HAND_UP), (0.38, _HAND_UP), (1.0, {})),
  seconds=2.2,
)

ACTIONS = (
  *_order_group(('reach forward', _REACH), ('arm out', _SIDE), seconds=2.6),
  *_order_group(('hands on head', _HANDS_ON_HEAD), ('arms wide', _ARMS_WIDE), seconds=2.8),
  *_order_group(('bow', _BOW), ('squat', _SQUAT), seconds=3.0),
  _QUICK_UP,
  reverse(_QUICK_UP, 'raise hand slowly, lower it quickly'),
)

# (forward, backward) name pairs that are exact time reverses of each other: labels
# 2k and 2k + 1.
REVERSE_PAIRS = tuple((ACTIONS[i].name, ACTIONS[i + 1].name) for i in range(0, len(ACTIONS), 2))


def by_name(name: str) -> Action:
  for action in ACTIONS:
    if action.name == name:
      return action
  raise ValueError(f'unknown action {name!r}; known: {[a.name for a in ACTIONS]}')
