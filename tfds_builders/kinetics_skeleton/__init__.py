"""kinetics_skeleton: ST-GCN's Kinetics-400 OpenPose skeletons (see README.md)."""

from tfds_builders.kinetics_skeleton.kinetics_skeleton_dataset_builder import (
  LABEL_NAMES,
  KineticsSkeleton,
  KineticsSkeletonConfig,
)

BUILDER_CLASS = KineticsSkeleton

__all__ = ['BUILDER_CLASS', 'LABEL_NAMES', 'KineticsSkeleton', 'KineticsSkeletonConfig']
