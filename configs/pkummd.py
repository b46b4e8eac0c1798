"""PKU-MMD (Liu et al., 2017): 51 actions cut from continuous sequences, 25 joints.

Protocols: `part1_xsub` (default), `part1_xview`, `part2_xsub`, `part2_xview`.
The skeleton and label folders are a manual download (see
tfds_builders/pku_mmd/README.md).

  python -m skeljax.main --config=configs/pkummd.py:part1_xsub

Expected result: not yet measured with skeljax; peer linear-evaluation figures
(ST-GCN small, part I xsub) are about 80-88%.
"""

from skeljax import config as config_lib

PROTOCOLS = ('part1_xsub', 'part1_xview', 'part2_xsub', 'part2_xview')


def get_config(arg=None):
  protocol, options = config_lib.parse_arg(arg, PROTOCOLS, 'part1_xsub')
  c = config_lib.base_config()
  c.name = f'pkummd_{protocol}'
  c.data.name = 'pku_mmd'
  c.data.config = protocol
  c.data.layout = 'ntu25'
  c.data.manual_dir = '~/skeljax_downloads/pku_mmd'
  c.mcc.queue_size = 16384 if protocol.startswith('part1') else 4096  # part II is small
  if 'tiny' in options:
    config_lib.shrink(c)
  return c
