"""Demo: MCC pretraining + linear evaluation on the embedded synthetic dataset.

No download: `synthetic_skeleton` (NTU 25-joint layout, forward-kinematics
actions that differ in motion, incl. time-reversed pairs; subject split) is
generated on first use. On a 2-core CPU the README's command 1 (install, data,
compilation, pretraining, both probes) takes about 4.5 minutes (issue #30).

  python -m skeljax.main --config=configs/demo.py --workdir=runs/demo

Expected result (2-core CPU): the linear probe on the MCC-pretrained encoder
beats the same probe on a random-init encoder by 13-33 points (seeds 0-4, issue #29's
defaults: +23.8, +12.6, +26.5, +24.5, +33.0; mean +24.1), the loss falls and the kNN
monitor ends above its step-0 (random-init) value; the numbers are in
runs/demo/results.md and the curves in runs/demo/plots/pretrain_curves.png (the demo
table in docs/results.md has the last measured values).

`--config=configs/demo.py:parts` also switches on the MCC parts that issue #29's
study leaves off (the speed-changed positive with a speed-class head; span
interpolation decoded at full frame rate, predicting motion), so each part's own
signal is on the curves: the speed head's accuracy, and the interpolation error as
a fraction of the linear fill's. `--config=configs/demo.py:tiny` is the seconds-long
smoke version the tests run.
"""

from skeljax import config as config_lib


def get_config(arg=None):
  variant, options = config_lib.parse_arg(arg, ('default', 'parts'), 'default')
  c = config_lib.base_config()
  c.name = 'demo'
  c.data.name = 'synthetic_skeleton'
  c.data.config = 'default'
  c.data.layout = 'ntu25'
  c.data.persons = 1  # the synthetic actions are single-person
  c.data.max_frames = 128
  # 24 frames and batch 32 (issue #30's recipe round on a validation part of the training
  # split, docs/results.md): the same samples as 32 frames at batch 64, twice the updates,
  # 23% less compute per step, so install + data + pretraining + both probes fit in 5 min.
  c.data.frames = 24
  c.mcc.queue_size = 512  # below the 588 training sequences
  # A demo's few hundred steps are too short for a queue: its keys are up to 8 steps older
  # than the positive, and while the learning rate is high the positive wins by being fresh, so the
  # queue's InfoNCE rises while the encoder learns. The step's own keys as the only
  # negatives (MoCo v3 / SimCLR-style) give a loss that falls and the same linear probe
  # (58.7 +- 0.9 against 58.8 +- 3.4, 3 seeds at 144 steps; docs/results.md, "In-batch
  # negatives only").
  c.mcc.batch_negatives = True
  c.mcc.queue_negatives = False
  c.mcc.temperature = 0.1
  c.pretrain.epochs = 16  # 288 steps
  c.pretrain.batch_size = 32
  c.pretrain.optimizer = 'adamw'
  c.pretrain.lr = 2e-3
  c.pretrain.weight_decay = 1e-4
  c.pretrain.warmup_epochs = 1
  c.pretrain.log_every = 10
  c.pretrain.monitor_every = 4  # the kNN monitor at epochs 4, 8, 12 and 16
  c.pretrain.checkpoint_every = 50
  c.linear.epochs = 60
  c.linear.batch_size = 64
  c.linear.lr = 0.5
  if variant == 'parts':
    c.mcc.speed_positive = True  # the speed-changed positive, for the speed head
    c.mcc.speed_head = 'classify'  # which speed the positive plays, from its features
    c.mcc.interpolation = True
    c.augment.interp_drop = 'span'  # 4-8 frame gaps a straight line cannot restore
    c.mcc.decoder_tap = 'full'  # decode from features before the temporal strides
    c.mcc.interp_target = 'motion'  # frame differences, as MAMP predicts
  if 'tiny' in options:
    config_lib.shrink(c)
    # The smoke tests exercise the library's default negatives (the queue, which the nn
    # modes mine), not the demo's short-run choice.
    c.mcc.batch_negatives = False
    c.mcc.queue_negatives = True
    c.data.config = 'tiny'
    c.data.persons = 1
    # The step tests exercise every view the step can make, the speed clip included.
    c.mcc.speed_positive = True
  return c
