"""The experiment config: every field, its default and what it means.

A config file under `configs/` starts from `base_config()` and changes what its
dataset needs. `validate()` turns bad values into one-line `ConfigError`s that
`main` prints before exiting with code 2.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import ml_collections

STAGES = ('pretrain', 'linear', 'knn', 'finetune', 'semi', 'scratch', 'ensemble')
OBJECTIVES = ('mcc', 'contrastive')
NEGATIVE_LOSSES = ('rank', 'classify', 'infonce', 'dsm')
SPEED_FORMS = ('positive', 'both', 'head')
SPEED_HEADS = ('off', 'relative', 'classify')
DECODER_TAPS = ('deep', 'full')  # mcc.decoder_tap
INTERP_TARGETS = ('position', 'motion')  # mcc.interp_target


class ConfigError(ValueError):
  """A config value that cannot run; its message is one line for the user."""


# The repository's configs/ folder (configs are files, not an installed package).
CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / 'configs'


def load_config(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file: what `--config=<path>[:<arg>]` gives `main`.

  `path` is a file (`configs/demo.py`, `~/my_config.py`; a relative path that is not
  found here is read from the repository root), or a bare name (`demo`) for the
  repository's configs/ folder; `path:arg` works as on the command line.
  Raises ConfigError (one line) when there is no such file.
  """
  path = str(path)
  if arg is None and ':' in path and not os.path.exists(path):
    path, arg = path.rsplit(':', 1)
  file = pathlib.Path(path).expanduser()
  if file.suffix != '.py' and len(file.parts) == 1:
    file = CONFIG_DIR / f'{file}.py'
  elif not file.is_absolute() and not file.is_file():
    file = CONFIG_DIR.parent / file  # configs/x.py from another folder (notebooks/)
  if not file.is_file():
    names = ', '.join(sorted(p.stem for p in CONFIG_DIR.glob('*.py')))
    raise ConfigError(f'no config file {path}; give a path to one or a name from {names}')
  spec = importlib.util.spec_from_file_location(f'skeljax_config_{file.stem}', file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


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
    # What the encoder sees (transforms.to_stream, at the encoder's input on every path):
    # 'joint' (coordinates), 'motion' (x[t+1] - x[t]) or 'bone' (x[v] - x[parent(v)]).
    # One encoder per stream, fused by the ensemble stage, gives the field's "3s" numbers.
    stream='joint',
    # persons, max_frames, frames (and mcc.queue_size, pretrain.epochs): 0 derives the value
    # from the prepared training split when the run starts (data.derive_from_data), which
    # prints it.
    persons=2,  # M persons kept per sample
    max_frames=300,  # host-side pad length; longer sequences are resampled down
    frames=50,  # T: clip length every view is resampled to
    train_split='train',
    test_split='test',
    # grain threads that read and preprocess training records (per record, then batched);
    # 0 = every core of this process. It changes speed only, never the batches.
    num_threads=0,
    # > 0: hold out this class-stratified fraction of the training split (fixed draw,
    # the same for every seed) as a validation set. Every stage then trains on the rest
    # and reports on the held-out part instead of the test split: tune with it, never
    # on the test split.
    val_fraction=0.0,
    # 'field=value' (e.g. 'view=2'): hold out the training samples whose metadata field has
    # that value instead, so validation mimics a cross-view (or cross-subject) test.
    val_holdout='',
    # Label-name pairs 'a|b' that are time reverses of each other (sit down / stand up):
    # the linear probe reports their accuracy apart from the other classes.
    reversed_pairs=(),
  )

  c.augment = _section(
    crop_ratio=(0.5, 1.0),  # anchor window, as a fraction of the valid frames
    speeds=(0.5, 2.0),  # playback speeds for the positive clip
    speed_range=(),  # (lo, hi): log-uniform speeds instead of the set; speeds lie in (0, 8]
    # How the speed clip's window is cut (augment.fitted_windows). 'fit': the anchor's crop
    # length times the speed, both windows inside the valid frames (shortened together
    # where needed), so the relative speed is exactly the drawn one. 'clip' (before issue
    # #29): its own crop times the speed, clipped at the valid frames, so about 32% of a
    # speed-2 clip's frames were held copies of the edge frame and the speed compounded
    # with the independent crop (relative rates ~0.34-2.93 for speeds {0.5, 2}). On the
    # view-2 proxy (seed 0, 320 steps) 'fit' cost 6.4 linear points against 'clip' (60.1
    # against 66.5), shortening the anchor to n / s. 'cap' (the default since issue #29):
    # the old window cut to the valid frames and slid inside (augment.capped_window): no
    # held frame, the anchor keeps its crop, the speed played is at most the drawn one; on
    # the same proxy (no interpolation) it gave 67.7 / 63.5 kNN-1 where 'clip' gave 66.5 /
    # 55.6 (docs/results.md, issue #29's screens).
    speed_fit='cap',
    # Draw the anchor's speed too (speed_fit='fit'), independently of the positive's: the
    # relative speed is their ratio, and neither clip is always at the recorded rate.
    independent_speeds=False,
    # Gaussian noise on every view's coordinates right after resampling, so a slowed clip
    # (interpolated between source frames, hence smoother) is not told apart by smoothness.
    resample_noise_std=0.0,
    # Where the speed positive's window sits: 'own': its own random crop (as the baseline's
    # second view), then played at the speed; 'centred': the anchor's window centre. The
    # two tie on the NW-UCLA proxy (67.3% / 66.5%, docs/results.md); 'own' keeps the
    # baseline's temporal-crop invariance, so MCC's positive only adds the speed change.
    positive_window='own',
    pad_mode='clip',  # window past the valid frames: 'clip' (= 'edge', hold) or 'shift' (slide in)
    # 'reverse', 'segment_shuffle' or 'local_shuffle'. The segment-shuffled clip is told
    # apart at once by its cut points (a jump detector, no motion understanding); the
    # reversed clip has no such cue, only the arrow of time.
    negative='reverse',
    # Which frames the broken clip permutes. 'positive': the positive's window, with its
    # own augmentation draw and centred after the permutation, so it differs from the
    # positive only in frame order (no augmentation or centring cue). 'anchor': the
    # anchor's window, own augmentation. 'anchor_shared': the anchor's augmented clip
    # permuted (the old design: it shares the query's augmentation, the positive does not,
    # so ranking the positive first rewards order sensitivity over augmentation invariance,
    # and its first frame is off-centre). 'anchor_twin': the anchor's window and its
    # augmentation draw, permuted before normalising: it differs from the anchor only in
    # the arrow of time (DSM's form; the default since issue #29, with negative_loss='dsm').
    negative_source='anchor_twin',
    segments=4,  # k segments for segment_shuffle
    local_window=4,  # frames per shuffled block for local_shuffle
    # 'stride' (every r-th frame kept), 'random' (each frame kept with interp_keep_rate)
    # or 'span': span_count spans of whole frames inside [1, T - 2], within each a random
    # subset of joints masked (span_joint_prob). Dropping every 2nd frame leaves gaps that
    # the linear fill already solves (the decoder never beats it, docs/results.md); a span
    # of 4-8 frames hides motion a straight line cannot restore.
    interp_drop='stride',
    interp_stride=2,  # r
    interp_keep_rate=0.5,  # kept fraction for 'random'
    interp_fill='linear',  # dropped entries: 'linear' (the joint's kept neighbours) or 'zero'
    span_frames=(4, 8),  # 'span': (lo, hi) frames per span, uniform, hi <= data.frames - 2
    span_count=2,  # 'span': spans per clip (they may overlap)
    span_joint_prob=1.0,  # 'span': each joint's chance to be masked in a span (>= 1 joint)
    shear=0.5,  # max shear amplitude
    rotate=(0.3, 0.3, 0.3),  # max rotation (radians) about x, y, z
    scale=(0.9, 1.1),  # uniform scale range
    flip_prob=0.5,  # left/right mirror probability
    noise_std=0.005,  # Gaussian coordinate noise
    joint_mask_prob=0.0,  # probability of zeroing each joint
    axis_mask_prob=0.0,  # probability of zeroing one coordinate axis
    centre='clip',  # centre on the layout's centre joint: 'clip', 'frame' or 'none'
    # The views that get the extreme spatial set (rotate, flip, noise, joint/axis masks);
    # the others get only the normal one (shear, scale), as in SkeletonCLR. () keeps the
    # extreme set out of the InfoNCE pair (AimCLR's split); ('anchor',) gives the key
    # encoder a cleaner target than the query. The broken clip follows the positive.
    extreme_views=('anchor', 'positive'),
    # Rotate each clip by transforms.view_rotation: person 0's spine up and its mean
    # shoulder + hip heading along +x, from its first 5 present frames (2-D: the spine only).
    view_align=False,
    # With view_align: also level the spine (remove the camera's pitch and roll), not only
    # the yaw (2-D: the spine is all there is, so False aligns nothing). On NW-UCLA a clip's
    # 5-frame spine lies ~8-10 degrees from its view's median (body lean), about as far as
    # the camera's own tilt, and levelling makes the rotation less steady across start
    # frames; over 3 seeds on the view-2 proxy the yaw-only rule's linear probe is ahead at
    # every seed (62.1 +- 2.9% against 58.7 +- 2.5%; kNN-1 56.6 against 57.3), so it is the
    # default (docs/results.md).
    level_spine=False,
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
    # Compute dtype: 'float32' or 'bfloat16' (for GPU/TPU; XLA:CPU runs it no faster).
    # Parameters, BatchNorm statistics, losses and the MoCo queue stay float32.
    dtype='float32',
  )

  c.mcc = _section(
    feature_dim=128,  # projection output
    # MoCo queue length. With mask_own it may exceed the training set; without, keep it
    # below (a query would meet its own earlier key as a negative). 0: derived from the
    # training-set size (data.queue_size_for).
    queue_size=32768,
    # Store each key's sample id and drop the query's own earlier keys from its negatives.
    # Without it a 512-key queue over NW-UCLA's 1,020 sequences shows ~13% of queries
    # their own previous-epoch key as a "negative".
    mask_own=True,
    # Key-encoder EMA rate at the first step. MoCo's constant 0.999 assumes ~1e5 steps:
    # over 1e3 steps a key encoder that slow is still partly its random init. -1 derives
    # it from the run length: the EMA's time constant 1 / (1 - m) is ema_fraction of the
    # total steps, m within [0.9, 0.999] (0.9969 for 320 steps).
    momentum=0.99,
    ema_fraction=1.0,
    # 'constant', or 'cosine': m rises on a cosine from `momentum` to `momentum_end`.
    # The default, 0.99 -> 0.999, starts the key encoder fast (it keeps up while the query
    # moves most) and ends it slow, below 1, so it never freezes. Over 3 seeds on the
    # NW-UCLA view-2 proxy it beats the derived constant (0.9969) at every seed, 63.9 +-
    # 2.8% against 62.1 +- 2.9% linear, kNN-1 57.6 against 56.6 (docs/results.md).
    momentum_schedule='cosine',
    # Where 'cosine' ends: a value in [momentum, 1) caps the key encoder below 1; -1 = 1
    # (BYOL), which freezes the key encoder while the query still moves and collapses the
    # instance accuracy in the last third of a short run (measured).
    momentum_end=0.999,
    # False negatives. Each NW-UCLA clip has ~9 others of the same action and subject, so
    # a 512-key queue holds ~50 keys of the query's class. 'off': every other key is a
    # negative; 'drop': the query's nn_k nearest queue keys are left out of its negatives;
    # 'positive': they count as positives too (AimCLR's NNM / NNCLR: -log of the summed
    # softmax over the positive and the neighbours). Active from nn_warmup of the run on,
    # when the features mean something.
    nn_mode='off',
    nn_k=1,
    nn_warmup=0.0,
    # The step's other positive keys join the queue as negatives (MoCo v3's in-batch
    # negatives). Queue keys are older than the positive; while the encoder moves fast the
    # positive wins by being fresh, not by being the same clip (the demo's queue accuracy
    # 0.37 at step 30 against 0.03 among the same step's keys, docs/results.md). Off:
    # the demo ties (58.5 / 58.8%) and the NW-UCLA proxy's seed 0 loses 3.2 linear points.
    batch_negatives=False,
    # False: the queue's keys are no negatives at all, only the step's other keys are
    # (needs batch_negatives; MoCo v3 / SimCLR-style negatives, all of one key-encoder
    # state, so no key can be told apart by its age). For runs too short for the queue's
    # keys to stay comparable (docs/results.md, "In-batch negatives only"): the demo ties
    # on linear (3 seeds) with a falling loss; the NW-UCLA proxy ties on linear (63.6 +-
    # 1.7 against 63.9 +- 2.8, 3 seeds), kNN-1 60.5 +- 4.2 against 57.6 +- 3.1. Queue kept.
    queue_negatives=True,
    # Ghost BatchNorm groups for the query and key passes (>= 2 closes the leak MoCo's
    # Shuffle-BN closes): each pass normalises over groups of batch / bn_groups samples,
    # and the key pass shuffles samples into its groups and restores their order after,
    # so a query and its keys never share batch statistics. 1 = one global batch (leaky).
    bn_groups=4,
    temperature=0.07,
    # lambda for the interpolation loss. The loss is normalised by the error of the
    # linear fill it starts from (1.0 = no better than linear interpolation), so lambda
    # weighs a unit-free number against InfoNCE instead of metres squared. Measured on the
    # NW-UCLA proxy: at 1.0 it costs ~3 points of linear accuracy (the decoder never beats
    # the fill there, so its gradient is noise); 0.1 is the weight of the tying recipe.
    interp_weight=0.1,
    # Fraction of the batch that the interpolation pass (its own encoder pass over the
    # frame-dropped anchors, decoded from per-joint features) sees each step; the query
    # pass always sees the clean anchor, as in the baseline.
    interp_fraction=0.25,
    # The features the interpolation decoder reads. 'deep': the encoder's last block's
    # per-joint features (T / 4 frames for ST-GCN), upsampled (heads.InterpDecoder);
    # 'full': those plus ST-GCN's full-frame-rate ones before its first temporal stride,
    # through a temporal conv (heads.FullResDecoder), so it can correct single frames.
    decoder_tap='deep',
    # What the reconstruction is scored on, relative to the linear fill. 'position': the
    # dropped entries (objectives.interpolation_loss); 'motion': the frame differences
    # x[t+1] - x[t] that touch a dropped entry (objectives.motion_interpolation_loss,
    # as MAMP predicts motion), so the offset of a whole span is no error, its shape is.
    interp_target='position',
    # How the motion-broken clip enters the loss. 'rank': it goes through the query
    # encoder and must be farther from the positive key than the anchor is
    # (objectives.broken_rank_loss, weight negative_weight). 'infonce': its EMA key is a
    # hard negative in the InfoNCE denominator (weight w = negative_weight); measured to
    # collapse when its frames match the positive's, because the encoder never sees a
    # broken clip with gradient (docs/results.md). 'classify': a small head on the query
    # encoder's pooled features tells the anchor (natural) from the broken clip
    # (objectives.order_loss, weight negative_weight), outside the contrastive space.
    # 'dsm' (DSM, AAAI'21): the broken clip goes through the query encoder and its query is a
    # hard negative in the anchor's InfoNCE against the positive key, with gradient
    # (weight w = negative_weight in the denominator), beside the queue. The default since
    # issue #29 (with augment.negative_source='anchor_twin'): docs/results.md.
    negative_loss='dsm',
    # rank/classify: the term's weight; infonce: w in the denominator. Measured on the
    # NW-UCLA proxy: at 1.0 every broken-clip form (rank or head; shuffled or reversed)
    # costs 4-10 points of linear accuracy on the classes it is not meant to help; at 0.1
    # (with 0.25 of the batch) MCC ties the baseline (docs/results.md).
    negative_weight=0.1,
    # rank/classify: fraction of the batch whose broken clip goes through the query encoder each
    # step (a whole number of ghost-BN groups); it sets most of MCC's extra cost.
    negative_fraction=0.25,
    # The speed clip's role. 'positive': it is the only positive (MCC's form). 'both' (RSPNet,
    # RVTCLR): a same-speed clip and the speed clip are both positives of the instance
    # task (the InfoNCE averaged over the two), so the instance head learns speed
    # invariance while a speed head (speed_head) learns the speed itself. 'head' (pace /
    # playback-rate prediction beside the instance task): the same-speed clip is the only
    # positive, and the speed clip feeds the speed head alone (it needs one), so the
    # instance space is never asked to be speed-invariant.
    speed_form='positive',
    # A head that learns the speed. 'relative' (RSPNet's relative-speed perception, needs
    # speed_form='both' or 'head'): its own projection g; the anchor must be closer to the
    # same-speed clip than to the speed clip by speed_margin (cosine in g's space). 'classify'
    # (playback-rate / pace prediction): a small head on the anchor's and the speed clip's
    # features classifies their log relative speed into speed_classes bins. 'off': none.
    speed_head='off',
    speed_weight=0.1,  # the speed head's loss weight
    speed_margin=0.2,  # 'relative': the margin between the two cosines
    speed_classes=4,  # 'classify': equal bins of the log relative speed over its range
    # The broken clip's loss is off before this fraction of the run (a curriculum: the
    # instance task first), then on at negative_weight.
    negative_start=0.0,
    # The speed-changed positive (the paper's motion consistency). Off by default since
    # issue #29: on NW-UCLA's test view the positive at speed 1 (its own crop, as the
    # baseline's) gave 86.5 +- 1.6 linear against 83.5 +- 1.6 with it (3 seeds, 3,000 steps),
    # and the 1,600-step view-2 validation proxy agreed (72.6 +- 1.4 against 70.8 +- 1.1);
    # docs/results.md. True: the positive plays at augment.speeds / speed_range.
    speed_positive=False,
    broken_negative=True,  # False: queue negatives only (ablation)
    # The interpolation loss. Off by default since issue #29: no decoder form (stride-2 or
    # 4-8-frame spans; deep or full-rate features; positions or motion) beat the linear
    # fill on NW-UCLA (relative loss 1.00 at the end of every run), so its gradient is
    # noise there, and leaving it out saves its encoder pass (docs/results.md).
    interpolation=False,
    symmetric=False,  # also swap query and key roles
  )

  c.pretrain = _train_section(
    epochs=300, batch_size=128, lr=0.1, checkpoint_every=500, keep_checkpoints=2
  )
  # Online kNN monitor every that many epochs and at the end (0: off): kNN top-1 (knn.k)
  # of the query encoder's pooled features in inference mode, the training split's clean
  # clips as the bank and the validation part (or the evaluation split) as queries, with
  # the knn stage's own protocol. Only watched, never used to pick anything. One call
  # (a BN pass and two feature passes) costs about 1.2 epochs on a CPU (NW-UCLA proxy
  # rows, docs/results.md), so every 20 epochs keeps it near 6% of pretraining.
  c.pretrain.monitor_every = 20
  c.linear = _train_section(epochs=100, batch_size=128, lr=3.0, weight_decay=0.0)
  c.linear.augment = False  # True: train the probe on augmented anchors
  # z-score the frozen features with the training features' mean and std before the
  # linear layer (fixed-feature path): the probe's lr then does not depend on the scale
  # of one encoder's features.
  c.linear.standardize = True
  # Re-estimate the encoder's BatchNorm statistics on clean (eval_clip) training clips
  # before the frozen-feature stages (linear without augment, knn): pretraining gathered
  # them on augmented, ghost-batched views. The random-init reference gets the same pass.
  c.linear.recalibrate_bn = True
  c.knn = _section(
    k=(1, 20),  # neighbours; each k is reported, the last one as top1/top5
    temperature=0.1,  # vote weight exp(cos / temperature)
    batch_size=256,  # not read at present: the scores are one [N_test, N_train] product
    # Subtract the training features' mean from train and test features before the
    # cosine: post-ReLU features share a large positive mean that otherwise dominates it.
    centre=True,
  )
  c.finetune = _train_section(epochs=100, batch_size=128, lr=0.1)
  c.semi = _train_section(epochs=100, batch_size=128, lr=0.1, fractions=(0.01, 0.1))
  c.scratch = _train_section(epochs=100, batch_size=128, lr=0.1)
  # The ensemble stage: a linear probe per pretrained encoder (config.linear's fixed-feature
  # protocol, on this run's split), softmax probabilities fused by a weighted sum.
  c.ensemble = _section(
    # Workdirs of finished pretraining runs (each with encoder/ and config.json), usually
    # one per stream. This run's own encoder comes first when its stages hold 'pretrain'.
    runs=(),
    weights=(),  # one >= 0 per member (own encoder first); () = equal weights
  )
  c.eval_batch_size = 256  # feature extraction batch
  return c


