"""The study runner: row configs, equal-time epochs, mean ± std table."""

import json
import subprocess
import sys

import pytest

from skeljax import config as config_lib
from skeljax import study

from .conftest import REPO


def _fake_run(path, seed, top1, knn1=None, wall=None, stage='linear', epochs=10):
  path.mkdir(parents=True)
  stages = {
    stage: {
      'top1': top1,
      'top5': 100.0,
      'reversed_pairs_top1': top1 - 5,
      'other_classes_top1': top1,
    }
  }
  if knn1 is not None:
    stages['knn'] = {'k1': {'top1': knn1}, 'top1': knn1}
  if wall is not None:
    stages['pretrain'] = {'stage_wall_s': wall, 'epochs': epochs}
  payload = {'stages': stages, 'protocol': {'seed': seed}, 'device': 'cpu:cpu x1'}
  (path / 'results.json').write_text(json.dumps(payload))


def test_row_configs_switch_exactly_one_thing(tmp_path):
  base = config_lib.base_config()
  mcc = study.row_config(base, 'mcc', 3, str(tmp_path))
  assert mcc.seed == 3 and mcc.objective == 'mcc' and not mcc.random_reference
  assert study.row_config(base, 'contrastive', 3, str(tmp_path)).objective == 'contrastive'
  assert not study.row_config(base, 'no_negative', 3, str(tmp_path)).mcc.broken_negative
  assert not study.row_config(base, 'no_interp', 3, str(tmp_path)).mcc.interpolation
  speed = study.row_config(base, 'speed_only', 3, str(tmp_path))
  assert speed.mcc.speed_positive and not (speed.mcc.broken_negative or speed.mcc.interpolation)
  assert not study.row_config(base, 'no_speed', 3, str(tmp_path)).mcc.speed_positive
  assert study.row_config(base, 'neg_reverse', 3, str(tmp_path)).augment.negative == 'reverse'
  shuffle = study.row_config(base, 'neg_shuffle', 3, str(tmp_path))
  assert shuffle.augment.negative == 'segment_shuffle'
  assert study.row_config(base, 'random', 3, str(tmp_path)).init_from == 'random'
  ft = study.row_config(base, 'mcc_finetune', 3, str(tmp_path))
  assert ft.stages == ('finetune',) and ft.init_from == str(tmp_path / 'mcc' / 'seed3')
  timed = study.row_config(base, 'contrastive_time', 3, str(tmp_path), time_epochs=17)
  assert timed.pretrain.epochs == 17 and timed.objective == 'contrastive'
  assert base.seed == 0 and base.objective == 'mcc'  # the base is not modified
  with pytest.raises(ValueError, match='unknown study row'):
    study.row_config(base, 'nope', 0, str(tmp_path))


def test_equal_time_epochs_scale_by_the_fastest_measured_walls():
  run = lambda wall: {'stages': {'pretrain': {'stage_wall_s': wall}}}
  assert study.equal_time_epochs([run(300.0)], [run(150.0)], 20) == 40
  # a run slowed by load beside it does not move the ratio: the fastest run of each row
  assert study.equal_time_epochs([run(900.0), run(300.0)], [run(150.0), run(400.0)], 20) == 40
  assert study.equal_time_epochs([run(150.0)], [run(300.0)], 20) == 20  # never fewer epochs
  # epochs 0 (derived from the data): the baseline's recorded epochs
  derived = {'stages': {'pretrain': {'stage_wall_s': 150.0, 'epochs': 200}}}
  assert study.equal_time_epochs([run(300.0)], [derived], 0) == 400


def test_summary_means_and_sample_std(tmp_path):
  for seed, top1 in ((0, 60.0), (1, 70.0), (2, 80.0)):
    _fake_run(tmp_path / 'mcc' / f'seed{seed}', seed, top1, knn1=top1 - 10, wall=100.0 + seed)
  _fake_run(tmp_path / 'scratch' / 'seed0', 0, 90.0, stage='scratch')
  records = study.summarize(str(tmp_path), ('mcc', 'scratch', 'random'), [0, 1, 2])
  assert [r['row'] for r in records] == ['mcc', 'scratch']  # rows without runs are left out
  mcc, scratch = records
  assert mcc['top1'] == {'mean': 70.0, 'std': 10.0, 'n': 3}
  assert mcc['knn1']['mean'] == 60.0 and mcc['pretrain_wall_s']['mean'] == 101.0
  assert scratch['protocol'] == 'scratch' and scratch['top1'] == {'mean': 90.0, 'std': 0.0, 'n': 1}
  table = study.markdown(records, config_lib.base_config())
  assert (
    '| mcc | linear | 70.0 ± 10.0 | 60.0 ± 10.0 | 65.0 ± 10.0 | 70.0 ± 10.0 | 10 | 101 ± 1 '
    '| 0,1,2 |' in table
  )


