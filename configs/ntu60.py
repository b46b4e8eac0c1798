"""NTU RGB+D 60 (Shahroudy et al., CVPR 2016): 60 actions, 25 joints, 2 persons.

Protocols: `xsub` (default) and `xview`. The skeleton zip
`nturgbd_skeletons_s001_to_s017.zip` is a manual download (see
tfds_builders/ntu_rgbd/README.md); the first run prepares it into data.data_dir.

  python -m skeljax.main --config=configs/ntu60.py
  python -m skeljax.main --config=configs/ntu60.py:xview --workdir=runs/ntu60_xview \
      --config.data.manual_dir=~/downloads/ntu

Settings follow SkeletonCLR/AimCLR (ST-GCN small, T=50, queue 32768, SGD lr 0.1,
300 epochs, batch 128). Expected result: not yet measured with skeljax; the peer
figures for linear evaluation with this encoder are about 68-75% (xsub) and
76-80% (xview).
"""

from skeljax import config as config_lib


def get_config(arg=None):
  protocol, options = config_lib.parse_arg(arg, ('xsub', 'xview'), 'xsub')
  c = config_lib.base_config()
  c.name = f'ntu60_{protocol}'
  c.data.name = 'ntu_rgbd'
  c.data.config = f'ntu60_{protocol}'
  c.data.layout = 'ntu25'
  c.data.manual_dir = '~/skeljax_downloads/ntu_rgbd'
  if 'tiny' in options:
    config_lib.shrink(c)
  return c
