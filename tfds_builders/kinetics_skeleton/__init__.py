"""kinetics_skeleton: ST-GCN's Kinetics-400 OpenPose skeletons (see README.md); importing
registers the builder."""

from tfds_builders.kinetics_skeleton.kinetics_skeleton_dataset_builder import (
  LABEL_NAMES,
  KineticsSkeleton,
  KineticsSkeletonConfig,
)

__all__ = ['LABEL_NAMES', 'KineticsSkeleton', 'KineticsSkeletonConfig']