def _check(cond: bool, msg: str) -> None:
  if not cond:
    raise ConfigError(msg)


def validate(
  config: ml_collections.ConfigDict, num_devices: int = 1, num_processes: int = 1
) -> None:
  """Raises ConfigError with one line for the first impossible value."""
  from skeljax import augment, models, skeleton, transforms

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
  _check(
    d.stream in transforms.STREAMS,
    f'data.stream {d.stream!r} is not one of {", ".join(transforms.STREAMS)}',
  )
  # 0: derived from the training split once it is prepared; checked again then.
  _check(d.frames == 0 or d.frames >= 4, f'data.frames must be >= 4 (or 0), got {d.frames}')
  _check(
    0 in (d.frames, d.max_frames) or d.max_frames >= d.frames,
    'data.max_frames must be >= data.frames',
  )
  _check(d.persons >= 0, f'data.persons must be >= 1 (or 0), got {d.persons}')
  try:
    # augment.AugParams is the one home of the augmentation checks.
    augment.AugParams.from_config(config.augment, frames=d.frames or None)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _check(
    config.model.name in models.ENCODERS,
    f'model.name {config.model.name!r} is not one of {", ".join(models.ENCODERS)}',
  )
  _check(
    config.model.size in models.stgcn.WIDTHS,
    f'model.size {config.model.size!r} is not one of {", ".join(models.stgcn.WIDTHS)}',
  )
  _check(
    config.model.dtype in ('float32', 'bfloat16'),
    f'model.dtype must be float32 or bfloat16, got {config.model.dtype!r}',
  )
  m = config.mcc
  _check(m.queue_size >= 0, f'mcc.queue_size must be positive (or 0), got {m.queue_size}')
  _check(
    m.momentum == -1 or 0 <= m.momentum < 1,
    f'mcc.momentum must be in [0, 1), or -1 to derive it from the run length; got {m.momentum}',
  )
  _check(0 < m.ema_fraction <= 1, f'mcc.ema_fraction must be in (0, 1], got {m.ema_fraction}')
  _check(
    m.momentum_schedule in ('cosine', 'constant'),
    f'mcc.momentum_schedule {m.momentum_schedule!r} is not cosine or constant',
  )
  # momentum_end is where the cosine ends; the constant schedule ignores it.
  _check(
    m.momentum_end == -1 or 0 <= m.momentum_end < 1,
    f'mcc.momentum_end must be -1 (the cosine ends at 1) or in [0, 1); got {m.momentum_end}',
  )
  _check(
    m.momentum_schedule == 'constant'
    or m.momentum_end == -1
    or m.momentum < 0
    or m.momentum <= m.momentum_end,
    f'mcc.momentum_end={m.momentum_end} is below mcc.momentum={m.momentum}; the key encoder '
    'must slow down, not speed up',
  )
  _check(
    m.nn_mode in ('off', 'drop', 'positive'),
    f'mcc.nn_mode {m.nn_mode!r} is not off, drop or positive',
  )
  _check(
    isinstance(m.nn_k, int) and 1 <= m.nn_k and (m.queue_size == 0 or m.nn_k < m.queue_size),
    f'mcc.nn_k must be an integer in [1, queue_size), got {m.nn_k}',
  )
  _check(
    0 <= m.nn_warmup < 1, f'mcc.nn_warmup is a fraction of the run in [0, 1), got {m.nn_warmup}'
  )
  _check(
    m.queue_negatives or m.batch_negatives,
    'mcc.queue_negatives=False needs mcc.batch_negatives=True: without either the positive '
    'has no negative',
  )
  _check(
    m.queue_negatives or m.nn_mode == 'off',
    f'mcc.nn_mode={m.nn_mode!r} mines neighbours in the queue; with '
    'mcc.queue_negatives=False there is none to mine (set nn_mode=off)',
  )
  me = config.pretrain.monitor_every
  _check(
    isinstance(me, int) and me >= 0,
    f'pretrain.monitor_every must be a whole number of epochs >= 0 (0 turns the kNN monitor '
    f'off; more than pretrain.epochs monitors the last step only), got {me!r}',
  )
  _check(
    0.01 <= m.temperature <= 10,
    f'mcc.temperature must be in [0.01, 10] (peers use 0.07-0.2), got {m.temperature}',
  )
  _check(
    m.negative_loss in NEGATIVE_LOSSES,
    f'mcc.negative_loss {m.negative_loss!r} is not one of {", ".join(NEGATIVE_LOSSES)}',
  )
  _validate_speed(config)
  _check(
    0 <= m.negative_start < 1,
    f'mcc.negative_start is a fraction of the run in [0, 1), got {m.negative_start}',
  )
  _check(m.interp_weight >= 0, f'mcc.interp_weight must be >= 0, got {m.interp_weight}')
  _check(
    0 < m.interp_fraction <= 1, f'mcc.interp_fraction must be in (0, 1], got {m.interp_fraction}'
  )
  tap = m.get('decoder_tap', 'deep')
  _check(tap in DECODER_TAPS, f'mcc.decoder_tap {tap!r} is not one of {", ".join(DECODER_TAPS)}')
  _check(
    tap != 'full' or config.model.name in models.FULL_RESOLUTION,
    f"mcc.decoder_tap='full' reads per-joint features at the full frame rate, which "
    f'model.name={config.model.name!r} does not expose (only '
    f"{', '.join(models.FULL_RESOLUTION)}); use decoder_tap='deep'",
  )
  target = m.get('interp_target', 'position')
  _check(
    target in INTERP_TARGETS,
    f'mcc.interp_target {target!r} is not one of {", ".join(INTERP_TARGETS)}',
  )
  _check(m.bn_groups >= 1, f'mcc.bn_groups must be >= 1, got {m.bn_groups}')
  _check(
    config.pretrain.batch_size % m.bn_groups == 0,
    f'pretrain.batch_size={config.pretrain.batch_size} does not split into mcc.bn_groups='
    f'{m.bn_groups} equal groups; use a batch size that is a multiple of {m.bn_groups}',
  )
  b_interp = config.pretrain.batch_size * m.interp_fraction
  _check(
    b_interp == int(b_interp),
    f'mcc.interp_fraction={m.interp_fraction} of pretrain.batch_size='
    f'{config.pretrain.batch_size} is not a whole number of samples',
  )
  group = config.pretrain.batch_size // max(m.bn_groups, 1)
  b_neg = config.pretrain.batch_size * m.negative_fraction
  _check(
    0 < m.negative_fraction <= 1
    and b_neg == int(b_neg)
    and (m.bn_groups == 1 or int(b_neg) % max(group, 1) == 0),
    f'mcc.negative_fraction={m.negative_fraction} of pretrain.batch_size='
    f'{config.pretrain.batch_size} must be in (0, 1] and a whole number of ghost-BN groups '
    f'of {group} samples',
  )
  _check(
    m.negative_weight >= 0,
    f'mcc.negative_weight must be >= 0 (0 turns the broken clip off), got {m.negative_weight}',
  )
  for name in ('pretrain', 'linear', 'finetune', 'semi', 'scratch'):
    sec = config[name]
    if name == 'pretrain':  # 0: about data.DERIVED_STEPS steps, from the training-set size
      _check(
        isinstance(sec.epochs, int) and sec.epochs >= 0,
        f'pretrain.epochs must be a whole number >= 1 (or 0 to derive it), got {sec.epochs!r}',
      )
    else:
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
    config.mcc.queue_size % config.pretrain.batch_size == 0,  # 0 passes: derived as batches
    f'mcc.queue_size={config.mcc.queue_size} must be a multiple of '
    f'pretrain.batch_size={config.pretrain.batch_size}',
  )
  _check(config.eval_batch_size % num_devices == 0, 'eval_batch_size must divide over the devices')
  _check(
    0 <= config.data.val_fraction < 1,
    f'data.val_fraction must be in [0, 1), got {config.data.val_fraction}',
  )
  vh = config.data.val_holdout
  _check(
    not vh or (vh.count('=') == 1 and vh.split('=')[1].lstrip('-').isdigit()),
    f"data.val_holdout must be '' or 'field=integer' like 'view=2', got {vh!r}",
  )
  _check(
    not (vh and config.data.val_fraction),
    'set data.val_fraction or data.val_holdout, not both',
  )
  for pair in config.data.reversed_pairs:
    _check(
      isinstance(pair, str) and pair.count('|') == 1,
      f"data.reversed_pairs entries are 'name a|name b', got {pair!r}",
    )
  for f in config.semi.fractions:
    _check(0 < f <= 1, f'semi.fractions must lie in (0, 1], got {f}')
  _validate_ensemble(config)