def _study_cli(*args):
  cmd = [sys.executable, '-m', 'skeljax.study', '--config=configs/demo.py:tiny', *args]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_unknown_row_is_one_line_error(tmp_path):
  r = _study_cli(f'--workdir={tmp_path}', '--rows=mcc,bogus')
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1].startswith('skeljax: error: unknown rows')


def test_a_row_that_trains_what_mcc_or_the_baseline_trains_reuses_its_runs(tmp_path):
  base = config_lib.base_config()
  base.augment.negative = 'reverse'
  # Interpolation and the speed positive are off by default (issue #29): no_interp and
  # no_speed are the mcc row; without the broken clip MCC is the baseline.
  same = {'no_interp': 'mcc', 'no_speed': 'mcc', 'no_negative': 'contrastive'}
  assert study.row_aliases(base, study.ROWS) == {'neg_reverse': 'mcc', **same}
  base.augment.negative = 'segment_shuffle'
  assert study.row_aliases(base, study.ROWS) == {'neg_shuffle': 'mcc', **same}
  # With the speed positive on (the default before #29), speed_positive is the mcc row,
  # its semi row is mcc_semi, and no_negative (speed_only's parts) is not the baseline.
  base.mcc.speed_positive = True
  assert study.row_aliases(base, study.ROWS) == {
    'neg_shuffle': 'mcc',
    'no_interp': 'mcc',
    'speed_positive': 'mcc',
    'speed_positive_semi': 'mcc_semi',
  }
  _fake_run(tmp_path / 'mcc' / 'seed0', 0, 70.0, knn1=60.0, wall=100.0)
  _fake_run(tmp_path / 'mcc' / 'seed1', 1, 72.0, knn1=62.0, wall=110.0)
  recs = study.summarize(str(tmp_path), ('mcc', 'neg_shuffle'), (0, 1), {'neg_shuffle': 'mcc'})
  assert [r['row'] for r in recs] == ['mcc', 'neg_shuffle (= mcc)']
  assert recs[0]['top1'] == recs[1]['top1'] and recs[1]['top1']['n'] == 2


def _fake_log(path, records):
  with open(path / 'metrics.jsonl', 'w') as f:
    for r in records:
      f.write(json.dumps(r) + '\n')


def test_curves_average_seeds_at_common_steps_and_table_the_last_interval(tmp_path):
  for seed in (0, 1):
    d = tmp_path / 'mcc' / f'seed{seed}'
    _fake_run(d, seed, 70.0, knn1=60.0, wall=100.0)
    recs = [
      {'stage': 'pretrain', 'step': 10, 'nce': 5.0 + seed, 'acc': 0.1, 'neg_win': 0.4},
      # the kNN monitor logs only some steps
      {
        'stage': 'pretrain',
        'step': 20,
        'nce': 4.0 + seed,
        'acc': 0.2 + seed / 10,
        'neg_win': 0.2,
        'knn1': 60.0 + seed,
      },
      {'stage': 'linear', 'step': 20, 'nce': 99.0},  # another stage: ignored
    ]
    if seed == 1:
      recs.append(
        {'stage': 'pretrain', 'step': 30, 'nce': 1.0, 'acc': 0.9, 'neg_win': 0.0, 'knn1': 70.0}
      )
    _fake_log(d, recs)
  unfinished = tmp_path / 'mcc' / 'seed2'  # still pretraining: a log, no results.json
  unfinished.mkdir()
  _fake_log(unfinished, [{'stage': 'pretrain', 'step': 10, 'nce': 50.0, 'acc': 0.0}])
  _fake_run(tmp_path / 'random' / 'seed0', 0, 50.0)
  records = study.summarize(str(tmp_path), ('mcc', 'random'), [0, 1, 2])
  mcc, random = records
  assert mcc['pretrain_curves']['nce'] == [(10, 5.5), (20, 4.5)]  # step 30: only seed 1
  assert 'broken' not in mcc['pretrain_curves'] and random['pretrain_curves'] == {}
  assert mcc['pretrain_curves']['knn1'] == [(20, 60.5)]
  # the last interval of each seed: seed 0 at step 20, seed 1 at step 30
  assert mcc['pretrain_last']['acc']['mean'] == pytest.approx(0.55)
  assert mcc['pretrain_last']['nce']['mean'] == pytest.approx(2.5)
  table = study.markdown(records, config_lib.base_config())
  assert '| mcc | 2.500 ± 2.121 | 0.550 ± 0.495 | 65.000 ± 7.071 | - | 0.100 ± 0.141 | - |' in table
  assert '| random |' in table.split('last logging interval')[0]  # only in the main table
  assert '| random |' not in table.split('last logging interval')[1]


