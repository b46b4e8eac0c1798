"""A run killed at any moment resumes and reproduces the uninterrupted metrics."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO

ARGS = [
  '--config=configs/demo.py:tiny',
  '--config.stages=("pretrain",)',
  '--config.pretrain.epochs=10',
  '--config.pretrain.checkpoint_every=5',
  '--config.pretrain.log_every=1',
]


def _cmd(workdir, data_dir):
  return [
    sys.executable,
    '-m',
    'skeljax.main',
    *ARGS,
    f'--workdir={workdir}',
    f'--config.data.data_dir={data_dir}',
  ]


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    recs = [json.loads(line) for line in f]
  # Training records (the kNN monitor's step-0 record has no loss).
  return [
    (r['step'], r['loss'], r['nce']) for r in recs if r['stage'] == 'pretrain' and 'loss' in r
  ]


def _checkpoint_steps(workdir):
  d = os.path.join(workdir, 'checkpoints', 'pretrain')
  if not os.path.isdir(d):
    return []
  return sorted(int(n) for n in os.listdir(d) if n.isdigit())


@pytest.mark.slow
def test_kill_and_resume_reproduces_uninterrupted_metrics(tmp_path):
  data_dir = tmp_path / 'data'
  full = tmp_path / 'full'
  r = subprocess.run(_cmd(full, data_dir), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  want = _losses(full)
  assert len(want) > 20

  killed = tmp_path / 'killed'
  ck = killed / 'checkpoints' / 'pretrain'

  def saving_or_saved():  # any entry: Orbax's temporary folder of a save in flight, or a step
    return ck.is_dir() and any(True for _ in ck.iterdir())

  def newer_than(step):
    return lambda: max(_checkpoint_steps(killed), default=0) > step

  # Kill once while the first save is (likely) in flight, then again after the
  # resumed run has saved past the point it resumed from.
  for ready in (saving_or_saved, None):
    ready = ready or newer_than(max(_checkpoint_steps(killed), default=0))
    p = subprocess.Popen(
      _cmd(killed, data_dir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not ready():
      time.sleep(0.02)
    assert p.poll() is None, 'the run ended before it could be killed'
    p.send_signal(signal.SIGKILL)
    p.wait()
  assert _checkpoint_steps(killed)
  r = subprocess.run(_cmd(killed, data_dir), cwd=REPO, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'resumed from step' in r.stdout
  got = _losses(killed)
  assert [s for s, *_ in got] == [s for s, *_ in want]
  for (s, loss_a, nce_a), (_, loss_b, nce_b) in zip(got, want, strict=True):
    assert loss_a == pytest.approx(loss_b, abs=1e-6), s
    assert nce_a == pytest.approx(nce_b, abs=1e-6), s


def test_resumed_stage_reports_the_wall_time_of_every_segment(tmp_path):
  from skeljax.logger import MetricsLog, read_metrics

  first = MetricsLog(str(tmp_path), 'pretrain', total_steps=8, batch_size=2)
  first.start(0)
  first.prior_s = 100.0  # as if the first segment had already run 100 s
  first.write(4, {'loss': 1.0})
  first.write(6, {'loss': 0.9})  # past the checkpoint at 4: dropped on resume
  first.close()
  resumed = MetricsLog(str(tmp_path), 'pretrain', total_steps=8, batch_size=2)
  resumed.start(4)
  recs = read_metrics(str(tmp_path), 'pretrain')
  assert [r['step'] for r in recs] == [4]
  # The kept record's time carries over; the dropped one's does not.
  assert resumed.prior_s == recs[0]['elapsed_s'] and 100.0 <= resumed.prior_s < 110.0
  resumed.write(8, {'loss': 0.8})
  resumed.close()
  last = read_metrics(str(tmp_path), 'pretrain')[-1]
  assert last['step'] == 8 and last['elapsed_s'] >= resumed.prior_s
  # A fresh start counts from zero whatever the file holds, and keeps none of the stage's
  # records: a run killed before its first checkpoint restarts with one step-0 record.
  fresh = MetricsLog(str(tmp_path), 'pretrain', total_steps=8, batch_size=2)
  fresh.start(0)
  assert fresh.prior_s == 0.0
  assert read_metrics(str(tmp_path), 'pretrain') == []
  fresh.write(0, {'knn1': 10.0})
  fresh.close()
  again = MetricsLog(str(tmp_path), 'pretrain', total_steps=8, batch_size=2)
  again.start(0)
  assert again._tb.purge_step == 0  # TensorBoard hides the first try's events as well
  again.write(0, {'knn1': 10.0})
  again.close()
  assert [r['step'] for r in read_metrics(str(tmp_path), 'pretrain')] == [0]


def test_a_checkpoint_from_before_a_field_was_added_resumes_at_that_fields_old_value(tmp_path):
  """Upgrading skeljax mid-run: a field added since (at the value older runs had) is no
  change of run; a non-default value is."""
  import numpy as np

  from skeljax import checkpoint as ckpt_lib
  from skeljax import config as config_lib

  sections = ['data', 'augment', 'mcc']
  c = config_lib.base_config()
  old = ckpt_lib.fingerprint(c, sections)
  # As a run written before these fields existed saved it.
  added = (
    ('data', 'stream'),
    ('mcc', 'batch_negatives'),
    ('mcc', 'queue_negatives'),
    ('augment', 'span_frames'),
    ('augment', 'span_count'),
    ('augment', 'span_joint_prob'),
    ('mcc', 'decoder_tap'),
    ('mcc', 'interp_target'),
    ('augment', 'independent_speeds'),
    ('augment', 'resample_noise_std'),
    ('mcc', 'speed_form'),
    ('mcc', 'speed_head'),
    ('mcc', 'speed_weight'),
    ('mcc', 'speed_margin'),
    ('mcc', 'speed_classes'),
    ('mcc', 'negative_start'),
  )
  for section, key in added:
    old[section].pop(key, None)
  state = {'w': np.arange(3.0)}
  saved = ckpt_lib.StageCheckpoints(str(tmp_path), keep=1, fingerprint_=old)
  saved.save(5, state, force=True)
  saved.close()

  now = ckpt_lib.StageCheckpoints(
    str(tmp_path), keep=1, fingerprint_=ckpt_lib.fingerprint(c, sections)
  )
  restored, step = now.restore(state)
  assert step == 5 and np.array_equal(restored['w'], state['w'])
  now.close()
  changes = (
    ('mcc', 'batch_negatives', True),
    ('mcc', 'queue_negatives', False),
    ('augment', 'span_frames', (3, 8)),
    ('augment', 'span_count', 3),
    ('augment', 'span_joint_prob', 0.5),
    ('mcc', 'decoder_tap', 'full'),
    ('mcc', 'interp_target', 'motion'),
    ('augment', 'resample_noise_std', 0.01),
    ('mcc', 'speed_form', 'both'),
    ('mcc', 'speed_head', 'classify'),
    ('mcc', 'negative_start', 0.5),
  )
  for section, field, value in changes:
    changed = config_lib.base_config()
    changed[section][field] = value
    other = ckpt_lib.StageCheckpoints(
      str(tmp_path), keep=1, fingerprint_=ckpt_lib.fingerprint(changed, sections)
    )
    with pytest.raises(ckpt_lib.CheckpointMismatch, match=f'{section}.{field}'):
      other.restore(state)
    other.close()


def test_the_new_speed_window_is_a_new_run_for_mcc_and_no_change_for_the_baseline(tmp_path):
  # speed_fit's default moved from the old window ('clip') to 'cap': an MCC checkpoint from
  # before the field resumes only under 'clip'; the baseline has no speed clip, so its old
  # checkpoints resume under either value.
  import numpy as np

  from skeljax import checkpoint as ckpt_lib
  from skeljax import config as config_lib

  state = {'w': np.arange(3.0)}
  for objective in ('mcc', 'contrastive'):
    c = config_lib.base_config()
    c.objective = objective
    c.augment.speed_fit = 'clip'
    old = ckpt_lib.fingerprint(c, ['augment'])
    old['augment'].pop('speed_fit', None)
    folder = tmp_path / objective
    saved = ckpt_lib.StageCheckpoints(str(folder), keep=1, fingerprint_=old)
    saved.save(5, state, force=True)
    saved.close()
    for fit in ('clip', 'cap', 'fit'):
      c.augment.speed_fit = fit
      now = ckpt_lib.StageCheckpoints(
        str(folder), keep=1, fingerprint_=ckpt_lib.fingerprint(c, ['augment'])
      )
      if objective == 'mcc' and fit != 'clip':
        with pytest.raises(ckpt_lib.CheckpointMismatch, match='augment.speed_fit'):
          now.restore(state)
      else:
        assert now.restore(state)[1] == 5, (objective, fit)
      now.close()


def test_baseline_runs_match_under_either_speed_positive_default(tmp_path):
  # Issue #29 turned mcc.speed_positive off by default. The baseline never reads it: a
  # contrastive run saved with it on resumes, and its finished stages match, with it off;
  # an MCC run does not (the speed clip is its positive).
  import numpy as np

  from skeljax import checkpoint as ckpt_lib
  from skeljax import config as config_lib
  from skeljax import run

  state = {'w': np.arange(3.0)}
  for objective in ('mcc', 'contrastive'):
    c = config_lib.base_config()
    c.objective = objective
    c.mcc.speed_positive = True
    old = ckpt_lib.fingerprint(c, ['mcc'])
    assert old['mcc']['speed_positive'] is True
    saved = ckpt_lib.StageCheckpoints(str(tmp_path / objective), keep=1, fingerprint_=old)
    saved.save(5, state, force=True)
    saved.close()
    proto = run.stage_protocol(c, 'pretrain')
    c.mcc.speed_positive = False
    now = ckpt_lib.StageCheckpoints(
      str(tmp_path / objective), keep=1, fingerprint_=ckpt_lib.fingerprint(c, ['mcc'])
    )
    if objective == 'mcc':
      with pytest.raises(ckpt_lib.CheckpointMismatch, match='mcc.speed_positive'):
        now.restore(state)
      assert run.stage_protocol(c, 'pretrain') != proto
    else:
      assert now.restore(state)[1] == 5
      assert run.stage_protocol(c, 'pretrain') == proto
    now.close()
