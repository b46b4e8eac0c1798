"""skeleton_folder: a user's own .npy skeleton sequences (see README.md and docs/data.md);
importing registers the builder."""

from tfds_builders.skeleton_folder.skeleton_folder_dataset_builder import (
  SkeletonFolder,
  SkeletonFolderConfig,
  read_index,
)

__all__ = ['SkeletonFolder', 'SkeletonFolderConfig', 'read_index']
