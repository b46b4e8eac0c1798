"""`train_and_evaluate(config, workdir)`: runs the config's stages and reports.

Each stage writes its entry into <workdir>/results.json as soon as it ends, so
re-running the same command skips finished stages (unless their protocol
changed) and resumes an unfinished one from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from skeljax import checkpoint as ckpt_lib
from skeljax import config as config_lib
from skeljax import (
  data,
  ensemble,
  evaluate,
  frozen,
  loop,
  optim,
  plots,
  pretrain,
  results,
  supervised,
)
from skeljax import mesh as mesh_lib
from skeljax.logger import MetricsLog, read_metrics


@dataclasses.dataclass
class Context:
  config: object
  workdir: str
  mesh: object
  train: data.Split
  test: data.Split
  _features: dict = dataclasses.field(default_factory=dict)
  # init -> its frozen_variables, already recalibrated (the export's), not yet extracted.
  _frozen: dict = dataclasses.field(default_factory=dict)
  _jitted: dict = dataclasses.field(default_factory=dict)

  @property
  def writer(self) -> bool:
    return jax.process_index() == 0

  def features(self, init: str, variables):
    """Frozen train/test features of an encoder, computed once per run.

    With linear.recalibrate_bn (the default) the encoder's BN statistics are first
    re-estimated on clean training clips (frozen.recalibrate_bn), whatever `init` is:
    the pretrained encoder and the random-init reference get the same treatment, and the
    linear probe (fixed-feature path) and the kNN read the same features.
    """
    if init not in self._features:
      ready = self._frozen.pop(init, None)
      self._features[init] = frozen_features(
        self, variables if ready is None else ready, recalibrated=ready is not None
      )
    return self._features[init]

  def jitted(self, name: str, make):
    """A jitted function of this context's config, built once (the monitor reuses it)."""
    key = (name, id(self.config))  # an ensemble member's context has its own config
    if key not in self._jitted:
      self._jitted[key] = make()
    return self._jitted[key]

  def png(self, name: str) -> str:
    return os.path.join(self.workdir, 'plots', name)


def frozen_variables(ctx: Context, variables):
  """The frozen stages' encoder variables: with linear.recalibrate_bn the BN statistics
  re-estimated on clean training clips (frozen.recalibrate_bn), else `variables`."""
  config, mesh = ctx.config, ctx.mesh
  if not config.linear.recalibrate_bn:
    return variables
  fn = ctx.jitted('recalibrate', lambda: frozen.make_recalibrate_fn(config, mesh))
  return frozen.recalibrate_bn(config, mesh, variables, ctx.train, fn=fn)


def frozen_features(ctx: Context, variables, *, recalibrated: bool = False):
  """((train features, labels), (test features, labels)) of a frozen encoder.

  The one feature protocol of the frozen stages and the kNN monitor: the variables of
  frozen_variables (pass recalibrated=True when they already are).
  """
  config, mesh = ctx.config, ctx.mesh
  if not recalibrated:
    variables = frozen_variables(ctx, variables)
  fn = ctx.jitted('features', lambda: frozen.make_feature_fn(config, mesh))
  return (
    frozen.extract(config, mesh, variables, ctx.train, fn=fn, what='features train'),
    frozen.extract(config, mesh, variables, ctx.test, fn=fn, what='features test'),
  )


def knn_top1(config, num_classes: int, train, test) -> dict[int, dict]:
  """{k: {'top1', 'top5'}} of the knn stage's classifier for every k of `config.knn.k`."""
  (tr_f, tr_y), (te_f, te_y) = train, test
  out = {}
  for k in config.knn.k:
    scores = frozen.knn_scores(
      tr_f, tr_y, te_f, num_classes, k, config.knn.temperature, config.knn.centre
    )
    out[k] = evaluate.accuracy(scores, te_y)
  return out


