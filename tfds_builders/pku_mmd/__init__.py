"""pku_mmd: PKU-MMD phase 1/2 action segments (see README.md); importing registers the builder."""

from tfds_builders.pku_mmd.pku_mmd_dataset_builder import LABEL_NAMES, PkuMmd, PkuMmdConfig

__all__ = ['LABEL_NAMES', 'PkuMmd', 'PkuMmdConfig']
