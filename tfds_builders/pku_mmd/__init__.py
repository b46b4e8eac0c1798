"""pku_mmd: PKU-MMD phase 1/2 action segments (see README.md)."""

from tfds_builders.pku_mmd.pku_mmd_dataset_builder import LABEL_NAMES, PkuMmd, PkuMmdConfig

BUILDER_CLASS = PkuMmd

__all__ = ['BUILDER_CLASS', 'LABEL_NAMES', 'PkuMmd', 'PkuMmdConfig']
