"""Kinetics-skeleton (Yan et al., AAAI 2018): 400 classes, OpenPose 18 joints,
(x, y, confidence), top-2 persons.

The st-gcn release (`kinetics_train/`, `kinetics_val/` and their label JSONs) is a
manual download (see tfds_builders/kinetics_skeleton/README.md).

  python -m skeljax.main --config=configs/kinetics.py

Expected result: not yet measured with skeljax; published self-supervised linear
figures on Kinetics-skeleton are low (about 30-40% top-5 range for this family).
"""

from skeljax import config as config_lib


def get_config(arg=None):
  _, options = config_lib.parse_arg(arg, ('default',), 'default')
  c = config_lib.base_config()
  c.name = 'kinetics'
  c.data.name = 'kinetics_skeleton'
  c.data.config = 'default'
  c.data.layout = 'openpose18'
  c.data.manual_dir = '~/skeljax_downloads/kinetics_skeleton'
  c.augment.rotate = (0.0, 0.0, 0.3)  # 2-D coordinates: in-plane rotation only
  if 'tiny' in options:
    config_lib.shrink(c)
  return c
