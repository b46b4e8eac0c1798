"""Self-supervised pretraining: the MCC objective (and the SkeletonCLR baseline).

  views   = augment.make_views(key, x, n)           on device, inside the step
  query   = projector(encoder(anchor))              gradients flow here
  keys    = key_projector(key_encoder(positive | negative))   EMA weights, no grad
  L       = InfoNCE(query; positive vs queue minus own keys)
            + w * rank(query encoder(broken clip) below the anchor, against the positive key)
            + lambda * interp(fill + decoder(encoder(frame-dropped anchor)), dropped entries)
  interp  = masked MSE at the dropped entries ('position'), or of the frame differences
            x[t+1] - x[t] touching them ('motion', mcc.interp_target), divided by the same
            error of the linear fill (1.0 = no better than the fill); entries are whole
            frames (augment.interp_drop 'stride' / 'random') or (frame, joint) spans
            ('span'); the decoder reads the last block's per-joint features ('deep') or
            also the full-frame-rate ones (mcc.decoder_tap='full')
  (mcc.speed_positive: the positive plays at a sampled speed; off by default since issue
   #29, when it is a second crop at speed 1, as the baseline's.)
  (mcc.negative_loss='infonce' puts the broken clip's key in the InfoNCE denominator instead;
   'dsm' its query, with gradient (DSM); 'classify' trains a small head on the query
   encoder's features to tell the anchor from the broken clip. mcc.negative_start delays
   the broken clip's term to a fraction of the run.)
  (mcc.speed_form='both': a same-speed clip and the speed clip are both positives, the
   InfoNCE averaged over the two (RSPNet, RVTCLR); 'head': the same-speed clip is the
   only positive and the speed clip feeds the speed head alone (pace prediction);
   mcc.speed_head adds + speed_weight * a relative-speed margin loss in its own projection
   ('relative') or a speed-class cross-entropy ('classify').)

What keeps the objective honest (each a `config.mcc` field, see skeljax/config.py):
  * the key encoder's EMA rate follows the run length (`momentum`, `ema_fraction`,
    `momentum_schedule`) instead of assuming MoCo's ~1e5 steps;
  * ghost BatchNorm (`bn_groups`): the query pass normalises over fixed groups, the key
    pass over shuffled groups whose order is restored after, so a query never shares
    batch statistics with its own keys (MoCo's Shuffle-BN, on any device count);
  * the queue stores sample ids and a query never meets its own earlier key (`mask_own`);
  * the query pass sees the clean anchor, exactly as in the baseline; interpolation has
    its own pass over the frame-dropped anchors (`interp_fraction` of the batch), decoded
    from per-joint features, with a loss relative to the linear fill it starts from.

`objective='contrastive'` is SkeletonCLR: the positive is a second augmented
view at speed 1, no broken negative and no interpolation loss.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state

from skeljax import augment, models, objectives, skeleton
from skeljax.models import heads


@dataclasses.dataclass(frozen=True)
class Nets:
  """The modules of pretraining; pure definitions, no weights."""

  encoder: nn.Module
  projector: nn.Module
  decoder: nn.Module
  order_head: nn.Module  # natural vs broken motion (mcc.negative_loss='classify')
  speed_head: nn.Module  # mcc.speed_head: its own projection ('relative') or classes


def make_nets(config) -> Nets:
  layout = skeleton.get_layout(config.data.layout)
  frames = config.data.frames
  return Nets(
    encoder=models.build_encoder(config.model, layout, frames, config.data.stream),
    projector=heads.ProjectionHead(
      hidden=config.model.projection_hidden,
      out=config.mcc.feature_dim,
      dtype=models.compute_dtype(config.model),
    ),
    decoder=(heads.FullResDecoder if decoder_tap(config) == 'full' else heads.InterpDecoder)(
      frames=frames,
      persons=config.data.persons,
      num_joints=layout.num_joints,
      channels=layout.num_channels,
      width=config.model.decoder_width,
      dtype=models.compute_dtype(config.model),
    ),
    order_head=heads.ProjectionHead(
      hidden=config.model.projection_hidden, out=1, dtype=models.compute_dtype(config.model)
    ),
    speed_head=heads.ProjectionHead(
      hidden=config.model.projection_hidden,
      out=config.mcc.speed_classes
      if config.mcc.get('speed_head', 'off') == 'classify'
      else config.mcc.feature_dim,
      dtype=models.compute_dtype(config.model),
    ),
  )


def decoder_tap(config) -> str:
  """`mcc.decoder_tap`; 'deep' for configs saved before the field existed."""
  return config.mcc.get('decoder_tap', 'deep')


def classifies_order(config) -> bool:
  """Whether the step trains the natural-vs-broken head (and the state holds its params)."""
  sw = switches(config)
  return sw['broken_negative'] and config.mcc.negative_loss == 'classify'


def speed_head(config) -> str:
  """The speed head the step trains ('off', 'relative' or 'classify')."""
  if not switches(config)['speed_positive']:
    return 'off'
  return config.mcc.get('speed_head', 'off')


def speed_pair(config) -> bool:
  """Whether the views hold a same-speed positive beside the speed clip.

  mcc.speed_form 'both' (RSPNet's form: both are positives of the instance task) or
  'head' (the speed clip feeds the speed head alone).
  """
  return switches(config)['speed_positive'] and config.mcc.get('speed_form') in ('both', 'head')


def log_speed_range(aug) -> tuple[float, float]:
  """The range of log relative speeds the views draw (the speed classes' span)."""
  lo, hi = (
    (aug.speed_range[0], aug.speed_range[1])
    if aug.speed_range
    else (
      min(aug.speeds),
      max(aug.speeds),
    )
  )
  lo, hi = float(np.log(lo)), float(np.log(hi))
  if aug.get('independent_speeds', False):
    return lo - hi, hi - lo
  return lo, hi


class PretrainState(train_state.TrainState):
  """flax's TrainState plus what MoCo keeps: the EMA key networks, the queue, BN statistics.

  `params` are the query networks {'encoder', 'projector', 'decoder'} (+ 'order_head' for
  'classify'), which `apply_gradients` steps with `tx`; `apply_fn` is the encoder's apply.
  """

  batch_stats: Any  # query encoder BN statistics
  key_params: Any  # EMA of {'encoder', 'projector'}
  key_batch_stats: Any  # key encoder BN statistics
  queue: jax.Array  # [K, feature_dim], L2-normalised keys
  queue_ids: jax.Array  # [K] int32 sample id of each queue key (-1: none yet)
  queue_ptr: jax.Array
  rng: jax.Array  # the run's PRNG key; step s draws from fold_in(rng, s)


def switches(config) -> dict:
  """Which MCC parts are on; the contrastive baseline turns them all off."""
  if config.objective == 'contrastive':
    return dict(speed_positive=False, broken_negative=False, interpolation=False)
  m = config.mcc
  return dict(
    speed_positive=m.speed_positive,
    broken_negative=m.broken_negative,
    interpolation=m.interpolation,
  )


def base_momentum(mcc, total_steps: int) -> float:
  """The key encoder's EMA rate at step 0 (`mcc.momentum`, or derived from the run length).

  Derived: the EMA's time constant 1 / (1 - m) is `mcc.ema_fraction` of the run, within
  m in [0.9, 0.999]; MoCo's 0.999 is the value at ~1e5 steps.
  """
  if mcc.momentum >= 0:
    return float(mcc.momentum)
  horizon = mcc.ema_fraction * max(int(total_steps), 1)
  return float(min(max(1.0 - 1.0 / max(horizon, 1.0), 0.9), 0.999))


def end_momentum(mcc, total_steps: int) -> float:
  """The EMA rate at the last step: the base for 'constant'; `momentum_end` (or 1) for 'cosine'."""
  if mcc.momentum_schedule == 'constant':
    return base_momentum(mcc, total_steps)
  end = mcc.get('momentum_end', -1.0)
  return 1.0 if end < 0 else float(end)


def momentum_at(mcc, step, total_steps: int):
  """EMA rate at `step` (may be traced): constant, or a cosine from the base to the end.

  The cosine rises from `base_momentum` at step 0 to `end_momentum` at the last step:
  BYOL's schedule when the end is 1, a key encoder that starts fast and ends slow
  (0.99 -> 0.999) when `mcc.momentum_end` caps it below 1.
  """
  m0 = base_momentum(mcc, total_steps)
  if mcc.momentum_schedule == 'constant':
    return jnp.float32(m0)
  m1 = end_momentum(mcc, total_steps)
  frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(int(total_steps), 1), 0.0, 1.0)
  return jnp.float32(m1 - (m1 - m0) * 0.5 * (jnp.cos(jnp.pi * frac) + 1.0))


def sample_input(config, batch: int = 2):
  layout = skeleton.get_layout(config.data.layout)
  shape = (batch, config.data.persons, config.data.frames, layout.num_joints, layout.num_channels)
  return jnp.zeros(shape, jnp.float32), jnp.full((batch,), config.data.frames, jnp.int32)


def decoder_inputs(sown: dict, temporal, tap: str) -> tuple:
  """The interpolation decoder's arguments from one encoder pass.

  Args:
    sown: the encoder's sown per-joint features ('intermediates', each a 1-tuple):
      'joints' [N*M, T', V, D'] and, for ST-GCN, 'joints_full' [N*M, T, V, D0].
    temporal: the encoder's temporal output [N, T', D'] (for encoders without 'joints').
    tap: mcc.decoder_tap.
  Returns:
    'deep': (joints,), or (temporal,) for an encoder without per-joint features (GRU);
    'full': (joints, joints_full), a ValueError (one line) for an encoder without both.
  """
  joints = sown.get('joints')
  deep = joints[0] if joints else temporal
  if tap == 'deep':
    return (deep,)
  full = sown.get('joints_full')
  if not joints or not full:
    raise ValueError(
      "mcc.decoder_tap='full' needs an encoder that sows 'joints' and 'joints_full' "
      f'({", ".join(models.FULL_RESOLUTION)}); this one sows {sorted(sown) or "none"}'
    )
  return deep, full[0]


def _decoder_init_inputs(encoder, variables, x, n, tap: str) -> tuple:
  (_, temporal), inter = encoder.apply(variables, x, n, train=False, mutable=['intermediates'])
  return decoder_inputs(inter.get('intermediates', {}), temporal, tap)


def init_state(nets: Nets, config, tx: optax.GradientTransformation, rng) -> PretrainState:
  """Builds the initial state; meant to run under jax.eval_shape / jit."""
  rng_enc, rng_proj, rng_dec, rng_queue, rng_drop, rng_run = jax.random.split(rng, 6)
  x, n = sample_input(config)
  enc_vars = nets.encoder.init({'params': rng_enc, 'dropout': rng_drop}, x, n, train=False)
  enc_vars = {k: v for k, v in enc_vars.items() if k != 'intermediates'}
  pooled, _ = nets.encoder.apply(enc_vars, x, n, train=False)
  params = {
    'encoder': enc_vars['params'],
    'projector': nets.projector.init(rng_proj, pooled)['params'],
    'decoder': nets.decoder.init(
      rng_dec, *_decoder_init_inputs(nets.encoder, enc_vars, x, n, decoder_tap(config))
    )['params'],
  }
  if classifies_order(config):  # its own key: the other parts' init does not move
    params['order_head'] = nets.order_head.init(jax.random.fold_in(rng, 7), pooled)['params']
  head = speed_head(config)
  if head != 'off':  # 'classify' reads the anchor's and the speed clip's features side by side
    inputs = pooled if head == 'relative' else jnp.concatenate([pooled, pooled], axis=-1)
    params['speed_head'] = nets.speed_head.init(jax.random.fold_in(rng, 8), inputs)['params']
  queue = objectives.l2_normalize(
    jax.random.normal(rng_queue, (config.mcc.queue_size, config.mcc.feature_dim))
  )
  batch_stats = enc_vars.get('batch_stats', {})
  return PretrainState(
    step=jnp.zeros((), jnp.int32),
    apply_fn=nets.encoder.apply,
    params=params,
    tx=tx,
    opt_state=tx.init(params),
    batch_stats=batch_stats,
    key_params={'encoder': params['encoder'], 'projector': params['projector']},
    key_batch_stats=batch_stats,
    queue=queue,
    queue_ids=jnp.full((config.mcc.queue_size,), -1, jnp.int32),
    queue_ptr=jnp.zeros((), jnp.int32),
    rng=rng_run,
  )


def encode(
  encoder, variables, clips, *, groups: int, rng, joints: bool = False, stats_groups: int = 0
):
  """Train-mode encoder pass with ghost BatchNorm over `groups` equal groups of samples.

  Args:
    variables: {'params', 'batch_stats'} of the encoder.
    clips: [N, M, T, V, C] (N % groups == 0), consecutive rows forming a group.
    joints: also return the per-joint features the encoder sows (decoder_inputs).
    stats_groups: > 0: only the first that many groups update the running statistics
      (the clean anchors, not the broken clips that follow them in the same pass).
  Returns:
    (pooled [N, D], temporal [N, T', D'], sown, batch_stats), the new running statistics
    being the mean of the (first stats_groups) groups' updates; sown is None, or with
    `joints` the dict of sown per-joint features ({'joints': ([N*M, T', V, D'],), and
    for ST-GCN 'joints_full': ([N*M, T, V, D0],)}; {} for encoders without them).
  """
  mutable = ['batch_stats', 'intermediates'] if joints else ['batch_stats']

  def one(x, rng_drop):
    (pooled, temporal), upd = encoder.apply(
      variables, x, models.full_lengths(x), train=True, mutable=mutable, rngs={'dropout': rng_drop}
    )
    sown = upd.get('intermediates', {}) if joints else None
    return pooled, temporal, sown, upd.get('batch_stats', {})

  if groups == 1:
    return one(clips, rng)
  n = clips.shape[0]
  xs = clips.reshape((groups, n // groups) + clips.shape[1:])
  pooled, temporal, j, bs = jax.vmap(one)(xs, jax.random.split(rng, groups))
  flat = lambda y: y.reshape((-1,) + y.shape[2:])
  j = None if j is None else jax.tree.map(flat, j)
  kept = stats_groups if stats_groups > 0 else groups
  return flat(pooled), flat(temporal), j, jax.tree.map(lambda s: jnp.mean(s[:kept], axis=0), bs)


def shuffled_encode(encoder, variables, clips, *, groups: int, rng_shuffle, rng):
  """`encode` with samples shuffled into the ghost-BN groups; outputs in sample order.

  The key pass runs this (MoCo's Shuffle-BN): which samples share BN statistics is a
  fresh random draw, unrelated to the query pass's fixed groups.
  Returns (pooled [N, D] in the order of `clips`, new batch_stats).
  """
  if groups == 1:
    pooled, _, _, bs = encode(encoder, variables, clips, groups=1, rng=rng)
    return pooled, bs
  perm = jax.random.permutation(rng_shuffle, clips.shape[0])
  pooled, _, _, bs = encode(encoder, variables, clips[perm], groups=groups, rng=rng)
  return pooled[jnp.argsort(perm)], bs


def step_views(state: PretrainState, batch: dict, config) -> tuple[dict, jax.Array]:
  """The step's views (augment.make_views) and the key for the rest of its randomness."""
  rng = jax.random.fold_in(state.rng, state.step)
  rng_views, rng_rest = jax.random.split(rng)
  views = augment.make_views(
    rng_views,
    batch['x'],
    batch['n'],
    aug=config.augment,
    layout=skeleton.get_layout(config.data.layout),
    frames=config.data.frames,
    speed_pair=speed_pair(config),
    **switches(config),
  )
  return views, rng_rest


def step_loss(
  params, key_params, state: PretrainState, batch: dict, *, nets: Nets, config, total_steps=1
):
  """The step's loss as a function of the query `params` and the EMA `key_params`.

  Keys carry no gradient: d loss / d key_params is zero (tests/test_pretrain_step.py).
  `total_steps` (the run's length) times `mcc.nn_warmup` is the step from which the
  nearest-neighbour positives (`mcc.nn_mode`) are used.
  Returns (loss, (query batch_stats, key batch_stats, k_pos [B, D], metrics)).
  """
  sw = switches(config)
  m = config.mcc
  views, rng = step_views(state, batch, config)
  rng_drop_q, rng_drop_k, rng_shuffle, rng_drop_i = jax.random.split(rng, 4)
  b = batch['x'].shape[0]
  groups = m.bn_groups
  ids = batch.get('index') if m.mask_own else None

  # Key pass: every clip the keys need (positive, speed clip, broken negative, the anchor
  # when symmetric) in one batched pass, shuffled into ghost-BN groups and restored after.
  rank = sw['broken_negative'] and m.negative_loss == 'rank'
  classify = classifies_order(config)
  dsm = sw['broken_negative'] and m.negative_loss == 'dsm'
  through_query = rank or classify or dsm  # the broken clip goes through the query encoder
  # The broken clip's curriculum: its loss is off before negative_start of the run.
  broken_on = state.step >= int(round(m.get('negative_start', 0.0) * total_steps))
  pair = speed_pair(config)
  key_clips = [views['positive']] + ([views['speed_clip']] if pair else [])
  if sw['broken_negative'] and not through_query:
    key_clips.append(views['negative'])
  if m.symmetric:
    key_clips.append(views['anchor'])
  pooled_k, key_bs = shuffled_encode(
    nets.encoder,
    {'params': key_params['encoder'], 'batch_stats': state.key_batch_stats},
    jnp.concatenate(key_clips, axis=0),
    groups=groups * len(key_clips),
    rng_shuffle=rng_shuffle,
    rng=rng_drop_k,
  )
  keys = objectives.l2_normalize(
    nets.projector.apply({'params': key_params['projector']}, pooled_k)
  )
  keys = jnp.split(jax.lax.stop_gradient(keys), len(key_clips), axis=0)
  pooled_keys = jnp.split(jax.lax.stop_gradient(pooled_k), len(key_clips), axis=0)
  k_pos = keys[0]
  k_neg = keys[1 + pair] if sw['broken_negative'] and not through_query else None
  queue_valid = None if ids is None else ids[:, None] != state.queue_ids[None, :]
  batch_valid = None if ids is None else ids[:, None] != ids[None, :]

  enc_vars = {'params': params['encoder'], 'batch_stats': state.batch_stats}
  query_clips = [views['anchor']] + ([views['positive']] if m.symmetric else [])
  bn = int(round(b * m.negative_fraction))
  if through_query:
    query_clips.append(views['negative'][:bn])
  clips = jnp.concatenate(query_clips, axis=0)
  # The exported BN statistics come from the natural clips' groups only: the probe never
  # sees a broken clip (with bn_groups=1 the pass is one batch and they cannot be split).
  clean_groups = groups * (2 if m.symmetric else 1)
  pooled, _, _, batch_stats = encode(
    nets.encoder,
    enc_vars,
    clips,
    groups=1 if groups == 1 else clips.shape[0] // (b // groups),
    rng=rng_drop_q,
    stats_groups=0 if groups == 1 else clean_groups,
  )
  q = objectives.l2_normalize(nets.projector.apply({'params': params['projector']}, pooled))
  nn = dict(
    nn_mode=m.get('nn_mode', 'off'),
    nn_k=m.get('nn_k', 1),
    nn_active=state.step >= int(round(m.get('nn_warmup', 0.0) * total_steps)),
  )
  in_batch = m.get('batch_negatives', False)
  # Without queue negatives the queue (still filled, so the state keeps its shape) has no
  # column in the softmax: the step's other keys are the only negatives.
  queue = state.queue if m.get('queue_negatives', True) else state.queue[:0]
  if queue_valid is not None:
    queue_valid = queue_valid[:, : queue.shape[0]]
  hard = {}
  if dsm:  # the broken clips' queries (first bn rows) as hard negatives, with gradient
    q_neg = jnp.zeros_like(q[:b]).at[:bn].set(q[-bn:])
    hard = dict(q_neg=q_neg, neg_valid=(jnp.arange(b) < bn) & broken_on)
  elif k_neg is not None:
    hard = dict(neg_valid=jnp.broadcast_to(broken_on, (b,)))
  nce, parts = objectives.info_nce(
    q[:b],
    k_pos,
    queue,
    k_neg,
    m.temperature,
    m.negative_weight,
    queue_valid,
    **nn,
    batch_keys=k_pos if in_batch else None,
    batch_valid=batch_valid,
    **hard,
  )
  if pair and m.speed_form == 'both':  # RSPNet: the speed clip is a positive too
    nce_speed, speed_parts = objectives.info_nce(
      q[:b],
      keys[1],
      queue,
      None,
      m.temperature,
      1.0,
      queue_valid,
      **nn,
      batch_keys=keys[1] if in_batch else None,
      batch_valid=batch_valid,
    )
    nce = 0.5 * (nce + nce_speed)
    parts['acc_speed_clip'] = speed_parts['acc']
  if m.symmetric:
    nce2, _ = objectives.info_nce(
      q[b : 2 * b],
      keys[-1],
      queue,
      None,
      m.temperature,
      1.0,
      queue_valid,
      **nn,
      batch_keys=keys[-1] if in_batch else None,
      batch_valid=batch_valid,
    )
    nce = 0.5 * (nce + nce2)
  loss = nce
  nce_batch, acc_batch = objectives.in_batch_nce(q[:b], k_pos, m.temperature, ids)
  metrics = {'nce': nce, **parts, 'nce_batch': nce_batch, 'acc_batch': acc_batch}
  on = jnp.asarray(broken_on, jnp.float32)
  if rank:
    broken, broken_parts = objectives.broken_rank_loss(q[:bn], q[-bn:], k_pos[:bn], m.temperature)
    loss = loss + on * m.negative_weight * broken
    metrics.update(broken=broken, **broken_parts)
  if classify:
    logits = nets.order_head.apply(
      {'params': params['order_head']}, jnp.concatenate([pooled[:bn], pooled[-bn:]], axis=0)
    )[:, 0]
    broken, broken_parts = objectives.order_loss(logits[:bn], logits[bn:])
    loss = loss + on * m.negative_weight * broken
    metrics.update(broken=broken, **broken_parts)
  head = speed_head(config)
  if head != 'off':
    # The speed clip's key-encoder features (no gradient) beside the anchor's query ones.
    changed = pooled_keys[1] if pair else pooled_keys[0]
    apply = lambda f: nets.speed_head.apply({'params': params['speed_head']}, f)
    if head == 'relative':
      g = lambda f: objectives.l2_normalize(apply(f))
      speed, speed_parts = objectives.relative_speed_loss(
        g(pooled[:b]), g(pooled_keys[0]), g(changed), m.speed_margin
      )
    else:
      lo, hi = log_speed_range(config.augment)
      labels = objectives.speed_bins(jnp.log(views['speed']), lo, hi, m.speed_classes)
      logits = apply(jnp.concatenate([pooled[:b], changed], axis=-1))
      speed, speed_parts = objectives.speed_class_loss(logits, labels)
    loss = loss + m.speed_weight * speed
    metrics.update(speed=speed, **speed_parts)
  if sw['interpolation']:
    # Its own pass, over part of the batch: the query above saw the clean anchor. BN
    # runs on this batch, but its statistics are not kept (the clean pass's are).
    bi = int(round(b * m.interp_fraction))
    sparse = views['interp_input'][:bi]
    _, temporal, sown, _ = encode(
      nets.encoder, enc_vars, sparse, groups=1, rng=rng_drop_i, joints=True
    )
    feats = decoder_inputs(sown, temporal, decoder_tap(config))
    recon = sparse + nets.decoder.apply({'params': params['decoder']}, *feats)
    score = (
      objectives.motion_interpolation_loss
      if m.get('interp_target', 'position') == 'motion'
      else objectives.interpolation_loss
    )
    interp = score(recon, views['interp_target'][:bi], views['interp_mask'][:bi], reference=sparse)
    loss = loss + m.interp_weight * interp
    metrics['interp'] = interp
  metrics['loss'] = loss
  return loss, (batch_stats, key_bs, k_pos, metrics)


def train_step(state: PretrainState, batch: dict, *, nets: Nets, config, total_steps: int):
  """One pretraining step on a global batch; the optimizer is the state's `tx`.

  Args:
    batch: {'x': [B, M, Tmax, V, C], 'n': [B]} and, for own-key masking, 'index': [B]
      int32 sample ids (without it no queue key is masked).
    total_steps: the run's length, which sets the EMA schedule.
  """
  m = config.mcc
  loss_fn = functools.partial(step_loss, nets=nets, config=config, total_steps=total_steps)
  grads, (batch_stats, key_bs, k_pos, metrics) = jax.grad(loss_fn, has_aux=True)(
    state.params, state.key_params, state, batch
  )
  momentum = momentum_at(m, state.step, total_steps)
  state = state.apply_gradients(grads=grads)  # step + 1, params and opt_state by tx
  online = {'encoder': state.params['encoder'], 'projector': state.params['projector']}
  # optax's EMA step: new = step_size * online + (1 - step_size) * key.
  key_params = optax.incremental_update(online, state.key_params, 1.0 - momentum)
  ids = batch.get('index') if m.mask_own else None
  if ids is None:
    queue, ptr = objectives.enqueue(state.queue, state.queue_ptr, k_pos)
    queue_ids = state.queue_ids
  else:
    queue, queue_ids, ptr = objectives.enqueue(
      state.queue, state.queue_ptr, k_pos, ids, state.queue_ids
    )
  metrics['momentum'] = momentum
  new_state = state.replace(
    batch_stats=batch_stats,
    key_params=key_params,
    key_batch_stats=key_bs,
    queue=queue,
    queue_ids=queue_ids,
    queue_ptr=ptr,
  )
  return new_state, metrics


def jit_train_step(nets: Nets, config, state_sharding, batch_sharding, total_steps: int):
  """`train_step` jitted once, the state donated and the batch laid out by batch_sharding."""
  step = functools.partial(train_step, nets=nets, config=config, total_steps=total_steps)
  return jax.jit(
    step,
    in_shardings=(state_sharding, batch_sharding),
    out_shardings=(state_sharding, state_sharding),
    donate_argnums=0,
  )
