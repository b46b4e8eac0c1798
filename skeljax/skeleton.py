"""Joint layouts: the single source of truth for skeleton topology.

Every layout is declared once as joint names plus a parent per joint (a tree).
Edges, bones, the left/right flip permutation, hop distances and the ST-GCN
adjacency partitions are all *derived* from that declaration, never retyped.

Layouts:
  ntu25      NTU RGB+D / Kinect v2, 25 joints, xyz in metres.
  kinect20   Kinect SDK v1, 20 joints, in NW-UCLA order, xyz in metres.
  openpose18 OpenPose COCO-18 (Kinetics-skeleton), (x, y, confidence), image
             coordinates (y down).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass(frozen=True)
class Layout:
  """A skeleton topology.

  Attributes:
    name: registry name.
    joint_names: one name per joint; 'left'/'right' in a name drives `flip`.
    parents: parent index per joint, -1 for the root. Bones are (joint, parent).
    center: joint the ST-GCN partitions and normalisation centre on.
    shoulders: (left, right) joint indices used for view alignment.
    hips: (left, right) joint indices used for view alignment; the spine runs from
      the hips' midpoint to the shoulders' midpoint.
    channels: meaning of each coordinate channel, e.g. ('x', 'y', 'z').
    coord_dims: how many leading channels are spatial coordinates; the rest
      (e.g. a confidence score) are never touched by spatial augmentations.
    y_up: True when channel y points up (camera space: Kinect, NTU); False when
      it points down (image coordinates: OpenPose pixels, normalised or not).
  """

  name: str
  joint_names: tuple[str, ...]
  parents: tuple[int, ...]
  center: int
  shoulders: tuple[int, int]
  hips: tuple[int, int]
  channels: tuple[str, ...]
  coord_dims: int
  y_up: bool = True

  def __post_init__(self):
    if len(self.parents) != len(self.joint_names):
      raise ValueError(f'{self.name}: {len(self.parents)} parents for {self.num_joints} joints')
    if sum(p < 0 for p in self.parents) != 1:
      raise ValueError(f'{self.name}: a layout needs exactly one root')
    for what, (left, right) in (('shoulders', self.shoulders), ('hips', self.hips)):
      if left == right or self.flip[left] != right:
        raise ValueError(f'{self.name}: {what} must be a (left, right) pair of mirror joints')

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  @property
  def num_channels(self) -> int:
    return len(self.channels)

  @property
  def bones(self) -> tuple[tuple[int, int], ...]:
    """(child, parent) pairs, one per non-root joint."""
    return tuple((j, p) for j, p in enumerate(self.parents) if p >= 0)

  @property
  def edges(self) -> tuple[tuple[int, int], ...]:
    """Undirected edges (sorted pairs) of the skeleton graph."""
    return tuple(sorted((min(a, b), max(a, b)) for a, b in self.bones))

  @functools.cached_property
  def flip(self) -> tuple[int, ...]:
    """Permutation mapping each joint to its mirror joint (left <-> right)."""
    index = {n: i for i, n in enumerate(self.joint_names)}
    perm = []
    for n in self.joint_names:
      low = n.lower()
      if 'left' in low:
        mirror = n.replace('left', 'right').replace('Left', 'Right')
      elif 'right' in low:
        mirror = n.replace('right', 'left').replace('Right', 'Left')
      else:
        mirror = n
      if mirror not in index:
        raise ValueError(f'{self.name}: joint {n!r} has no mirror {mirror!r}')
      perm.append(index[mirror])
    return tuple(perm)

  @functools.cached_property
  def hop_distance(self) -> np.ndarray:
    """[V, V] shortest path length in edges (inf where disconnected)."""
    v = self.num_joints
    adj = np.eye(v, dtype=bool)
    for a, b in self.edges:
      adj[a, b] = adj[b, a] = True
    dist = np.full((v, v), np.inf)
    reach = np.eye(v, dtype=bool)
    dist[reach] = 0
    step = adj.astype(np.int64)
    for d in range(1, v):
      reach_next = (reach.astype(np.int64) @ step) > 0
      dist[reach_next & ~reach] = d
      if (reach_next == reach).all():
        break
      reach = reach_next
    return dist

  def adjacency(self, strategy: str = 'spatial') -> np.ndarray:
    """ST-GCN adjacency partitions, float32 [K, V, V], column-normalised.

    `A[k, j, i]` weights the message from joint j to joint i, so a graph conv
    is `einsum('...jc,kji->...kic', x, A)` (K partitions of neighbours of i).

    Strategies (Yan et al., 2018):
      uniform:  K=1, the normalised 1-hop neighbourhood with self loops.
      distance: K=2, self vs 1-hop neighbours.
      spatial:  K=3, self / centripetal (closer to `center`) / centrifugal.
    """
    hop = self.hop_distance
    near = hop <= 1
    deg = near.sum(axis=0).astype(np.float64)
    norm = np.where(near, 1.0 / deg[None, :], 0.0)  # normalise by receiver degree
    if strategy == 'uniform':
      parts = [norm]
    elif strategy == 'distance':
      parts = [np.where(hop == 0, norm, 0.0), np.where(hop == 1, norm, 0.0)]
    elif strategy == 'spatial':
      to_center = hop[:, self.center]
      j_dist, i_dist = to_center[:, None], to_center[None, :]
      self_or_equal = (hop == 0) | ((hop == 1) & (j_dist == i_dist))
      centripetal = (hop == 1) & (j_dist < i_dist)
      centrifugal = (hop == 1) & (j_dist > i_dist)
      parts = [np.where(m, norm, 0.0) for m in (self_or_equal, centripetal, centrifugal)]
    else:
      raise ValueError(f'unknown adjacency strategy {strategy!r}; use uniform, distance or spatial')
    return np.stack(parts).astype(np.float32)


def _layout(name, joints, center, shoulders, hips, channels, coord_dims, y_up=True):
  names, parents = zip(*joints, strict=True)
  index = {n: i for i, n in enumerate(names)}
  parent_idx = tuple(-1 if p is None else index[p] for p in parents)
  return Layout(
    name=name,
    joint_names=tuple(names),
    parents=parent_idx,
    center=index[center],
    shoulders=(index[shoulders[0]], index[shoulders[1]]),
    hips=(index[hips[0]], index[hips[1]]),
    channels=channels,
    coord_dims=coord_dims,
    y_up=y_up,
  )


NTU25 = _layout(
  'ntu25',
  [
    ('SpineBase', None),
    ('SpineMid', 'SpineBase'),
    ('Neck', 'SpineShoulder'),
    ('Head', 'Neck'),
    ('ShoulderLeft', 'SpineShoulder'),
    ('ElbowLeft', 'ShoulderLeft'),
    ('WristLeft', 'ElbowLeft'),
    ('HandLeft', 'WristLeft'),
    ('ShoulderRight', 'SpineShoulder'),
    ('ElbowRight', 'ShoulderRight'),
    ('WristRight', 'ElbowRight'),
    ('HandRight', 'WristRight'),
    ('HipLeft', 'SpineBase'),
    ('KneeLeft', 'HipLeft'),
    ('AnkleLeft', 'KneeLeft'),
    ('FootLeft', 'AnkleLeft'),
    ('HipRight', 'SpineBase'),
    ('KneeRight', 'HipRight'),
    ('AnkleRight', 'KneeRight'),
    ('FootRight', 'AnkleRight'),
    ('SpineShoulder', 'SpineMid'),
    ('HandTipLeft', 'HandLeft'),
    ('ThumbLeft', 'HandLeft'),
    ('HandTipRight', 'HandRight'),
    ('ThumbRight', 'HandRight'),
  ],
  center='SpineShoulder',
  shoulders=('ShoulderLeft', 'ShoulderRight'),
  hips=('HipLeft', 'HipRight'),
  channels=('x', 'y', 'z'),
  coord_dims=3,
)

KINECT20 = _layout(
  'kinect20',
  [
    ('HipCenter', None),
    ('Spine', 'HipCenter'),
    ('ShoulderCenter', 'Spine'),
    ('Head', 'ShoulderCenter'),
    ('ShoulderLeft', 'ShoulderCenter'),
    ('ElbowLeft', 'ShoulderLeft'),
    ('WristLeft', 'ElbowLeft'),
    ('HandLeft', 'WristLeft'),
    ('ShoulderRight', 'ShoulderCenter'),
    ('ElbowRight', 'ShoulderRight'),
    ('WristRight', 'ElbowRight'),
    ('HandRight', 'WristRight'),
    ('HipLeft', 'HipCenter'),
    ('KneeLeft', 'HipLeft'),
    ('AnkleLeft', 'KneeLeft'),
    ('FootLeft', 'AnkleLeft'),
    ('HipRight', 'HipCenter'),
    ('KneeRight', 'HipRight'),
    ('AnkleRight', 'KneeRight'),
    ('FootRight', 'AnkleRight'),
  ],
  center='Spine',
  shoulders=('ShoulderLeft', 'ShoulderRight'),
  hips=('HipLeft', 'HipRight'),
  channels=('x', 'y', 'z'),
  coord_dims=3,
)

OPENPOSE18 = _layout(
  'openpose18',
  [
    ('Nose', 'Neck'),
    ('Neck', None),
    ('RightShoulder', 'Neck'),
    ('RightElbow', 'RightShoulder'),
    ('RightWrist', 'RightElbow'),
    ('LeftShoulder', 'Neck'),
    ('LeftElbow', 'LeftShoulder'),
    ('LeftWrist', 'LeftElbow'),
    ('RightHip', 'RightShoulder'),
    ('RightKnee', 'RightHip'),
    ('RightAnkle', 'RightKnee'),
    ('LeftHip', 'LeftShoulder'),
    ('LeftKnee', 'LeftHip'),
    ('LeftAnkle', 'LeftKnee'),
    ('RightEye', 'Nose'),
    ('LeftEye', 'Nose'),
    ('RightEar', 'RightEye'),
    ('LeftEar', 'LeftEye'),
  ],
  center='Neck',
  shoulders=('LeftShoulder', 'RightShoulder'),
  hips=('LeftHip', 'RightHip'),
  channels=('x', 'y', 'confidence'),
  coord_dims=2,
  y_up=False,  # image coordinates
)

LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (NTU25, KINECT20, OPENPOSE18)}


def get_layout(name: str) -> Layout:
  """Returns the layout registered under `name`; unknown names fail loudly."""
  try:
    return LAYOUTS[name]
  except KeyError:
    raise ValueError(f'unknown joint layout {name!r}; choose one of {sorted(LAYOUTS)}') from None
