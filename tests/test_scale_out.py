"""One code path on 1, 4 and 8 devices and on 2 processes: same numbers, portable checkpoints."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from .conftest import REPO

BASE = [
  '--config=configs/demo.py:tiny',
  '--config.stages=("pretrain","linear")',
  '--config.pretrain.epochs=2',
  '--config.pretrain.checkpoint_every=4',
  '--config.pretrain.log_every=1',
  '--config.random_reference=False',
]


def _env(devices):
  e = dict(os.environ)
  e['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  e['JAX_PLATFORMS'] = 'cpu'
  return e


def _main(workdir, data_dir, devices, *extra, timeout=600):
  cmd = [
    sys.executable,
    '-m',
    'skeljax.main',
    *BASE,
    f'--workdir={workdir}',
    f'--config.data.data_dir={data_dir}',
    *extra,
  ]
  r = subprocess.run(
    cmd, cwd=REPO, env=_env(devices), capture_output=True, text=True, timeout=timeout
  )
  assert r.returncode == 0, r.stderr[-3000:]
  return r


def _curve(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [
      (r['step'], r['loss']) for r in map(json.loads, f) if r['stage'] == 'pretrain' and 'loss' in r
    ]


def _final_queue(workdir):
  """The MoCo queue of the last pretraining checkpoint, read as NumPy on any device count."""
  import jax
  import numpy as np
  import orbax.checkpoint as ocp

  ck = os.path.join(workdir, 'checkpoints', 'pretrain')
  path = os.path.join(ck, str(max(int(n) for n in os.listdir(ck) if n.isdigit())), 'state')
  reader = ocp.PyTreeCheckpointer()
  meta = reader.metadata(path)
  tree = getattr(getattr(meta, 'item_metadata', meta), 'tree', meta)
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  state = reader.restore(path, restore_args=args)
  return state['queue'], int(state['queue_ptr'])


def _same_queue(a, b):
  import numpy as np

  (qa, pa), (qb, pb) = _final_queue(a), _final_queue(b)
  assert pa == pb
  # The keys inherit the curve's amplified rounding: with the EMA rate derived from this
  # 6-step run (m = 0.9) the key encoder follows the query closely (1 vs 8 devices
  # measured max 2.9e-3 on unit-norm keys; 2e-5 when m was 0.999). A wrong shard, batch
  # or key moves them by O(1).
  np.testing.assert_allclose(qa, qb, atol=1e-2)


# Sharded and unsharded float32 reductions sum in different orders: one step from the
# same state differs by ~1e-7 in the loss, and early MCC training amplifies that about
# tenfold per step. Measured 1 vs 8 devices on steps 2-6: 2e-7, 3e-5, 5e-5, 1.4e-4, 1.2e-3
# (one build) and 1e-6, 4e-5, 1.4e-4, 5.2e-4, 1.3e-3 (another). Steps up to EXACT_STEPS are
# held to the 1e-4 of the issue; later ones only to 1e-2, which still catches any real
# difference (a wrong shard, batch or key changes the loss at step 1).
EXACT_STEPS = 3


def _close(a, b):
  assert [s for s, _ in a] == [s for s, _ in b]
  for (s, x), (_, y) in zip(a, b, strict=True):
    tol = 1e-4 if s <= EXACT_STEPS else 1e-2
    assert abs(x - y) <= tol * max(1.0, abs(y)), (s, x, y)


def _rewind(workdir, keep_step):
  """Deletes checkpoints after `keep_step` and the results, as if killed there."""
  ck = os.path.join(workdir, 'checkpoints', 'pretrain')
  for name in os.listdir(ck):
    if name.isdigit() and int(name) > keep_step:
      shutil.rmtree(os.path.join(ck, name))
  for name in ('results.json', 'results.md'):
    if os.path.exists(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name))
  shutil.rmtree(os.path.join(workdir, 'encoder'), ignore_errors=True)


@pytest.mark.slow
def test_one_and_eight_devices_agree_and_checkpoints_move_between_them(tmp_path):
  data_dir = tmp_path / 'data'
  one, eight = tmp_path / 'one', tmp_path / 'eight'
  _main(one, data_dir, 1)
  _main(eight, data_dir, 8)
  _close(_curve(eight), _curve(one))
  _same_queue(eight, one)
  r1 = json.loads((one / 'results.json').read_text())['stages']['linear']['top1']
  r8 = json.loads((eight / 'results.json').read_text())['stages']['linear']['top1']
  assert abs(r1 - r8) <= 100.0 / 28 + 1e-4  # at most one test clip may flip (float32 %)
  # Saved on 8 devices, resumed on 1 and on 4: the curve continues unchanged.
  for devices in (1, 4):
    resumed = tmp_path / f'resumed_on_{devices}'
    shutil.copytree(eight, resumed)
    _rewind(resumed, 4)
    r = _main(resumed, data_dir, devices)
    assert 'resumed from step 4' in r.stdout
    _close(_curve(resumed), _curve(eight))


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch_two(workdir, data_dir, *extra, heartbeat):
  """Processes 0 and 1 of one run on a loopback coordinator, two CPU devices each."""
  port = _free_port()
  return [
    subprocess.Popen(
      [
        sys.executable,
        '-m',
        'skeljax.main',
        *BASE,
        *extra,
        f'--workdir={workdir}',
        f'--config.data.data_dir={data_dir}',
        f'--coordinator=127.0.0.1:{port}',
        '--num_processes=2',
        f'--process_id={i}',
        f'--heartbeat_timeout={heartbeat}',
      ],
      cwd=REPO,
      env=_env(2),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]


@pytest.mark.slow
def test_two_processes_match_one_process_with_four_devices(tmp_path):
  data_dir = tmp_path / 'data'
  single, multi = tmp_path / 'single', tmp_path / 'multi'
  _main(single, data_dir, 4)  # also prepares the data once
  procs = _launch_two(multi, data_dir, heartbeat=20)
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs, strict=True):
    assert p.returncode == 0, err[-3000:]
  # Only process 0 reports.
  assert 'results:' in outs[0][0] and 'results:' not in outs[1][0]
  _close(_curve(multi), _curve(single))
  _same_queue(multi, single)
  # A checkpoint written by two processes restores in one.
  _rewind(multi, 4)
  r = _main(multi, data_dir, 4)
  assert 'resumed from step 4' in r.stdout
  _close(_curve(multi), _curve(single))


@pytest.mark.slow
def test_a_dead_process_stops_the_others_within_the_heartbeat_and_the_run_resumes(tmp_path):
  import time

  workdir, data_dir = tmp_path / 'run', tmp_path / 'data'
  longer = ['--config.pretrain.epochs=20', '--config.stages=("pretrain",)']
  survivor, victim = _launch_two(workdir, data_dir, *longer, heartbeat=10)
  ck = workdir / 'checkpoints' / 'pretrain'
  deadline = time.time() + 300
  # Kill process 1 once both are training (a checkpoint exists).
  while time.time() < deadline and not (ck.is_dir() and any(n.isdigit() for n in os.listdir(ck))):
    assert survivor.poll() is None and victim.poll() is None, 'a process ended before the kill'
    time.sleep(0.1)
  victim.kill()
  victim.wait()
  killed_at = time.time()
  _, err = survivor.communicate(timeout=180)
  assert time.time() - killed_at < 120  # bounded: heartbeat 10 s plus shutdown
  assert survivor.returncode != 0
  assert 'another task died' in err or 'unhealthy' in err or 'heartbeat' in err.lower()
  # The same workdir resumes, here on one process.
  r = _main(workdir, data_dir, 2, *longer)
  assert 'resumed from step' in r.stdout
