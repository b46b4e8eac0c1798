"""The experiment config: every field, its default and what it means.

A config file under `configs/` starts from `base_config()` and changes what its
dataset needs. `validate()` turns bad values into one-line `ConfigError`s that
`main` prints before exiting with code 2.
"""

from __future__ import annotations

import os

import ml_collections

STAGES = ('pretrain', 'linear', 'knn', 'finetune', 'semi', 'scratch')
OBJECTIVES = ('mcc', 'contrastive')


class ConfigError(ValueError):
  """A config value that cannot run; its message is one line for the user."""


def _section(**fields) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(fields)


def _train_section(epochs, batch_size, lr, optimizer='sgd', weight_decay=1e-4, **extra):
  """Optimisation fields shared by every training stage."""
  return _section(
    epochs=epochs,  # passes over the training split
    batch_size=batch_size,  # global batch, split evenly over all devices
    optimizer=optimizer,  # 'sgd' (momentum 0.9, no nesterov) or 'adamw'
    lr=lr,  # peak learning rate
    momentum=0.9,  # SGD momentum
    weight_decay=weight_decay,  # decoupled for adamw; L2 for sgd; never on biases/norms
    schedule='cosine',  # 'cosine', 'step' (x0.1 at step_epochs) or 'constant'
    step_epochs=(),  # epochs at which 'step' decays
    warmup_epochs=0.0,  # linear warm-up length
    grad_clip=0.0,  # global-norm clip; 0 disables
    log_every=20,  # steps between progress lines
    **extra,
  )


def base_config() -> ml_collections.ConfigDict:
  """All fields with their defaults (the SkeletonCLR/AimCLR peer family's)."""
  c = ml_collections.ConfigDict()
  c.name = 'base'  # run name; the default workdir is runs/<name>
  c.seed = 0  # one seed drives init, data order, views and subsets
  c.stages = ('pretrain', 'linear')  # run in order; also knn, finetune, semi, scratch
  # Where evaluation stages take the encoder from: '' = this workdir's pretrain
  # stage, 'random' = a random init, or a workdir / checkpoint path (transfer).
  c.init_from = ''
  c.random_reference = True  # also evaluate a random-init encoder under `linear`
  c.objective = 'mcc'  # 'mcc' or 'contrastive' (SkeletonCLR baseline)
  c.num_processes = 0  # expected JAX processes (hosts); 0 accepts any launch

  c.data = _section(
    name='synthetic_skeleton',  # TFDS builder name under tfds_builders/
    config='default',  # builder config = protocol (e.g. 'xview', 'ntu60_xsub')
    data_dir=os.path.join('~', 'skeljax_data'),  # prepared array_record datasets
    manual_dir='',  # raw downloads for manual datasets (see the builder README)
    layout='ntu25',  # joint layout, see skeljax/skeleton.py
    persons=2,  # M persons kept per sample
    max_frames=300,  # host-side pad length; longer sequences are resampled down
    frames=50,  # T: clip length every view is resampled to
    train_split='train',
    test_split='test',
    num_workers=0,  # grain worker processes; 0 reads in the main process
  )

  c.augment = _section(
    crop_ratio=(0.5, 1.0),  # anchor window, as a fraction of the valid frames
    speeds=(0.5, 2.0),  # playback speeds for the positive clip
    speed_range=(),  # (lo, hi): log-uniform speeds instead of the set
    pad_mode='clip',  # window past the valid frames: 'clip' (= 'edge', hold) or 'shift' (slide in)
    negative='segment_shuffle',  # 'segment_shuffle', 'reverse' or 'local_shuffle'
    segments=4,  # k segments for segment_shuffle
    local_window=4,  # frames per shuffled block for local_shuffle
    interp_drop='stride',  # 'stride' (every r-th kept) or 'random'
    interp_stride=2,  # r
    interp_keep_rate=0.5,  # kept fraction for 'random'
    interp_fill='linear',  # dropped frames: 'linear' (neighbours) or 'zero'
    shear=0.5,  # max shear amplitude
    rotate=(0.3, 0.3, 0.3),  # max rotation (radians) about x, y, z
    scale=(0.9, 1.1),  # uniform scale range
    flip_prob=0.5,  # left/right mirror probability
    noise_std=0.005,  # Gaussian coordinate noise
    joint_mask_prob=0.0,  # probability of zeroing each joint
    axis_mask_prob=0.0,  # probability of zeroing one coordinate axis
    centre='clip',  # centre on the layout's centre joint: 'clip', 'frame' or 'none'
    view_align=False,  # rotate so the shoulders lie along x
  )

  c.model = _section(
    name='stgcn',  # 'stgcn', 'transformer' or 'gru'
    size='small',  # stgcn width preset: 'small' (peer pretraining) or 'base'
    adjacency='spatial',  # ST-GCN partition strategy
    edge_importance=True,  # learnable edge weights (ST-GCN)
    dropout=0.0,
    depth=4,  # transformer blocks (each spatial + temporal)
    width=64,  # transformer width
    heads=4,  # transformer heads
    patch=4,  # transformer frames per temporal token (T' = ceil(T / patch))
    gru_hidden=256,  # GRU hidden size per direction
    gru_layers=2,
    decoder_width=128,  # interpolation decoder hidden width
    projection_hidden=0,  # projection MLP hidden size; 0 = encoder width
  )

  c.mcc = _section(
    feature_dim=128,  # projection output
    queue_size=32768,  # MoCo queue length (size it below the training set)
    momentum=0.999,  # key-encoder EMA
    temperature=0.07,
    interp_weight=1.0,  # lambda for the interpolation loss
    negative_weight=1.0,  # w: the broken negative's weight in the InfoNCE denominator
    speed_positive=True,  # False: positive at speed 1 (ablation)
    broken_negative=True,  # False: queue negatives only (ablation)
    interpolation=True,  # False: no interpolation loss (ablation)
    symmetric=False,  # also swap query and key roles
  )

  c.pretrain = _train_section(
    epochs=300, batch_size=128, lr=0.1, checkpoint_every=500, keep_checkpoints=2
  )
  c.linear = _train_section(epochs=100, batch_size=128, lr=3.0, weight_decay=0.0)
  c.linear.augment = False  # True: train the probe on augmented anchors
  c.knn = _section(k=(1, 20), temperature=0.1, batch_size=256)
  c.finetune = _train_section(epochs=100, batch_size=128, lr=0.1)
  c.semi = _train_section(epochs=100, batch_size=128, lr=0.1, fractions=(0.01, 0.1))
  c.scratch = _train_section(epochs=100, batch_size=128, lr=0.1)
  c.eval_batch_size = 256  # feature extraction batch
  return c


