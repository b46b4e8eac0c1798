"""Your own skeleton data: a folder with index.csv, sequences/<name>.npy and optionally
label_names.txt (the format: docs/data.md).

index.csv has columns `name,label,split` (label a class name, or an integer class id
0..K-1; split train or test) and optional `subject,view`; each sequence is a [T, V, C] or
[T, M, V, C] float .npy. Name the joint layout (ntu25, kinect20 or openpose18); it is also
the builder config (skeleton_folder/<layout>):

  python -m skeljax.main --config=configs/folder.py \
      --config.data.manual_dir=/path/to/folder --config.data.layout=kinect20 \
      --workdir=runs/my_data

data.persons, data.frames, data.max_frames, mcc.queue_size and pretrain.epochs are 0: the
run derives them from the prepared training split (most persons present, median and
longest length, a queue below the training-set size, and the epochs that make about 3,000
steps, the NW-UCLA default run's length) and prints one line with the values; set any of
them to override it.

Stages: pretrain -> linear, with the linear probe of a random-init encoder as
reference. Expected result: the pretrained encoder's probe beats random init.
"""

from skeljax import config as config_lib


def get_config(arg=None):
  _, options = config_lib.parse_arg(arg, ('default',), 'default')
  c = config_lib.base_config()
  c.name = 'folder'
  c.data.name = 'skeleton_folder'
  c.data.layout = 'ntu25'
  # The builder config is the joint layout, so --config.data.layout alone picks both.
  c.data.config = c.data.get_ref('layout')
  c.data.persons = 0
  c.data.max_frames = 0
  c.data.frames = 0
  c.mcc.queue_size = 0
  c.pretrain.epochs = 0  # about data.DERIVED_STEPS steps, whatever the set's size
  c.pretrain.batch_size = 64
  c.pretrain.optimizer = 'adamw'
  c.pretrain.lr = 2e-3
  c.pretrain.warmup_epochs = 2
  c.linear.epochs = 100
  c.linear.batch_size = 64
  c.linear.lr = 0.5
  if 'tiny' in options:
    config_lib.shrink(c)
  return c
