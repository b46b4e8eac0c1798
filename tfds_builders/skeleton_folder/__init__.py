"""skeleton_folder: a user's own .npy skeleton sequences (see README.md)."""

from tfds_builders.skeleton_folder.skeleton_folder_dataset_builder import (
  SkeletonFolder,
  SkeletonFolderConfig,
  make_builder,
  read_index,
)

BUILDER_CLASS = SkeletonFolder

__all__ = ['BUILDER_CLASS', 'SkeletonFolder', 'SkeletonFolderConfig', 'make_builder', 'read_index']