class KnnMonitor:
  """The online kNN monitor: state -> {'knn<k>': top-1 %} of the query encoder.

  The knn stage's protocol (frozen_features, knn_top1) on the training split's clean
  clips as the bank and ctx.test (the validation part when one is set) as queries, so the
  value at the last step equals the knn stage's on the exported encoder. It keeps the last
  call's frozen variables and features (`last`), which stage_pretrain hands on to the
  export and the frozen stages instead of computing them again.
  """

  def __init__(self, ctx: Context):
    self.ctx = ctx
    self.last = None  # (step, frozen variables, features)

  def __call__(self, state) -> dict:
    ctx = self.ctx
    variables = {'params': state.params['encoder']}
    if state.batch_stats:
      variables['batch_stats'] = state.batch_stats
    variables = frozen_variables(ctx, variables)
    train, test = frozen_features(ctx, variables, recalibrated=True)
    self.last = (int(state.step), variables, (train, test))
    return {
      f'knn{k}': acc['top1']
      for k, acc in knn_top1(ctx.config, ctx.train.num_classes, train, test).items()
    }


# ---------------------------------------------------------------- stages ---


def encoder_metadata(config, steps: int) -> dict:
  """The exported encoder's description: what skeljax.load_encoder rebuilds it from."""
  return {
    'layout': config.data.layout,
    'stream': config.data.stream,
    'model': config.model.to_dict(),
    'frames': config.data.frames,
    'persons': config.data.persons,
    'max_frames': config.data.max_frames,
    'augment': config.augment.to_dict(),  # eval_clip's preprocessing
    'dataset': config.data.name,
    'objective': config.objective,
    'steps': steps,
  }


def stage_pretrain(ctx: Context) -> dict[str, dict]:
  config, sec = ctx.config, ctx.config.pretrain
  steps_per_epoch = ctx.train.size // sec.batch_size
  total = steps_per_epoch * sec.epochs
  if ctx.writer:
    print(
      f'pretrain: {total} steps; key-encoder EMA starts at '
      f'{pretrain.base_momentum(config.mcc, total):.4f} ({config.mcc.momentum_schedule})',
      flush=True,
    )
  nets = pretrain.make_nets(config)
  tx, lr = optim.make_optimizer(sec, steps_per_epoch, total)
  rep = mesh_lib.replicated(ctx.mesh)
  rng = jax.random.PRNGKey(config.seed)
  state = jax.jit(lambda r: pretrain.init_state(nets, config, tx, r), out_shardings=rep)(rng)
  step_fn = pretrain.jit_train_step(
    nets, config, rep, mesh_lib.batch_sharded(ctx.mesh), total_steps=total
  )
  fp = ckpt_lib.fingerprint(config, ('data', 'augment', 'model', 'mcc', 'pretrain'))
  ckpt = ckpt_lib.StageCheckpoints(
    os.path.join(ctx.workdir, 'checkpoints', 'pretrain'), keep=sec.keep_checkpoints, fingerprint_=fp
  )
  log = MetricsLog(ctx.workdir, 'pretrain', total, sec.batch_size)
  monitor = KnnMonitor(ctx) if sec.monitor_every > 0 else None
  t0 = time.perf_counter()
  state = loop.run(
    stage='pretrain',
    state=state,
    step_fn=step_fn,
    batches=lambda start: data.train_batches(
      ctx.train,
      batch_size=sec.batch_size,
      seed=config.seed,
      start_step=start,
      num_steps=total,
      num_threads=config.data.num_threads,
    ),
    mesh=ctx.mesh,
    ckpt=ckpt,
    log=log,
    total_steps=total,
    log_every=sec.log_every,
    checkpoint_every=sec.checkpoint_every,
    lr_fn=lr,
    monitor=monitor,
    monitor_every=sec.monitor_every * steps_per_epoch,
  )
  # Summed over every segment when the stage was killed and resumed (logger.MetricsLog).
  wall = time.perf_counter() - t0 + log.prior_s
  # Encoders without BatchNorm (transformer, gru) have no batch_stats to save.
  variables = {
    'params': state.params['encoder'],
    **({'batch_stats': state.batch_stats} if state.batch_stats else {}),
  }
  # The monitor's last call saw this very state (loop.run monitors the last step): its
  # recalibrated statistics are exported and its features serve the frozen stages.
  last = monitor.last if monitor is not None else None
  if last is not None and last[0] != total:  # a resumed run that had already finished
    last = None
  frozen_vars = last[1] if last else frozen_variables(ctx, variables)
  recalibrated = None
  if config.linear.recalibrate_bn and state.batch_stats:
    # The frozen stages' BN statistics (frozen_variables), exported so that
    # skeljax.load_encoder gives the knn stage's features without the training data.
    recalibrated = {'batch_stats': frozen_vars['batch_stats']}
  path = os.path.join(ctx.workdir, 'encoder')
  ckpt_lib.save_encoder(path, variables, encoder_metadata(config, total), recalibrated=recalibrated)
  if last:
    ctx._features[path] = last[2]
  else:  # no monitor: the frozen stages extract from the statistics just exported
    ctx._frozen[path] = frozen_vars
  records = read_metrics(ctx.workdir, 'pretrain')
  # Each logged rate excludes its segment's compiling step (logger.MetricsLog.rate); a
  # run of one step per segment has none.
  rates = [r['samples_per_s'] for r in records if r.get('samples_per_s')]
  entry = {
    'final_loss': records[-1]['loss'] if records else None,
    'steps': total,
    'epochs': sec.epochs,
    'batch_size': sec.batch_size,
    'lr': sec.lr,
    'optimizer': sec.optimizer,
    'objective': config.objective,
    'samples_per_s': float(np.median(rates)) if rates else None,
    'stage_wall_s': round(wall, 1),
    'ema_momentum_start': pretrain.base_momentum(config.mcc, total),
    'ema_momentum_end': pretrain.end_momentum(config.mcc, total),
    'monitor_s': round(log.monitor_s, 1),
  }
  monitored = [r for r in records if f'knn{config.knn.k[0]}' in r]
  if monitored:
    entry['monitor'] = {k: v for k, v in monitored[-1].items() if k.startswith('knn')}
    entry['monitor_split'] = 'validation' if _validating(config) else 'test (monitor only)'
  if ctx.writer and records:
    entry['curve_png'] = plots.training_curves(
      records, ctx.png('pretrain_curves.png'), f'pretrain ({config.objective})'
    )
  return {'pretrain': entry}


