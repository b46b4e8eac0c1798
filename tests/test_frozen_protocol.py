"""The frozen-feature stages' protocol: which encoders get BN recalibration, what is recorded.

run.stage_linear / stage_knn with the encoder, the BN pass and the feature extraction
replaced by spies, so the test checks run.py's wiring alone (frozen.recalibrate_bn has
its own test in test_evaluate_metrics.py) and compiles no encoder.
"""

import numpy as np
import pytest

from skeljax import data, evaluate, frozen, mesh, run

PRETRAINED = '/fake/workdir/encoder'


def _split(n=12, classes=3):
  records = [{'label': i % classes} for i in range(n)]
  return data.Split(records, n, classes, ('a', 'b', 'c'), preprocess=None)


@pytest.fixture
def spies(monkeypatch):
  """Fake encoders per init; records every BN pass and every extraction."""
  calls = {'recalibrate': [], 'extract': []}

  def encoder_variables(config, init):
    return {'params': {'init': init}, 'batch_stats': {'mean': 0.0}}

  def recalibrate_bn(config, mesh_, variables, split, fn=None):
    calls['recalibrate'].append(variables['params']['init'])
    return {**variables, 'batch_stats': {'mean': 1.0}}

  def extract(config, mesh_, variables, split, indices=None, fn=None, what='features'):
    calls['extract'].append((variables['params']['init'], variables['batch_stats']['mean']))
    labels = split.labels()
    rng = np.random.default_rng(len(calls['extract']))
    feats = np.eye(8, dtype=np.float32)[labels] + 0.1 * rng.standard_normal((len(labels), 8))
    return feats.astype(np.float32), labels

  monkeypatch.setattr(evaluate, 'resolve_init', lambda config, workdir: PRETRAINED)
  monkeypatch.setattr(evaluate, 'encoder_variables', encoder_variables)
  monkeypatch.setattr(frozen, 'recalibrate_bn', recalibrate_bn)
  monkeypatch.setattr(frozen, 'extract', extract)
  monkeypatch.setattr(run.plots, 'confusion_matrix', lambda *a, **k: 'cm.png')
  monkeypatch.setattr(run.plots, 'feature_map', lambda *a, **k: 'map.png')
  return calls


def _context(tmp_path, recalibrate: bool):
  from configs import demo

  config = demo.get_config('tiny')
  config.random_reference = True
  config.linear.recalibrate_bn = recalibrate
  return run.Context(
    config=config, workdir=str(tmp_path), mesh=mesh.make_mesh(), train=_split(), test=_split()
  )


def test_recalibration_is_on_by_default_and_documented_as_such():
  from skeljax import config as config_lib

  assert config_lib.base_config().linear.recalibrate_bn is True
  assert config_lib.base_config().knn.centre is True


@pytest.mark.parametrize('recalibrate', [True, False])
def test_pretrained_and_random_reference_get_the_same_bn_treatment(tmp_path, spies, recalibrate):
  ctx = _context(tmp_path, recalibrate)
  out = run.stage_linear(ctx)
  out.update(run.stage_knn(ctx))
  # One BN pass per encoder, the random-init reference included, or none at all.
  assert spies['recalibrate'] == ([PRETRAINED, 'random'] if recalibrate else [])
  # Train and test features of each encoder, read once: the kNN reuses the linear probe's
  # features of the pretrained encoder, so both stages see the same BN statistics.
  stats = 1.0 if recalibrate else 0.0
  assert spies['extract'] == [(PRETRAINED, stats)] * 2 + [('random', stats)] * 2
  for name in ('linear', 'linear_random'):
    assert out[name]['recalibrate_bn'] is recalibrate
    assert out[name]['standardize'] is True
    assert out[name]['dead_dims'] == 0
  assert out['linear_random']['init'] == 'random'
  knn = out['knn']
  assert (knn['recalibrate_bn'], knn['centre'], knn['standardize']) == (recalibrate, True, False)


def test_knn_entry_is_stale_when_the_bn_treatment_changes():
  from configs import demo

  config = demo.get_config('tiny')
  before = run.stage_protocol(config, 'knn')
  config.linear.recalibrate_bn = not config.linear.recalibrate_bn
  assert run.stage_protocol(config, 'knn') != before
