"""A Kinect-v2-like body: bone lengths, rest pose, forward kinematics, cameras.

Frames and units (metres, radians):
  body frame    x = the person's left, y = up, z = the person's forward; the
                root (SpineBase) sits at the origin of its own frame.
  world frame   y = up, floor at y = 0.
  camera frame  Kinect v2 camera space: z = depth along the optical axis, y = up,
                x = y cross z (the sensor's left, so a person facing the camera
                has their left shoulder at smaller x than their right).

Joint angles are an array `angles: [T, V, 3]` of (rx, ry, rz) per joint. The
rotation at joint j turns every bone from j to its children, relative to j's
parent frame, as `R = Ry(ry) @ Rx(rx) @ Rz(rz)`: roll (abduction) first, then
pitch (flexion), then yaw. The root's rotation orients the whole body.

Everything here is deterministic; randomness comes in through an explicit
`np.random.Generator`, which is fine because this only generates data.
"""

from __future__ import annotations

import functools

import numpy as np

from skeljax import skeleton

LAYOUT = skeleton.NTU25
_J = {name: i for i, name in enumerate(LAYOUT.joint_names)}

# Rest pose of a 1.75 m adult standing with arms hanging: for each non-root
# joint, the direction of the bone from its parent (body frame) and a length in
# metres. Right-side entries are the mirror images of the left ones, so only the
# left side and the midline are written out.
_REST_LEFT_AND_MIDLINE = {
  'SpineMid': ((0.0, 1.0, -0.05), 0.26),
  'SpineShoulder': ((0.0, 1.0, 0.0), 0.24),
  'Neck': ((0.0, 1.0, 0.05), 0.07),
  'Head': ((0.0, 1.0, 0.1), 0.13),
  'ShoulderLeft': ((1.0, -0.15, 0.0), 0.17),
  'ElbowLeft': ((0.08, -1.0, 0.0), 0.27),
  'WristLeft': ((0.0, -1.0, 0.08), 0.24),
  'HandLeft': ((0.0, -1.0, 0.05), 0.08),
  'HandTipLeft': ((0.0, -1.0, 0.1), 0.07),
  'ThumbLeft': ((-0.3, -0.6, 0.7), 0.05),
  'HipLeft': ((1.0, -0.25, 0.0), 0.08),
  'KneeLeft': ((0.0, -1.0, 0.02), 0.41),
  'AnkleLeft': ((0.0, -1.0, -0.04), 0.39),
  'FootLeft': ((0.0, -0.35, 1.0), 0.13),
}


def _mirror_name(name: str) -> str:
  return LAYOUT.joint_names[LAYOUT.flip[_J[name]]]


@functools.cache
def _rest() -> tuple[np.ndarray, np.ndarray]:
  """Unit bone directions [V, 3] and mean bone lengths [V] (root: zero)."""
  directions = np.zeros((LAYOUT.num_joints, 3))
  lengths = np.zeros(LAYOUT.num_joints)
  for name, (direction, length) in _REST_LEFT_AND_MIDLINE.items():
    d = np.asarray(direction) / np.linalg.norm(direction)
    for target, sign in ((name, 1.0), (_mirror_name(name), -1.0)):
      directions[_J[target]] = d * (sign, 1.0, 1.0)
      lengths[_J[target]] = length
  missing = [
    n for j, n in enumerate(LAYOUT.joint_names) if LAYOUT.parents[j] >= 0 and not lengths[j]
  ]
  if missing:
    raise ValueError(f'rest pose lacks bones for {missing}')
  return directions, lengths


@functools.cache
def depth_levels() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
  """(joints, their parents) per tree depth, root excluded, parents first.

  Joints of one depth do not depend on each other, so forward kinematics
  handles each depth in one batched step.
  """
  depth = [0] * LAYOUT.num_joints
  for _ in range(LAYOUT.num_joints):  # NTU's order is not topological: relax
    depth = [0 if p < 0 else depth[p] + 1 for p in LAYOUT.parents]
  levels = []
  for d in range(1, max(depth) + 1):
    js = np.array([j for j in range(LAYOUT.num_joints) if depth[j] == d])
    levels.append((js, np.array([LAYOUT.parents[j] for j in js])))
  return tuple(levels)


def joint(name: str) -> int:
  """Index of a joint by its NTU name; unknown names fail loudly."""
  if name not in _J:
    raise ValueError(f'unknown NTU joint {name!r}')
  return _J[name]