def _report(ctx, name, logits, labels, feats, extra) -> dict:
  entry = {**evaluate.accuracy(logits, labels), 'n_test': int(len(labels)), **extra}
  entry.update(
    evaluate.per_class(
      np.argmax(logits, -1), labels, ctx.test.label_names, ctx.config.data.reversed_pairs
    )
  )
  if ctx.writer:
    cm = evaluate.confusion(np.argmax(logits, -1), labels, ctx.test.num_classes)
    entry['confusion_png'] = plots.confusion_matrix(
      cm,
      ctx.test.label_names,
      ctx.png(f'{name}_confusion.png'),
      f'{name}: top-1 {entry["top1"]:.1f}%',
    )
    if feats is not None:
      entry['features_png'] = plots.feature_map(
        feats, labels, ctx.test.label_names, ctx.png(f'{name}_features.png'), name
      )
  return entry


def _fixed_probe(ctx: Context, init: str, variables):
  """config.linear's probe on frozen features.

  Returns test logits [N, K], labels [N], the probe's features [N, D] and the number of
  dead (constant) training dimensions that standardize drops.
  """
  sec = ctx.config.linear
  (tr_f, tr_y), (te_f, te_y) = ctx.features(init, variables)
  dead = int(np.sum(~frozen.live_dimensions(tr_f)))
  if sec.standardize:
    tr_f, te_f = frozen.standardize(tr_f, te_f)
  clf, params = frozen.fit_linear(tr_f, tr_y, ctx.train.num_classes, sec, ctx.config.seed)
  return np.asarray(clf.apply({'params': params}, jnp.asarray(te_f))), te_y, te_f, dead


