"""NW-UCLA (Wang et al., CVPR 2014): 10 actions, Kinect v1 20 joints, 3 views.

Protocols: `xview` (default; train views 1+2 = 1,020 sequences, test view 3 = 464)
and `xsub`. The raw `all_sqe/` JSON files are a manual download (see
tfds_builders/nw_ucla/README.md).

  python -m skeljax.main --config=configs/nw_ucla.py:xview \
      --config.data.manual_dir=/path/to/nw_ucla --workdir=runs/nw_ucla_xview

Expected result (docs/results.md, with the audit, the view-2 validation proxy and the
command of each row): before issue #28 (60 epochs, the old defaults), three seeds on the
test view gave MCC 76.9 +- 2.5% linear against 81.5 +- 2.2% for its contrastive baseline
(`--config.objective=contrastive`); with the 200-epoch defaults the baseline reaches
86.5 +- 1.9% (issue #28; 85.6 +- 1.3% rerun on the same code and host as MCC) and MCC
with issue #29's defaults (the anchor's twin, time-reversed, as a DSM hard negative; no
speed-changed positive, no interpolation) 86.5 +- 1.6% linear / 82.2 +- 1.5% kNN-1 (three
seeds; about 70 min pretrain + linear on a 2-core CPU); with the speed positive on (the
default before the switch) 83.5 +- 1.6% / 84.1 +- 1.0%. Fine-tuned on 10% of the labels:
the speed-positive MCC's encoder 73.3 +- 4.6%, the baseline's 75.1 +- 4.8%, the same encoder
from scratch 62.4 +- 7.1%.
Published frozen-encoder references: P&C ~84-86%, Skeleton Cloud Colorization ~90%;
supervised GCNs ~96-97%.
"""

from skeljax import config as config_lib


def get_config(arg=None):
  protocol, options = config_lib.parse_arg(arg, ('xview', 'xsub'), 'xview')
  c = config_lib.base_config()
  c.name = f'nw_ucla_{protocol}'
  c.data.name = 'nw_ucla'
  c.data.config = protocol
  c.data.layout = 'kinect20'
  c.data.persons = 1
  c.data.max_frames = 208  # the longest sequence has 201 frames
  c.data.frames = 32  # the xview training split's median length is 34 frames
  c.data.reversed_pairs = ('sit down|stand up', 'donning|doffing')
  # Rotate each clip to person 0's heading (mean shoulder + hip heading of its first
  # frames along x, about the vertical; transforms.view_rotation): the xview test is
  # another camera angle. Random-init linear on the view-2 validation proxy: 44.6% without,
  # 56.6% with the rule before issue #28 (the first frame's shoulders). Levelling the spine
  # too (augment.level_spine) trails by 3.4 points over 3 seeds (docs/results.md).
  c.augment.view_align = True
  c.mcc.queue_size = 512  # own keys are masked (mcc.mask_own), so no query meets itself
  c.mcc.temperature = 0.1
  # 3,000 steps: the kNN monitor has flattened by the end (docs/results.md, issue #28), and
  # pretraining + linear fit in 90 minutes on a 2-core CPU. 60 epochs (900 steps) left the
  # learner at 8% instance accuracy.
  c.pretrain.epochs = 200
  c.pretrain.batch_size = 64
  c.pretrain.optimizer = 'adamw'
  c.pretrain.lr = 2e-3
  c.pretrain.warmup_epochs = 2
  c.pretrain.log_every = 16
  c.pretrain.monitor_every = 20  # kNN monitor (view 2 under the proxy; else the test view)
  c.pretrain.checkpoint_every = 160
  c.linear.epochs = 100
  c.linear.batch_size = 64
  c.linear.lr = 0.5
  c.finetune.epochs = 60
  c.finetune.batch_size = 64
  c.finetune.optimizer = 'adamw'
  c.finetune.lr = 1e-3
  c.scratch.update(c.finetune.to_dict())
  c.semi.epochs = 60
  c.semi.batch_size = 32
  c.semi.optimizer = 'adamw'
  c.semi.lr = 1e-3
  if 'tiny' in options:
    config_lib.shrink(c)
  return c
