"""The real train_and_evaluate on the tiny demo config: results, resume, NaN guard."""

import json
import os

import numpy as np
import pytest


def _tiny_config(tmp_path, **overrides):
  from skeljax import config as config_lib

  c = config_lib.load_config('demo', 'tiny')
  c.data.data_dir = str(tmp_path.parent / 'shared_data_dir')
  for key, value in overrides.items():
    section, _, field = key.rpartition('.')
    (c[section] if section else c)[field] = value
  return c


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
  from skeljax import run

  tmp = tmp_path_factory.mktemp('demo')
  config = _tiny_config(tmp)
  out = run.train_and_evaluate(config, str(tmp / 'run'))
  return config, tmp / 'run', out


def test_demo_tiny_writes_results_in_the_fixed_schema(demo_run):
  _, workdir, out = demo_run
  saved = json.loads((workdir / 'results.json').read_text())
  assert set(saved) >= {'stages', 'protocol', 'device', 'wall_s'}
  assert set(saved['stages']) == {'pretrain', 'linear', 'linear_random'}
  assert saved['stages']['linear']['init'].endswith('encoder')
  assert saved['stages']['linear_random']['init'] == 'random'
  for stage in ('linear', 'linear_random'):
    e = saved['stages'][stage]
    assert 0.0 <= e['top1'] <= e['top5'] <= 100.0
    assert e['n_test'] > 0 and e['n_train'] > 0
    assert os.path.exists(e['confusion_png'])
  p = saved['protocol']
  assert set(p) == {
    'dataset',
    'split',
    'frames',
    'batch_size',
    'epochs',
    'seed',
    'encoder',
    'objective',
  }
  assert np.isfinite(saved['stages']['pretrain']['final_loss'])
  # A 3-step run reports the rate of its two steps after the compiling one, not 0.0.
  assert saved['stages']['pretrain']['steps'] == 3
  assert saved['stages']['pretrain']['samples_per_s'] > 0
  assert ' 0.0 samples/s' not in (workdir / 'results.md').read_text()
  assert (workdir / 'results.md').read_text().count('| linear') == 2
  assert (workdir / 'metrics.jsonl').exists()
  assert any((workdir / 'tensorboard' / 'pretrain').iterdir())
  assert (workdir / 'plots' / 'pretrain_curves.png').exists()


def test_rerun_skips_finished_stages(demo_run, capsys):
  from skeljax import run

  config, workdir, out = demo_run
  again = run.train_and_evaluate(config, str(workdir))
  assert 'already finished' in capsys.readouterr().out
  assert again['stages']['linear']['top1'] == out['stages']['linear']['top1']


@pytest.mark.slow
def test_same_seed_same_numbers(demo_run, tmp_path):
  from skeljax import run

  config, workdir, out = demo_run
  again = run.train_and_evaluate(config, str(tmp_path / 'again'))
  assert again['stages']['pretrain']['final_loss'] == out['stages']['pretrain']['final_loss']
  assert again['stages']['linear']['top1'] == out['stages']['linear']['top1']


def test_resume_with_a_changed_config_is_refused(demo_run, tmp_path):
  from skeljax import run
  from skeljax.checkpoint import CheckpointMismatch

  config, workdir, _ = demo_run
  import shutil

  dst = tmp_path / 'copy'
  shutil.copytree(workdir, dst)
  os.remove(dst / 'results.json')
  changed = _tiny_config(tmp_path, **{'mcc.temperature': 0.5})
  with pytest.raises(CheckpointMismatch, match='temperature'):
    run.train_and_evaluate(changed, str(dst))


def test_non_finite_loss_stops_with_step_and_part(tmp_path):
  from skeljax import loop, run

  config = _tiny_config(
    tmp_path,
    **{
      'pretrain.lr': 1e30,
      'pretrain.optimizer': 'sgd',
      'pretrain.checkpoint_every': 1,
      'pretrain.epochs': 3,
    },
  )
  with pytest.raises(loop.NonFiniteLoss, match=r'non-finite .* at step \d+'):
    run.train_and_evaluate(config, str(tmp_path / 'nan'))


def test_linear_probe_leaves_the_encoder_bit_identical(demo_run, tmp_path):
  """The augmented linear path trains encoder + classifier jointly; the encoder must not move.

  Weight decay and a large learning rate would move any parameter the mask let through.
  """
  import jax

  from skeljax import data, evaluate, supervised
  from skeljax import mesh as mesh_lib

  config, workdir, _ = demo_run
  config = config.copy_and_resolve_references()
  config.linear.augment = True
  config.linear.epochs = 2
  config.linear.optimizer = 'adamw'
  config.linear.weight_decay = 0.5
  config.linear.lr = 1.0
  before = evaluate.encoder_variables(config, str(workdir / 'encoder'))
  before = jax.tree.map(np.asarray, before)
  train = data.load_split(data.prepare(config.data), config.data, 'train')
  enc, _, clf_params, _ = supervised.train_supervised(
    config,
    str(tmp_path),
    mesh_lib.make_mesh(),
    'linear',
    config.linear,
    jax.tree.map(jax.numpy.asarray, before),
    train,
    frozen_encoder=True,
    augmented=True,
  )
  after = jax.tree.map(np.asarray, enc)
  assert jax.tree.structure(after) == jax.tree.structure(before)
  for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True):
    np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(clf_params['fc']['bias'])).max() > 0  # trained: its bias starts at 0


def test_load_encoder_gives_the_knn_stage_features(demo_run):
  """skeljax.load_encoder on the finished run: the frozen stages' features of the same
  sequences (BN recalibrated on clean training clips, as linear.recalibrate_bn does by
  default), hence the knn stage's accuracy, from raw sequences as stored on disk."""
  import skeljax
  from skeljax import data, evaluate, run
  from skeljax import encoder as encoder_lib
  from skeljax import mesh as mesh_lib

  config, workdir, _ = demo_run
  assert config.linear.recalibrate_bn
  enc = skeljax.load_encoder(workdir)
  assert enc.batch_stats == 'recalibrated'
  builder = data.prepare(config.data)
  train, test = (data.load_split(builder, config.data, s) for s in ('train', 'test'))
  ctx = run.Context(config, str(workdir), mesh_lib.make_mesh(), train, test)
  init = evaluate.resolve_init(config, str(workdir))
  frozen = run.frozen_features(ctx, evaluate.encoder_variables(config, init))
  ours = []
  for split, (feats, labels) in zip((train, test), frozen, strict=True):
    records = [split.source[i] for i in range(split.size)]
    x, n = encoder_lib.stack([r['skeleton'] for r in records])
    mine = enc(x, n)
    np.testing.assert_allclose(mine, feats, rtol=1e-4, atol=1e-4)
    assert [int(r['label']) for r in records] == labels.tolist()
    ours.append((mine, labels))
  assert run.knn_top1(config, train.num_classes, *ours) == run.knn_top1(
    config, train.num_classes, *frozen
  )