def sample_bone_lengths(rng: np.random.Generator) -> np.ndarray:
  """Bone lengths [V] of one random subject (root entry zero).

  A global body scale (height 1.55-1.95 m) times a small per-bone factor, kept
  left/right symmetric so a subject's two arms match.
  """
  _, lengths = _rest()
  scale = rng.uniform(1.55, 1.95) / 1.75
  per_bone = rng.normal(1.0, 0.04, size=LAYOUT.num_joints).clip(0.9, 1.1)
  per_bone = 0.5 * (per_bone + per_bone[list(LAYOUT.flip)])
  return lengths * scale * per_bone


def rotation_matrices(angles: np.ndarray) -> np.ndarray:
  """[..., 3] (rx, ry, rz) in radians -> [..., 3, 3] `Ry(ry) @ Rx(rx) @ Rz(rz)`."""
  cx, cy, cz = np.cos(angles[..., 0]), np.cos(angles[..., 1]), np.cos(angles[..., 2])
  sx, sy, sz = np.sin(angles[..., 0]), np.sin(angles[..., 1]), np.sin(angles[..., 2])
  # The product written out: this runs for every joint of every frame.
  out = np.empty(angles.shape[:-1] + (3, 3))
  out[..., 0, 0] = cy * cz + sy * sx * sz
  out[..., 0, 1] = sy * sx * cz - cy * sz
  out[..., 0, 2] = sy * cx
  out[..., 1, 0] = cx * sz
  out[..., 1, 1] = cx * cz
  out[..., 1, 2] = -sx
  out[..., 2, 0] = cy * sx * sz - sy * cz
  out[..., 2, 1] = sy * sz + cy * sx * cz
  out[..., 2, 2] = cy * cx
  return out


def forward_kinematics(angles: np.ndarray, bone_lengths: np.ndarray) -> np.ndarray:
  """Joint positions in the body frame, root at the origin.

  Args:
    angles: [T, V, 3] joint angles (see the module docstring).
    bone_lengths: [V] metres, from `sample_bone_lengths`.

  Returns:
    [T, V, 3] positions. Bone lengths are exactly `bone_lengths` in every frame.
  """
  if angles.ndim != 3 or angles.shape[1:] != (LAYOUT.num_joints, 3):
    raise ValueError(f'angles must be [T, {LAYOUT.num_joints}, 3], got {angles.shape}')
  directions, _ = _rest()
  offsets = directions * bone_lengths[:, None]
  local = rotation_matrices(angles)
  root = LAYOUT.parents.index(-1)
  frames = np.empty_like(local)
  frames[:, root] = local[:, root]
  positions = np.zeros(angles.shape)
  for js, ps in depth_levels():
    # The bone to j hangs off its parent's frame; j's own rotation then turns
    # the bones below it.
    positions[:, js] = positions[:, ps] + (frames[:, ps] @ offsets[js, :, None])[..., 0]
    frames[:, js] = frames[:, ps] @ local[:, js]
  return positions


def mirror_angles(angles: np.ndarray) -> np.ndarray:
  """Left/right mirror image of a motion, [..., V, 3] -> [..., V, 3].

  Reflecting x conjugates Rx(a) to itself and Ry(b), Rz(c) to Ry(-b), Rz(-c),
  so a mirrored motion swaps the two sides and negates yaw and roll.
  """
  out = angles[..., list(LAYOUT.flip), :].copy()
  out[..., 1:] *= -1.0
  return out


def yaw_matrix(angle: float) -> np.ndarray:
  """[3, 3] rotation about the vertical axis."""
  return rotation_matrices(np.array([0.0, angle, 0.0]))


def camera_pose(azimuth: float, distance: float, height: float, target_height: float):
  """World-to-camera rotation [3, 3] and camera centre [3] for a camera on a
  circle of radius `distance` around the world origin, at `azimuth` radians from
  the world +z axis, `height` metres above the floor, aimed at the point
  `target_height` above the origin (which tilts it slightly)."""
  centre = np.array([distance * np.sin(azimuth), height, distance * np.cos(azimuth)])
  z_axis = np.array([0.0, target_height, 0.0]) - centre
  z_axis /= np.linalg.norm(z_axis)
  x_axis = np.cross([0.0, 1.0, 0.0], z_axis)
  x_axis /= np.linalg.norm(x_axis)
  y_axis = np.cross(z_axis, x_axis)
  return np.stack([x_axis, y_axis, z_axis]), centre


def to_camera(points: np.ndarray, rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
  """World points [..., 3] -> camera-space points [..., 3]."""
  return (points - centre) @ rotation.T
