"""ntu_rgbd: NTU RGB+D 60/120 skeletons (see README.md); importing registers the builder."""

from tfds_builders.ntu_rgbd.ntu_rgbd_dataset_builder import NtuConfig, NtuRgbd

__all__ = ['NtuConfig', 'NtuRgbd']
