"""`python -m benchmarks.device_check`: the quick run's report, and a wrong platform's one line."""

import json
import math
import os
import subprocess
import sys

import pytest

from .conftest import REPO


def _device_check(*args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run(
    [sys.executable, '-m', 'benchmarks.device_check', *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


@pytest.mark.slow  # the whole device check in quick mode, ~1.5 min on 2 cores
def test_quick_run_reports_every_section(tmp_path):
  out = _device_check('--quick', '--expect', 'cpu', '--out', str(tmp_path))
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  (json_path,) = tmp_path.glob('*.json')
  assert json_path.name == 'cpu.json'  # the slug of jax.devices()[0].device_kind
  r = json.loads(json_path.read_text())['device_check']
  assert json_path.with_suffix('.md').read_text().startswith('## Device check: cpu')
  assert 'errors' not in r
  assert r['quick'] and r['install']['platform'] == 'cpu' and r['install']['devices']
  assert 'CpuDevice' in out.stdout  # the install check prints jax.devices()
  assert {'pretrain', 'linear'} <= set(r['demo']['stages'])
  assert 0 <= r['demo']['stages']['linear']['top1'] <= 100
  rows = {(row['model'], row['dtype']): row for row in r['train_step']['rows']}
  assert set(rows) == {('stgcn-small', 'float32')}  # quick: float32 unless --dtypes says more
  for row in rows.values():
    assert row['samples_per_s'] > 0 and math.isfinite(row['loss'])
  if r['train_step']['torch_skipped']:
    assert 'torch' in r['train_step']['torch_skipped']
  epoch = r['ntu60_epoch']
  assert epoch['samples'] == 40_000 and set(epoch['extrapolated_s']) == {'float32'}
  assert epoch['measured']['steps'] == 3  # the quick path: a source of three batches
  pipe = r['pipeline']
  assert pipe['samples_per_s'] > 0 and pipe['threads'] >= 1 and pipe['source_size'] == 40_000
  assert pipe['ratio_to_step'] > 0


def test_expecting_a_gpu_on_a_cpu_machine_is_one_line_and_nonzero(tmp_path):
  out = _device_check('--expect', 'gpu', '--out', str(tmp_path), timeout=120)
  assert out.returncode != 0
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert lines == [lines[0]] and 'expected gpu' in lines[0] and 'CpuDevice' in lines[0], lines
  assert not list(tmp_path.iterdir())  # stopped before anything ran or was written
