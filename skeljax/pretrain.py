"""Self-supervised pretraining: the MCC objective (and the SkeletonCLR baseline).

  views   = augment.make_views(key, x, n)           on device, inside the step
  query   = projector(encoder(anchor))              gradients flow here
  keys    = key_projector(key_encoder(positive | negative))   EMA weights, no grad
  L       = InfoNCE(query; positive vs [broken negative, queue])
            + lambda * MSE(decoder(temporal features), dropped frames)

`objective='contrastive'` is SkeletonCLR: the positive is a second augmented
view at speed 1, no broken negative and no interpolation loss.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from skeljax import augment, models, objectives, skeleton
from skeljax.models import heads


@dataclasses.dataclass(frozen=True)
class Nets:
  """The modules of pretraining; pure definitions, no weights."""

  encoder: nn.Module
  projector: nn.Module
  decoder: nn.Module


def make_nets(config) -> Nets:
  layout = skeleton.get_layout(config.data.layout)
  frames = config.data.frames
  return Nets(
    encoder=models.build_encoder(config.model, layout, frames),
    projector=heads.ProjectionHead(
      hidden=config.model.projection_hidden, out=config.mcc.feature_dim
    ),
    decoder=heads.InterpDecoder(
      frames=frames,
      persons=config.data.persons,
      num_joints=layout.num_joints,
      channels=layout.num_channels,
      width=config.model.decoder_width,
    ),
  )


@flax.struct.dataclass
class PretrainState:
  step: jax.Array
  params: Any  # {'encoder', 'projector', 'decoder'}
  batch_stats: Any  # query encoder BN statistics
  key_params: Any  # EMA of {'encoder', 'projector'}
  key_batch_stats: Any  # key encoder BN statistics
  queue: jax.Array  # [K, feature_dim], L2-normalised keys
  queue_ptr: jax.Array
  opt_state: Any
  rng: jax.Array


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


def sample_input(config, batch: int = 2):
  layout = skeleton.get_layout(config.data.layout)
  shape = (batch, config.data.persons, config.data.frames, layout.num_joints, layout.num_channels)
  return jnp.zeros(shape, jnp.float32), jnp.full((batch,), config.data.frames, jnp.int32)


def init_state(nets: Nets, config, tx: optax.GradientTransformation, rng) -> PretrainState:
  """Builds the initial state; meant to run under jax.eval_shape / jit."""
  k_enc, k_proj, k_dec, k_queue, k_drop, k_run = jax.random.split(rng, 6)
  x, n = sample_input(config)
  enc_vars = nets.encoder.init({'params': k_enc, 'dropout': k_drop}, x, n, train=False)
  pooled, temporal = nets.encoder.apply(enc_vars, x, n, train=False)
  params = {
    'encoder': enc_vars['params'],
    'projector': nets.projector.init(k_proj, pooled)['params'],
    'decoder': nets.decoder.init(k_dec, temporal)['params'],
  }
  queue = objectives.l2_normalize(
    jax.random.normal(k_queue, (config.mcc.queue_size, config.mcc.feature_dim))
  )
  batch_stats = enc_vars.get('batch_stats', {})
  return PretrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=batch_stats,
    key_params={'encoder': params['encoder'], 'projector': params['projector']},
    key_batch_stats=batch_stats,
    queue=queue,
    queue_ptr=jnp.zeros((), jnp.int32),
    opt_state=tx.init(params),
    rng=k_run,
  )


def _full_length(x):
  return jnp.full((x.shape[0],), x.shape[2], jnp.int32)


def train_step(
  state: PretrainState, batch: dict, *, nets: Nets, config, tx: optax.GradientTransformation
):
  """One pretraining step on a global batch {'x': [B,M,Tmax,V,C], 'n': [B]}."""
  sw = switches(config)
  m = config.mcc
  layout = skeleton.get_layout(config.data.layout)
  rng = jax.random.fold_in(state.rng, state.step)
  k_views, k_drop_q, k_drop_k = jax.random.split(rng, 3)
  views = augment.make_views(
    k_views,
    batch['x'],
    batch['n'],
    aug=config.augment,
    layout=layout,
    frames=config.data.frames,
    **sw,
  )
  b = batch['x'].shape[0]

  def encode_keys(clips):
    """Key encoder (EMA weights, BN in train mode), no gradient."""
    (pooled, _), upd = nets.encoder.apply(
      {'params': state.key_params['encoder'], 'batch_stats': state.key_batch_stats},
      clips,
      _full_length(clips),
      train=True,
      mutable=['batch_stats'],
      rngs={'dropout': k_drop_k},
    )
    k = objectives.l2_normalize(
      nets.projector.apply({'params': state.key_params['projector']}, pooled)
    )
    return jax.lax.stop_gradient(k), upd['batch_stats']

  # One batched key pass over every clip the keys need (positive, broken negative,
  # and the anchor when symmetric).
  key_clips = [views['positive']]
  if sw['broken_negative']:
    key_clips.append(views['negative'])
  if m.symmetric:
    key_clips.append(views['anchor'])
  keys, key_bs = encode_keys(jnp.concatenate(key_clips, axis=0))
  keys = jnp.split(keys, len(key_clips), axis=0)
  k_pos = keys[0]
  k_neg = keys[1] if sw['broken_negative'] else None

  # The query pass doubles as the interpolation pass: the query sees the anchor
  # with its dropped frames filled, and the decoder restores them.
  q_input = views['interp_input'] if sw['interpolation'] else views['anchor']

  def loss_fn(params):
    query_clips = [q_input] + ([views['positive']] if m.symmetric else [])
    clips = jnp.concatenate(query_clips, axis=0)
    (pooled, temporal), upd = nets.encoder.apply(
      {'params': params['encoder'], 'batch_stats': state.batch_stats},
      clips,
      _full_length(clips),
      train=True,
      mutable=['batch_stats'],
      rngs={'dropout': k_drop_q},
    )
    q = objectives.l2_normalize(nets.projector.apply({'params': params['projector']}, pooled))
    nce, parts = objectives.info_nce(
      q[:b], k_pos, state.queue, k_neg, m.temperature, m.negative_weight
    )
    if m.symmetric:
      nce2, _ = objectives.info_nce(q[b:], keys[-1], state.queue, None, m.temperature)
      nce = 0.5 * (nce + nce2)
    loss = nce
    metrics = {'nce': nce, **parts}
    if sw['interpolation']:
      recon = nets.decoder.apply({'params': params['decoder']}, temporal[:b])
      interp = objectives.interpolation_loss(recon, views['interp_target'], views['interp_mask'])
      loss = loss + m.interp_weight * interp
      metrics['interp'] = interp
    metrics['loss'] = loss
    return loss, (upd['batch_stats'], metrics)

  grads, (batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  online = {'encoder': params['encoder'], 'projector': params['projector']}
  key_params = jax.tree.map(
    lambda k, q: m.momentum * k + (1.0 - m.momentum) * q, state.key_params, online
  )
  queue, ptr = objectives.enqueue(state.queue, state.queue_ptr, k_pos)
  new_state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    key_params=key_params,
    key_batch_stats=key_bs,
    queue=queue,
    queue_ptr=ptr,
    opt_state=opt_state,
  )
  return new_state, metrics


def jit_train_step(nets: Nets, config, tx, state_sharding, batch_sharding):
  step = functools.partial(train_step, nets=nets, config=config, tx=tx)
  return jax.jit(
    step,
    in_shardings=(state_sharding, batch_sharding),
    out_shardings=(state_sharding, state_sharding),
    donate_argnums=0,
  )