def test_default_rows_leave_out_speed_only_and_the_streams_but_accept_them():
  assert 'speed_only' not in study.DEFAULT_ROWS and 'speed_only' in study.ROWS
  extra = {'speed_only', *study.STREAM_ROWS, *study.ENSEMBLE_ROWS, *study.FORM_ROWS}
  assert set(study.SEMI_ROWS) <= set(study.DEFAULT_ROWS)
  assert set(study.DEFAULT_ROWS) | extra == set(study.ROWS)
  assert not extra & set(study.DEFAULT_ROWS)


def test_stream_and_ensemble_rows(tmp_path):
  base = config_lib.base_config()
  motion = study.row_config(base, 'contrastive_motion', 2, str(tmp_path))
  assert motion.objective == 'contrastive' and motion.data.stream == 'motion'
  assert study.row_config(base, 'mcc_bone', 2, str(tmp_path)).data.stream == 'bone'
  two = study.row_config(base, 'contrastive_2s', 2, str(tmp_path))
  assert two.stages == ('ensemble',)
  assert two.ensemble.runs == tuple(
    str(tmp_path / r / 'seed2') for r in ('contrastive', 'contrastive_motion')
  )
  three = study.row_config(base, 'mcc_3s', 2, str(tmp_path))
  assert [p.split('/')[-2] for p in three.ensemble.runs] == ['mcc', 'mcc_motion', 'mcc_bone']
  # The table reads an ensemble row's fused top-1.
  _fake_run(tmp_path / 'contrastive_2s' / 'seed0', 0, 88.0, stage='ensemble')
  (rec,) = study.summarize(str(tmp_path), ['contrastive_2s'], [0])
  assert rec['protocol'] == 'ensemble' and rec['top1']['mean'] == 88.0


def test_form_rows_change_their_part_and_validate(tmp_path):
  base = config_lib.base_config()
  ref = study.row_config(base, 'mcc', 0, str(tmp_path)).to_dict()
  for row in study.FORM_ROWS:
    c = study.row_config(base, row, 0, str(tmp_path))
    config_lib.validate(c)
    assert c.to_dict() != ref, row  # each form row differs from the mcc row
  assert study.row_config(base, 'speed_fit', 0, '').augment.speed_fit == 'fit'


def test_old_form_rows_put_back_one_old_part_each(tmp_path):
  base = config_lib.base_config()
  mcc = study.row_config(base, 'mcc', 0, str(tmp_path))
  assert (mcc.augment.speed_fit, mcc.augment.negative_source, mcc.mcc.negative_loss) == (
    'cap',
    'anchor_twin',
    'dsm',
  )
  assert not (mcc.mcc.interpolation or mcc.mcc.speed_positive)
  old = {
    'speed_positive': {('mcc', 'speed_positive'): True},
    'speed_clip': {('augment', 'speed_fit'): 'clip', ('mcc', 'speed_positive'): True},
    'neg_rank': {('augment', 'negative_source'): 'positive', ('mcc', 'negative_loss'): 'rank'},
    'interp_stride': {('mcc', 'interpolation'): True},
    'interp_span': {
      ('mcc', 'interpolation'): True,
      ('augment', 'interp_drop'): 'span',
      ('mcc', 'decoder_tap'): 'full',
      ('mcc', 'interp_target'): 'motion',
    },
  }
  ref = mcc.to_dict()
  for row, changed in old.items():
    assert row in study.DEFAULT_ROWS, row
    c = study.row_config(base, row, 0, str(tmp_path))
    config_lib.validate(c)
    got = c.to_dict()
    diff = {
      (sec, k): got[sec][k]
      for sec in ('augment', 'mcc')
      for k in got[sec]
      if got[sec][k] != ref[sec][k]
    }
    assert diff == changed, row


