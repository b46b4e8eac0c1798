"""The online kNN monitor: logged on schedule, and at the end equal to the knn stage."""

import json

import pytest

from .test_train import _tiny_config


def _counting_recalibrations(config, workdir: str):
  """(train_and_evaluate's output, how many BN recalibrations it ran)."""
  from skeljax import frozen, run

  calls = []
  recalibrate = frozen.recalibrate_bn

  def counted(*args, **kwargs):
    calls.append(1)
    return recalibrate(*args, **kwargs)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(frozen, 'recalibrate_bn', counted)
    out = run.train_and_evaluate(config, workdir)
  return out, len(calls)


@pytest.fixture(scope='module')
def monitored_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('monitor')
  config = _tiny_config(
    tmp,
    **{
      'pretrain.epochs': 2,
      'pretrain.monitor_every': 1,
      'pretrain.log_every': 100,
      'stages': ('pretrain', 'knn'),
    },
  )
  out, calls = _counting_recalibrations(config, str(tmp / 'run'))
  return config, tmp / 'run', out, calls


def test_monitor_logs_every_epoch_and_its_last_value_is_the_knn_stage(monitored_run):
  config, workdir, out, _ = monitored_run
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  pre = [r for r in records if r['stage'] == 'pretrain']
  steps_per_epoch = 56 // config.pretrain.batch_size  # the tiny demo's 56 training clips
  watched = [r['step'] for r in pre if 'knn1' in r]
  # At initialisation, then each epoch, log_every aside.
  assert watched == [0, steps_per_epoch, 2 * steps_per_epoch]
  # The step-0 record is the encoder before any step: the monitor's values alone.
  assert pre[0]['step'] == 0 and not {'loss', 'nce', 'acc'} & set(pre[0])
  assert [r['step'] for r in pre] == sorted(r['step'] for r in pre)
  last = pre[-1]
  knn = out['stages']['knn']
  for k in config.knn.k:
    assert last[f'knn{k}'] == knn[f'k{k}']['top1']  # the same encoder, protocol and bank
  entry = out['stages']['pretrain']
  assert entry['monitor'] == {f'knn{k}': last[f'knn{k}'] for k in config.knn.k}
  assert entry['monitor_split'] == 'test (monitor only)'
  assert entry['monitor_s'] > 0
  assert (workdir / 'plots' / 'pretrain_curves.png').exists()


@pytest.mark.slow
def test_monitor_off_logs_no_knn(tmp_path):
  from skeljax import run

  config = _tiny_config(tmp_path, **{'pretrain.monitor_every': 0, 'stages': ('pretrain',)})
  out = run.train_and_evaluate(config, str(tmp_path / 'off'))
  assert 'monitor' not in out['stages']['pretrain']
  text = (tmp_path / 'off' / 'metrics.jsonl').read_text()
  assert 'knn1' not in text


def test_the_knn_stage_reuses_the_last_monitor_call_and_a_fresh_run_agrees(monitored_run, tmp_path):
  from skeljax import run

  config, workdir, out, recalibrations = monitored_run
  # One BN recalibration per monitor call (at initialisation and after each of 2 epochs):
  # the export and the knn stage reuse the last one instead of recalibrating again.
  assert recalibrations == 3
  # A fresh run from the exported encoder recomputes everything: the same numbers.
  fresh = config.copy_and_resolve_references()
  fresh.init_from = str(workdir)
  fresh.stages = ('knn',)
  again = run.train_and_evaluate(fresh, str(tmp_path / 'fresh'))['stages']['knn']
  for k in config.knn.k:
    assert again[f'k{k}']['top1'] == out['stages']['knn'][f'k{k}']['top1']


def test_monitor_off_recalibrates_once_for_the_export_and_the_knn_stage(tmp_path):
  from skeljax import run

  config = _tiny_config(tmp_path, **{'pretrain.monitor_every': 0, 'stages': ('pretrain', 'knn')})
  out, calls = _counting_recalibrations(config, str(tmp_path / 'off'))
  assert config.linear.recalibrate_bn and calls == 1  # the export's, reused by knn
  # The same features as a fresh run from the exported encoder, which recalibrates itself.
  fresh = config.copy_and_resolve_references()
  fresh.init_from = str(tmp_path / 'off')
  fresh.stages = ('knn',)
  again = run.train_and_evaluate(fresh, str(tmp_path / 'fresh'))['stages']['knn']
  for k in config.knn.k:
    assert again[f'k{k}']['top1'] == out['stages']['knn'][f'k{k}']['top1']
