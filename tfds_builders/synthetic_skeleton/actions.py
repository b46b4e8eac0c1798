"""The action library: each action is a few key poses in joint angles.

A key pose names anatomical degrees of freedom in degrees, e.g.
`{'shoulder_flex_r': 90}` lifts the right arm forward to horizontal. Suffix
`_l`, `_r` or `_lr` (both sides) picks the side. Between keys the angles follow
a minimum-jerk profile, the smooth point-to-point profile of human reaching, so a
motion played backwards is again a plausible motion. The reversed actions
(`stand up` is `sit down` backwards, etc.) are built by `reverse`, so the pairs
are exact time reverses in joint angles and differ only in the order of events.

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
    oscillation: optional (start, end, {dof: amplitude in degrees}, (min, max)
      cycles): a sinusoid added between two key times, e.g. waving.
    flight: optional (start, end): a ballistic hop between those times.
    two_person: a second person performs the same keys facing the first.
  """

  name: str
  keys: tuple[tuple[float, dict[str, float]], ...]
  seconds: float
  anchor: str = 'feet'
  oscillation: tuple | None = None
  flight: tuple[float, float] | None = None
  two_person: bool = False

  def __post_init__(self):
    times = [t for t, _ in self.keys]
    if times[0] != 0.0 or times[-1] != 1.0 or np.any(np.diff(times) <= 0):
      raise ValueError(f'{self.name}: key times must rise from 0 to 1, got {times}')


def reverse(action: Action, name: str) -> Action:
  """The same action played backwards in time."""
  return dataclasses.replace(
    action,
    name=name,
    keys=tuple((1.0 - t, p) for t, p in reversed(action.keys)),
    oscillation=None
    if action.oscillation is None
    else (1.0 - action.oscillation[1], 1.0 - action.oscillation[0], *action.oscillation[2:]),
    flight=None if action.flight is None else (1.0 - action.flight[1], 1.0 - action.flight[0]),
  )


def min_jerk(s: np.ndarray) -> np.ndarray:
  """Minimum-jerk 0 -> 1 profile; symmetric: 1 - f(1 - s) = f(s)."""
  s = np.clip(s, 0.0, 1.0)
  return s**3 * (10.0 - 15.0 * s + 6.0 * s**2)


def key_angles(times: np.ndarray, poses: np.ndarray, u: np.ndarray) -> np.ndarray:
  """Interpolates key poses [K, V, 3] at key times [K] to phases u [T] -> [T, V, 3]."""
  seg = np.clip(np.searchsorted(times, u, side='right') - 1, 0, len(times) - 2)
  s = min_jerk((u - times[seg]) / (times[seg + 1] - times[seg]))[:, None, None]
  return poses[seg] + s * (poses[seg + 1] - poses[seg])


_SIT = {
  'trunk_flex': 5,
  'hip_flex_lr': 88,
  'knee_flex_lr': 92,
  'shoulder_flex_lr': 30,
  'elbow_flex_lr': 45,
}
_SITTING_DOWN = {
  'trunk_flex': 35,
  'head_flex': 10,
  'hip_flex_lr': 45,
  'knee_flex_lr': 65,
  'shoulder_flex_lr': 25,
}
_HAND_UP = {'shoulder_flex_r': 165, 'shoulder_abd_r': 10, 'elbow_flex_r': 8, 'head_flex': -5}
_HAT_IN_FRONT = {
  'shoulder_flex_lr': 40,
  'shoulder_abd_lr': 10,
  'shoulder_hadd_lr': 15,
  'elbow_flex_lr': 85,
}
_HANDS_ON_HEAD = {
  'shoulder_flex_lr': 135,
  'shoulder_abd_lr': 30,
  'elbow_flex_lr': 100,
  'elbow_rot_lr': -45,
  'head_flex': 8,
}
_WAVE_UP = {
  'shoulder_abd_r': 85,
  'shoulder_flex_r': 15,
  'elbow_flex_r': 95,
  'elbow_rot_r': 80,
}
_CLAP = {'shoulder_flex_lr': 50, 'shoulder_hadd_lr': 13, 'elbow_flex_lr': 70}
_CUP_AT_MOUTH = {
  'shoulder_flex_r': 60,
  'shoulder_hadd_r': 20,
  'elbow_flex_r': 120,
  'elbow_rot_r': -30,
  'head_flex': -5,
}
_PHONE_AT_EAR = {
  'shoulder_flex_r': 110,
  'shoulder_abd_r': 20,
  'shoulder_hadd_r': -10,
  'elbow_flex_r': 130,
  'elbow_rot_r': -30,
  'head_flex': 5,
}
_POINT = {'shoulder_flex_r': 85, 'shoulder_abd_r': 10, 'elbow_flex_r': 5, 'head_turn': -5}
_SHAKE = {'shoulder_flex_r': 45, 'shoulder_hadd_r': 15, 'elbow_flex_r': 45}