def _validate_speed(config) -> None:
  """The speed heads' values, and the MCC parts each head needs."""
  m = config.mcc
  _check(
    m.speed_form in SPEED_FORMS,
    f'mcc.speed_form {m.speed_form!r} is not one of {", ".join(SPEED_FORMS)}',
  )
  _check(
    m.speed_head in SPEED_HEADS,
    f'mcc.speed_head {m.speed_head!r} is not one of {", ".join(SPEED_HEADS)}',
  )
  _check(m.speed_weight >= 0, f'mcc.speed_weight must be >= 0, got {m.speed_weight}')
  _check(m.speed_margin >= 0, f'mcc.speed_margin must be >= 0, got {m.speed_margin}')
  _check(
    isinstance(m.speed_classes, int) and m.speed_classes >= 2,
    f'mcc.speed_classes must be an integer >= 2, got {m.speed_classes!r}',
  )
  if config.objective != 'mcc':
    return  # the baseline turns every MCC part off; its mcc fields are not read
  uses_speed = m.speed_form != 'positive' or m.speed_head != 'off'
  _check(
    m.speed_positive or not uses_speed,
    f'mcc.speed_form={m.speed_form!r} / speed_head={m.speed_head!r} need the speed clip, '
    'but mcc.speed_positive=False (set it to True)',
  )
  _check(
    m.speed_head != 'relative' or m.speed_form in ('both', 'head'),
    "mcc.speed_head='relative' compares a same-speed clip with the speed clip: it needs "
    "mcc.speed_form='both' or 'head'",
  )
  _check(
    m.speed_form != 'head' or m.speed_head != 'off',
    "mcc.speed_form='head' feeds the speed clip to the speed head alone: give "
    "mcc.speed_head='relative' or 'classify'",
  )
  if m.speed_head == 'classify':
    from skeljax import pretrain

    lo, hi = pretrain.log_speed_range(config.augment)
    _check(
      lo < hi,
      "mcc.speed_head='classify' needs more than one relative speed to tell apart; give "
      'augment.speeds two or more values or a speed_range with lo < hi',
    )
  _check(
    m.broken_negative or m.negative_start == 0,
    f'mcc.negative_start={m.negative_start} schedules the broken clip, but '
    'mcc.broken_negative=False',
  )


def _validate_ensemble(config) -> None:
  """The ensemble section's checks that need no files (ensemble.check reads them)."""
  if 'ensemble' not in config.stages:
    return
  e, stages = config.ensemble, list(config.stages)
  own = 'pretrain' in stages
  _check(
    not own or stages.index('pretrain') < stages.index('ensemble'),
    "stage ensemble uses this run's encoder, so put it after pretrain in config.stages",
  )
  members = len(e.runs) + own
  listed = f"this run's encoder + {len(e.runs)}" if own else f'{len(e.runs)}'
  _check(
    members >= 1,
    'the ensemble stage needs encoders: set --config.ensemble.runs to pretrained workdirs',
  )
  _check(
    all(isinstance(r, str) and r for r in e.runs),
    f'ensemble.runs must be workdir paths, got {tuple(e.runs)}',
  )
  _check(
    not e.weights or len(e.weights) == members,
    f'ensemble.weights has {len(e.weights)} values for {members} members '
    f'({listed} in ensemble.runs)',
  )
  _check(
    all(w >= 0 for w in e.weights) and (not e.weights or sum(e.weights) > 0),
    f'ensemble.weights must be >= 0 and not all 0, got {tuple(e.weights)}',
  )


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