def _check(cond: bool, msg: str) -> None:
  if not cond:
    raise ConfigError(msg)


def validate(
  config: ml_collections.ConfigDict, num_devices: int = 1, num_processes: int = 1
) -> None:
  """Raises ConfigError with one line for the first impossible value."""
  from skeljax import skeleton

  _check(
    config.num_processes in (0, num_processes),
    f'config.num_processes={config.num_processes} but {num_processes} processes were launched; '
    'launch that many or set --config.num_processes=0',
  )

  for s in config.stages:
    _check(s in STAGES, f'unknown stage {s!r}; choose from {", ".join(STAGES)}')
  _check(config.objective in OBJECTIVES, f'objective must be one of {OBJECTIVES}')
  try:
    skeleton.get_layout(config.data.layout)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  d = config.data
  _check(d.frames >= 4, f'data.frames must be >= 4, got {d.frames}')
  _check(d.max_frames >= d.frames, 'data.max_frames must be >= data.frames')
  _check(d.persons >= 1, 'data.persons must be >= 1')
  a = config.augment
  lo, hi = a.crop_ratio
  _check(
    0 < lo <= hi <= 1, f'augment.crop_ratio must satisfy 0 < lo <= hi <= 1, got {a.crop_ratio}'
  )
  _check(all(s > 0 for s in a.speeds), 'augment.speeds must be positive')
  _check(len(a.speed_range) in (0, 2), 'augment.speed_range must be () or (lo, hi)')
  _check(
    a.negative in ('segment_shuffle', 'reverse', 'local_shuffle'),
    f'augment.negative {a.negative!r} is not segment_shuffle, reverse or local_shuffle',
  )
  _check(a.segments >= 2, 'augment.segments must be >= 2 (one segment cannot be shuffled)')
  _check(a.segments <= d.frames, 'augment.segments must be <= data.frames')
  _check(a.local_window >= 2, 'augment.local_window must be >= 2')
  _check(a.pad_mode in ('clip', 'edge', 'shift'), 'augment.pad_mode must be clip, edge or shift')
  _check(0 < a.scale[0] <= a.scale[1], f'augment.scale must satisfy 0 < lo <= hi, got {a.scale}')
  _check(
    not a.speed_range or 0 < a.speed_range[0] <= a.speed_range[1],
    f'augment.speed_range must be () or 0 < lo <= hi, got {a.speed_range}',
  )
  _check(a.interp_drop in ('stride', 'random'), 'augment.interp_drop must be stride or random')
  _check(a.interp_stride >= 2, 'augment.interp_stride must be >= 2')
  _check(0 < a.interp_keep_rate < 1, 'augment.interp_keep_rate must be in (0, 1)')
  _check(a.interp_fill in ('linear', 'zero'), 'augment.interp_fill must be linear or zero')
  _check(a.centre in ('clip', 'frame', 'none'), 'augment.centre must be clip, frame or none')
  _check(
    config.model.name in ('stgcn', 'transformer', 'gru'), 'model.name: stgcn, transformer or gru'
  )
  _check(config.model.size in ('small', 'base'), 'model.size must be small or base')
  m = config.mcc
  _check(m.queue_size > 0, 'mcc.queue_size must be positive')
  _check(0 <= m.momentum < 1, 'mcc.momentum must be in [0, 1)')
  _check(m.temperature > 0, 'mcc.temperature must be positive')
  _check(
    m.negative_weight >= 0,
    'mcc.negative_weight must be >= 0 (0 drops the broken negative, 1 is plain InfoNCE)',
  )
  for name in ('pretrain', 'linear', 'finetune', 'semi', 'scratch'):
    sec = config[name]
    _check(sec.epochs > 0, f'{name}.epochs must be positive')
    _check(sec.batch_size > 0, f'{name}.batch_size must be positive')
    _check(
      sec.batch_size % num_devices == 0,
      f'{name}.batch_size={sec.batch_size} does not divide over {num_devices} devices; '
      f'use a multiple of {num_devices}',
    )
    _check(sec.lr > 0, f'{name}.lr must be positive')
    _check(sec.optimizer in ('sgd', 'adamw'), f'{name}.optimizer must be sgd or adamw')
    _check(
      sec.schedule in ('cosine', 'step', 'constant'), f'{name}.schedule: cosine, step or constant'
    )
  _check(
    config.mcc.queue_size % config.pretrain.batch_size == 0,
    f'mcc.queue_size={config.mcc.queue_size} must be a multiple of '
    f'pretrain.batch_size={config.pretrain.batch_size}',
  )
  _check(config.eval_batch_size % num_devices == 0, 'eval_batch_size must divide over the devices')
  for f in config.semi.fractions:
    _check(0 < f <= 1, f'semi.fractions must lie in (0, 1], got {f}')


