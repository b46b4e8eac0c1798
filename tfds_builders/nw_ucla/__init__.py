"""nw_ucla: Northwestern-UCLA skeletons (see README.md); importing registers the builder."""

from tfds_builders.nw_ucla.nw_ucla_dataset_builder import NwUcla, NwUclaConfig

__all__ = ['NwUcla', 'NwUclaConfig']