def test_semi_rows_share_the_subsets_and_table_each_fraction(tmp_path):
  base = config_lib.base_config()
  mcc = study.row_config(base, 'mcc_semi', 1, str(tmp_path))
  assert mcc.stages == ('semi',) and mcc.init_from == str(tmp_path / 'mcc' / 'seed1')
  con = study.row_config(base, 'contrastive_semi', 1, str(tmp_path))
  assert con.init_from == str(tmp_path / 'contrastive' / 'seed1')
  speed = study.row_config(base, 'speed_positive_semi', 1, str(tmp_path))
  assert speed.init_from == str(tmp_path / 'speed_positive' / 'seed1')
  assert study.row_config(base, 'scratch_semi', 1, str(tmp_path)).init_from == 'random'
  for row, (one, ten) in (('mcc_semi', (30.0, 70.0)), ('scratch_semi', (20.0, 60.0))):
    for seed in (0, 1):
      d = tmp_path / row / f'seed{seed}'
      _fake_run(d, seed, ten + seed, stage='semi')
      res = json.loads((d / 'results.json').read_text())
      res['stages']['semi']['fractions'] = {
        '0.01': {'top1': one + seed},
        '0.1': {
          'top1': ten + seed,
          'reversed_pairs_top1': ten + 10 + seed,
          'other_classes_top1': ten - 10 + seed,
        },
      }
      (d / 'results.json').write_text(json.dumps(res))
  records = study.summarize(str(tmp_path), ('mcc_semi', 'scratch_semi'), [0, 1])
  assert records[0]['protocol'] == 'semi' and records[0]['top1']['mean'] == 70.5
  assert records[1]['semi_top1']['0.01']['mean'] == 20.5
  table = study.markdown(records, base)
  assert '| row | 1% labels | 1%: pairs / other | 10% labels | 10%: pairs / other |' in table
  # The time-reversed pairs apart, per fraction; a fraction without them leaves the cell empty.
  assert '| mcc_semi | 30.5 ± 0.7 |  | 70.5 ± 0.7 | 80.5 ± 0.7 / 60.5 ± 0.7 |' in table
  assert '| scratch_semi | 20.5 ± 0.7 |  | 60.5 ± 0.7 | 70.5 ± 0.7 / 50.5 ± 0.7 |' in table


def test_report_only_tables_the_finished_runs_and_trains_nothing(tmp_path, monkeypatch, capsys):
  from skeljax import run

  monkeypatch.setattr(run, 'train_and_evaluate', lambda *a: pytest.fail('report_only trained'))
  _fake_run(tmp_path / 'mcc' / 'seed0', 0, 70.0, knn1=60.0, wall=100.0)
  _fake_run(tmp_path / 'mcc' / 'seed1', 1, 72.0, knn1=62.0, wall=110.0)
  _fake_run(tmp_path / 'contrastive' / 'seed0', 0, 68.0, knn1=61.0, wall=90.0)
  base = config_lib.base_config()
  recs = study.run_study(base, str(tmp_path), [0, 1], ('mcc', 'contrastive'), report_only=True)
  assert [(r['row'], r['top1']['n']) for r in recs] == [('mcc', 2), ('contrastive', 1)]
  assert recs[0]['top1']['mean'] == pytest.approx(71.0)
  assert '| mcc | linear | 71.0 ± 1.4 |' in (tmp_path / 'study.md').read_text()
  out = capsys.readouterr().out
  assert 'contrastive, seed 1: no finished run' in out and 'mcc, seed' not in out
  # A results.json cut short is one config error naming the file, not a traceback.
  (tmp_path / 'contrastive' / 'seed0' / 'results.json').write_text('{"stages": {')
  with pytest.raises(config_lib.ConfigError, match=r'contrastive/seed0/results.json'):
    study.run_study(base, str(tmp_path), [0], ('contrastive',), report_only=True)


def test_report_only_without_a_study_folder_is_one_line_error(tmp_path):
  r = _study_cli(f'--workdir={tmp_path / "absent"}', '--report_only')
  assert r.returncode == 2
  assert r.stderr.strip().splitlines() == [
    f'skeljax: error: --report_only: no study folder {tmp_path / "absent"}'
  ]