def _linear(ctx: Context, name: str, init: str) -> dict:
  config, sec = ctx.config, ctx.config.linear
  variables = evaluate.encoder_variables(config, init)
  protocol = {
    'epochs': sec.epochs,
    'batch_size': sec.batch_size,
    'lr': sec.lr,
    'optimizer': sec.optimizer,
    'augment': sec.augment,
    'encoder': 'frozen',
  }
  if sec.augment:
    enc, clf, clf_params, bs = supervised.train_supervised(
      config,
      ctx.workdir,
      ctx.mesh,
      name,
      sec,
      variables,
      ctx.train,
      frozen_encoder=True,
      augmented=True,
    )
    logits, labels, feats = supervised.classify(config, ctx.mesh, enc, clf, clf_params, ctx.test)
    protocol['batch_size'] = bs
    # The augmented probe runs the encoder with its own BN statistics on raw features.
    protocol.update(standardize=False, recalibrate_bn=False)
  else:
    protocol.update(standardize=sec.standardize, recalibrate_bn=sec.recalibrate_bn)
    logits, labels, feats, dead = _fixed_probe(ctx, init, variables)
    if sec.standardize:
      protocol['dead_dims'] = dead
  return _report(
    ctx, name, logits, labels, feats, {'n_train': ctx.train.size, 'init': init, **protocol}
  )


def stage_linear(ctx: Context) -> dict[str, dict]:
  init = evaluate.resolve_init(ctx.config, ctx.workdir)
  out = {'linear': _linear(ctx, 'linear', init)}
  if ctx.config.random_reference and init != 'random':
    out['linear_random'] = _linear(ctx, 'linear_random', 'random')
  return out


def stage_knn(ctx: Context) -> dict[str, dict]:
  config = ctx.config
  init = evaluate.resolve_init(config, ctx.workdir)
  variables = evaluate.encoder_variables(config, init)
  (tr_f, tr_y), (te_f, te_y) = ctx.features(init, variables)
  entry = {
    'n_train': ctx.train.size,
    'n_test': int(len(te_y)),
    'init': init,
    'temperature': config.knn.temperature,
    'centre': config.knn.centre,
    'recalibrate_bn': config.linear.recalibrate_bn,
    'standardize': False,  # the cosine needs no per-dimension scale; centring only
  }
  for k, acc in knn_top1(config, ctx.train.num_classes, (tr_f, tr_y), (te_f, te_y)).items():
    entry[f'k{k}'] = acc
  last = entry[f'k{config.knn.k[-1]}']
  entry.update(top1=last['top1'], top5=last['top5'], k=list(config.knn.k))
  return {'knn': entry}


def _supervised(ctx, name, sec, init, indices=None) -> dict:
  config = ctx.config
  variables = evaluate.encoder_variables(config, init)
  enc, clf, clf_params, bs = supervised.train_supervised(
    config,
    ctx.workdir,
    ctx.mesh,
    name,
    sec,
    variables,
    ctx.train,
    frozen_encoder=False,
    augmented=True,
    indices=indices,
  )
  logits, labels, feats = supervised.classify(config, ctx.mesh, enc, clf, clf_params, ctx.test)
  n_train = ctx.train.size if indices is None else int(len(indices))
  return _report(
    ctx,
    name,
    logits,
    labels,
    feats,
    {
      'n_train': n_train,
      'init': init,
      'epochs': sec.epochs,
      'batch_size': bs,
      'lr': sec.lr,
      'optimizer': sec.optimizer,
      'encoder': 'trained',
    },
  )


def stage_finetune(ctx: Context) -> dict[str, dict]:
  init = evaluate.resolve_init(ctx.config, ctx.workdir)
  return {'finetune': _supervised(ctx, 'finetune', ctx.config.finetune, init)}


def stage_scratch(ctx: Context) -> dict[str, dict]:
  return {'scratch': _supervised(ctx, 'scratch', ctx.config.scratch, 'random')}


