"""NTU RGB+D 120 (Liu et al., TPAMI 2019): 120 actions, 25 joints, 2 persons.

Protocols: `xsub` (default) and `xset`. Needs both skeleton zips
(`nturgbd_skeletons_s001_to_s017.zip`, `nturgbd_skeletons_s018_to_s032.zip`) in
data.manual_dir (see tfds_builders/ntu_rgbd/README.md).

  python -m skeljax.main --config=configs/ntu120.py:xset

Expected result: not yet measured with skeljax; peer linear-evaluation figures
with ST-GCN small are about 56-64% (xsub) and 55-63% (xset).
"""

from skeljax import config as config_lib


def get_config(arg=None):
  protocol, options = config_lib.parse_arg(arg, ('xsub', 'xset'), 'xsub')
  c = config_lib.base_config()
  c.name = f'ntu120_{protocol}'
  c.data.name = 'ntu_rgbd'
  c.data.config = f'ntu120_{protocol}'
  c.data.layout = 'ntu25'
  c.data.manual_dir = '~/skeljax_downloads/ntu_rgbd'
  if 'tiny' in options:
    config_lib.shrink(c)
  return c