_SIT_DOWN = Action('sit down', ((0.0, {}), (0.45, _SITTING_DOWN), (1.0, _SIT)), seconds=2.4)
_RAISE_HAND = Action(
  'raise hand',
  (
    (0.0, {}),
    (0.5, {'shoulder_flex_r': 80, 'shoulder_abd_r': 10, 'elbow_flex_r': 35}),
    (1.0, _HAND_UP),
  ),
  seconds=1.7,
)
_PUT_ON_HAT = Action(
  'put on a hat',
  (
    (0.0, _HAT_IN_FRONT),
    (0.4, _HANDS_ON_HEAD),
    (0.6, {**_HANDS_ON_HEAD, 'elbow_flex_lr': 108, 'head_flex': 4}),
    (1.0, {}),
  ),
  seconds=2.8,
)

ACTIONS = (
  _SIT_DOWN,
  reverse(_SIT_DOWN, 'stand up'),
  _RAISE_HAND,
  reverse(_RAISE_HAND, 'lower hand'),
  _PUT_ON_HAT,
  reverse(_PUT_ON_HAT, 'take off a hat'),
  Action(
    'hand waving',
    ((0.0, {}), (0.2, _WAVE_UP), (0.8, _WAVE_UP), (1.0, {})),
    seconds=3.0,
    oscillation=(0.2, 0.8, {'elbow_flex_r': 25}, (2.5, 4.5)),
  ),
  Action(
    'clapping',
    ((0.0, {}), (0.15, _CLAP), (0.85, _CLAP), (1.0, {})),
    seconds=2.6,
    oscillation=(0.15, 0.85, {'shoulder_hadd_lr': 11}, (4.0, 7.0)),
  ),
  Action(
    'drink water',
    ((0.0, {}), (0.35, _CUP_AT_MOUTH), (0.65, {**_CUP_AT_MOUTH, 'head_flex': -18}), (1.0, {})),
    seconds=2.6,
  ),
  Action(
    'phone call', ((0.0, {}), (0.25, _PHONE_AT_EAR), (0.8, _PHONE_AT_EAR), (1.0, {})), seconds=3.2
  ),
  Action('pointing', ((0.0, {}), (0.35, _POINT), (0.7, _POINT), (1.0, {})), seconds=2.0),
  Action(
    'kicking',
    (
      (0.0, {}),
      (0.3, {'hip_flex_r': -15, 'knee_flex_r': 70, 'trunk_flex': 5, 'shoulder_abd_lr': 15}),
      (
        0.5,
        {
          'hip_flex_r': 75,
          'knee_flex_r': 10,
          'ankle_flex_r': 20,
          'trunk_flex': -12,
          'shoulder_abd_lr': 20,
        },
      ),
      (0.75, {'hip_flex_r': 25, 'knee_flex_r': 50, 'shoulder_abd_lr': 10}),
      (1.0, {}),
    ),
    seconds=1.6,
    anchor='left',
  ),
  Action(
    'jump up',
    (
      (0.0, {}),
      (0.3, {'hip_flex_lr': 50, 'knee_flex_lr': 75, 'trunk_flex': 30, 'shoulder_flex_lr': -35}),
      (0.45, {'shoulder_flex_lr': 70, 'ankle_flex_lr': 25}),
      (0.62, {'hip_flex_lr': 10, 'knee_flex_lr': 15, 'shoulder_flex_lr': 40, 'ankle_flex_lr': 10}),
      (0.75, {'hip_flex_lr': 35, 'knee_flex_lr': 55, 'trunk_flex': 20, 'shoulder_flex_lr': 20}),
      (1.0, {}),
    ),
    seconds=2.0,
    flight=(0.43, 0.66),
  ),
  Action(
    'handshaking',
    ((0.0, {}), (0.3, _SHAKE), (0.75, _SHAKE), (1.0, {})),
    seconds=3.2,
    oscillation=(0.3, 0.75, {'elbow_flex_r': 8}, (2.0, 4.0)),
    two_person=True,
  ),
)

# (forward, backward) name pairs that are exact time reverses of each other.
REVERSE_PAIRS = (
  ('sit down', 'stand up'),
  ('raise hand', 'lower hand'),
  ('put on a hat', 'take off a hat'),
)


def by_name(name: str) -> Action:
  for action in ACTIONS:
    if action.name == name:
      return action
  raise ValueError(f'unknown action {name!r}; known: {[a.name for a in ACTIONS]}')