def stage_semi(ctx: Context) -> dict[str, dict]:
  config = ctx.config
  init = evaluate.resolve_init(config, ctx.workdir)
  labels = ctx.train.labels()
  entry = {'init': init, 'n_test': ctx.test.size, 'fractions': {}}
  for frac in config.semi.fractions:
    tag = f'semi_{frac * 100:g}pct'
    idx = supervised.balanced_subset(labels, frac, config.seed)
    path = supervised.save_subset(ctx.workdir, tag, idx)
    res = _supervised(ctx, tag, config.semi, init, indices=idx)
    res['subset'] = path
    entry['fractions'][f'{frac:g}'] = res
  last = entry['fractions'][f'{config.semi.fractions[-1]:g}']
  entry.update(top1=last['top1'], top5=last['top5'], n_train=last['n_train'])
  return {'semi': entry}


def stage_ensemble(ctx: Context) -> dict[str, dict]:
  """Late fusion of one linear probe per member encoder (skeljax/ensemble.py).

  Every member gets config.linear's fixed-feature probe (linear.augment is not used) on
  this run's split; their softmax probabilities are summed with ensemble.weights.
  """
  sec = ctx.config.linear
  members = ensemble.members(ctx.config, ctx.workdir)
  w = ensemble.weights(ctx.config, len(members))
  probs, rows, labels = [], [], None
  for m, wi in zip(members, w, strict=True):
    # Another member's features come from its own config (stream, frames, model).
    mctx = ctx if m.own else dataclasses.replace(ctx, config=m.config, _features={})
    logits, labels, _, _ = _fixed_probe(
      mctx, m.encoder, evaluate.encoder_variables(m.config, m.encoder)
    )
    probs.append(np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)))
    acc = evaluate.accuracy(logits, labels)
    stream, model = m.config.data.stream, m.config.model.name
    rows.append({'run': m.run, 'stream': stream, 'model': model, 'weight': float(wi), **acc})
  fused = ensemble.fuse(np.stack(probs), w)
  extra = {
    'n_train': ctx.train.size,
    'init': '+'.join(r['stream'] for r in rows),
    'members': rows,
    'fusion': 'weighted sum of softmax probabilities',
    'epochs': sec.epochs,
    'batch_size': sec.batch_size,
    'lr': sec.lr,
    'optimizer': sec.optimizer,
    'encoder': 'frozen',
    'standardize': sec.standardize,
    'recalibrate_bn': sec.recalibrate_bn,
  }
  if ctx.writer:
    # The members' test probabilities: other weights can be tried without a rerun.
    extra['probs_npz'] = os.path.join(ctx.workdir, 'ensemble_probs.npz')
    np.savez(extra['probs_npz'], probs=np.stack(probs), weights=w, labels=labels)
  return {'ensemble': _report(ctx, 'ensemble', fused, labels, None, extra)}


STAGE_FNS = {
  'pretrain': stage_pretrain,
  'linear': stage_linear,
  'knn': stage_knn,
  'finetune': stage_finetune,
  'semi': stage_semi,
  'scratch': stage_scratch,
  'ensemble': stage_ensemble,
}


def stage_protocol(config, stage: str, workdir: str = '') -> dict:
  """The fields whose change makes a finished stage's entry stale (for the ensemble also
  what its member runs were trained as, read from `workdir`'s ensemble.runs)."""
  sections = ['data', 'model', 'augment', stage]
  if stage == 'pretrain':
    sections.append('mcc')
  if stage == 'ensemble':
    sections.append('linear')
  fp = ckpt_lib.fingerprint(config, sections)
  if stage == 'ensemble':
    fp['members'] = ensemble.trained_as(config, workdir)
  fp['init_from'] = config.init_from
  if stage == 'knn':  # the kNN reads Context.features, which this flag changes
    fp['recalibrate_bn'] = config.linear.recalibrate_bn
  return fp


# ------------------------------------------------------------------ main ---


def _validating(config) -> bool:
  return bool(config.data.val_fraction > 0 or config.data.val_holdout)


def device_description() -> str:
  d = jax.devices()[0]
  return f'{d.platform}:{d.device_kind} x{jax.device_count()} ({jax.process_count()} process)'