def parse_arg(arg: str | None, protocols: tuple[str, ...], default: str) -> tuple[str, set[str]]:
  """Splits a config arg like 'xview,tiny' into (protocol, {'tiny'}).

  Unknown words raise ConfigError, so a typo never silently runs the default.
  """
  words = [w for w in (arg or '').split(',') if w]
  protocol = default
  options = set()
  for w in words:
    if w in protocols:
      protocol = w
    elif w in ('tiny',):
      options.add(w)
    else:
      raise ConfigError(f'unknown config arg {w!r}; use one of {protocols} and optionally tiny')
  return protocol, options


def shrink(c: ml_collections.ConfigDict) -> None:
  """The 'tiny' option: a few steps of a tiny model, for smoke tests and CI."""
  c.data.frames = 16
  c.data.max_frames = 64
  c.model.size = 'small'
  c.model.depth = 1
  c.model.width = 32
  c.model.gru_hidden = 32
  c.model.gru_layers = 1
  c.model.decoder_width = 32
  c.mcc.feature_dim = 32
  c.mcc.queue_size = 64
  for name in ('pretrain', 'linear', 'finetune', 'semi', 'scratch'):
    c[name].epochs = 1
    c[name].batch_size = 16
    c[name].log_every = 5
  c.pretrain.checkpoint_every = 10
  c.eval_batch_size = 32
