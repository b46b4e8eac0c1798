"""synthetic_skeleton: procedural actions in the NTU 25-joint layout; importing registers the
builder."""

from tfds_builders.synthetic_skeleton.synthetic_skeleton_dataset_builder import (
  SyntheticSkeleton,
  SyntheticSkeletonConfig,
)

__all__ = ['SyntheticSkeleton', 'SyntheticSkeletonConfig']