def check_against_data(config, train_size: int) -> None:
  """The config checks that need the training-set size; ConfigError on failure."""
  if 'pretrain' not in config.stages:
    return
  if train_size < config.pretrain.batch_size:
    raise config_lib.ConfigError(
      f'pretrain.batch_size={config.pretrain.batch_size} exceeds the {train_size} '
      'training samples; lower it'
    )
  total = (train_size // config.pretrain.batch_size) * config.pretrain.epochs
  m0, m1 = pretrain.base_momentum(config.mcc, total), pretrain.end_momentum(config.mcc, total)
  if m1 < m0:
    raise config_lib.ConfigError(
      f"mcc.momentum_end={m1} is below the key encoder's start rate {m0:.4f} (derived from "
      f'the run length of {total} steps); raise momentum_end or set mcc.momentum'
    )
  if not config.mcc.mask_own and config.mcc.queue_size >= train_size:
    raise config_lib.ConfigError(
      f'mcc.queue_size={config.mcc.queue_size} holds the whole training set of '
      f'{train_size} samples, so queries meet their own earlier keys as negatives; '
      'set mcc.mask_own=True or a smaller queue'
    )


def _write_config(config, workdir: str) -> None:
  """config.json of this invocation, written whole or not at all."""
  path = os.path.join(workdir, 'config.json')
  with open(path + '.tmp', 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  os.replace(path + '.tmp', path)


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs every stage of `config.stages` in `workdir`; returns the results dict.

  Every check, the data-dependent ones included, runs before the workdir is touched:
  a rejected config leaves an earlier run's files as they were.
  """
  config_lib.validate(config, jax.device_count(), jax.process_count())
  workdir = os.path.abspath(os.path.expanduser(workdir))
  ensemble.check(config, workdir)  # reads the member runs before any stage trains
  writer = jax.process_index() == 0
  builder = data.prepare(config.data, is_writer=writer)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices('skeljax: data prepared')
    builder = data.prepare(config.data, is_writer=False)
  train = data.load_split(builder, config.data, config.data.train_split)
  if _validating(config):
    # Tuning mode: every stage trains on part of the training split and reports on
    # the held-out rest; the test split is not read.
    if config.data.val_holdout:
      field, value = config.data.val_holdout.split('=')
      train_rows, val_rows = data.holdout_rows(train, field, int(value))
    else:
      train_rows, val_rows = data.validation_rows(train.labels(), config.data.val_fraction)
    train, test = train.subset(train_rows), train.subset(val_rows)
    if writer:
      print(
        f'data: validation mode, {len(train_rows)} training / {len(val_rows)} held-out '
        f'samples of split {config.data.train_split!r} (the test split is not used)',
        flush=True,
      )
  else:
    test = data.load_split(builder, config.data, config.data.test_split)
  # data.persons, frames, max_frames and mcc.queue_size left at 0 come from the training rows.
  train, test, derived = data.derive_from_data(config, train, test)
  if derived:
    if writer:
      print(derived, flush=True)
    config_lib.validate(config, jax.device_count(), jax.process_count())
  check_against_data(config, train.size)
  os.makedirs(workdir, exist_ok=True)
  if writer:
    _write_config(config, workdir)
  ctx = Context(config=config, workdir=workdir, mesh=mesh_lib.make_mesh(), train=train, test=test)
  report = results.Results.load(workdir)
  for stage in config.stages:
    proto = stage_protocol(config, stage, workdir)
    if report.done(stage, proto):
      if writer:
        print(f'{stage}: already finished in {workdir}; skipping', flush=True)
      continue
    t0 = time.perf_counter()
    entries = STAGE_FNS[stage](ctx)
    for name, entry in entries.items():
      entry['wall_s'] = round(time.perf_counter() - t0, 1)
      report.set_stage(name, entry, proto if name == stage else None)
    report.set_run(protocol=results.protocol(config), device=device_description())
    if writer:
      report.save(workdir)
  if writer:
    report.save(workdir)
    print(report.markdown(), flush=True)
    print(f'results: {os.path.join(workdir, "results.json")} and results.md', flush=True)
  return report.as_dict()
