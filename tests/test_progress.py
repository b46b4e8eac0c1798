"""Long stages report progress with an ETA, in plain lines a redirected log can hold.

- skeljax.progress.Progress: a line per due update, rate and ETA, a closing line, silence
  for short stages;
- the linear probe runs its epochs in chunks that report, with the parameters of the
  single scan it replaced, bit for bit;
- a tiny run with stdout and stderr redirected to a file: skeljax's progress lines for
  dataset preparation, BN recalibration, feature extraction and the probe, and no
  carriage return, cursor code or TFDS size banner.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from skeljax import config as config_lib
from skeljax import frozen, objectives, optim, progress
from skeljax.models import heads

from .conftest import REPO


def test_progress_prints_due_lines_with_eta_and_a_closing_line(capsys):
  bar = progress.Progress('features train', 30, 'sequences', every_s=0.0)
  for done in (10, 20, 30):
    bar.update(done)
  bar.close()
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 3
  assert lines[0].startswith('features train 10/30 sequences | ') and ' | ETA ' in lines[0]
  assert lines[1].startswith('features train 20/30 sequences | ')
  assert lines[2].startswith('features train 30/30 sequences | ') and ' | done in 0m' in lines[2]


def test_progress_is_silent_for_short_stages_and_other_processes(capsys, monkeypatch):
  bar = progress.Progress('quick', 3, every_s=60.0)
  for done in (1, 2, 3):
    bar.update(done)
  bar.close()
  quiet = progress.Progress('rank 1', 3, every_s=0.0, enabled=False)
  quiet.update(1)
  quiet.close()
  assert capsys.readouterr().out == ''
  monkeypatch.setenv('SKELJAX_PROGRESS_EVERY_S', '0')
  assert list(progress.iterate(['a', 'b'], 'items', unit='files')) == ['a', 'b']
  assert capsys.readouterr().out.splitlines()[0].startswith('items 1/2 files | ')


def test_fmt_duration():
  assert progress.fmt_duration(187) == '3m07s'
  assert progress.fmt_duration(3720) == '1h02m'
  assert progress.fmt_duration(float('inf')) == '?'


def _fit_linear_in_one_scan(train_f, train_y, num_classes, sec, seed):
  """fit_linear as it was before it reported: every epoch in one jitted scan."""
  clf = heads.LinearClassifier(num_classes)
  x = jnp.asarray(train_f, jnp.float32)
  y = jnp.asarray(train_y, jnp.int32)
  n = x.shape[0]
  bs = min(sec.batch_size, n)
  steps_per_epoch = max(n // bs, 1)
  tx, _ = optim.make_optimizer(sec, steps_per_epoch, steps_per_epoch * sec.epochs)
  rng = jax.random.PRNGKey(seed)
  params = clf.init(jax.random.fold_in(rng, 1), x[:1])['params']

  def loss_fn(p, xb, yb):
    return objectives.cross_entropy(clf.apply({'params': p}, xb), yb)

  def epoch(carry, e):
    perm = jax.random.permutation(jax.random.fold_in(rng, e), n)[: steps_per_epoch * bs]

    def step(carry, idx):
      p, o = carry
      u, o = tx.update(jax.grad(loss_fn)(p, x[idx], y[idx]), o, p)
      return (optax.apply_updates(p, u), o), None

    return jax.lax.scan(step, carry, perm.reshape(steps_per_epoch, bs))[0], None

  run = jax.jit(lambda c: jax.lax.scan(epoch, c, jnp.arange(sec.epochs)))
  return run((params, tx.init(params)))[0][0]


@pytest.mark.parametrize('epochs', [7, 40])  # a short last chunk; chunks of 2
def test_linear_probe_reports_its_epochs_and_keeps_its_result(epochs, capsys, monkeypatch):
  monkeypatch.setenv('SKELJAX_PROGRESS_EVERY_S', '0')
  rng = np.random.default_rng(epochs)
  y = np.repeat(np.arange(4), 25)
  x = (rng.standard_normal((4, 16))[y] + rng.standard_normal((100, 16))).astype(np.float32)
  sec = ml_collections.ConfigDict(config_lib.base_config().linear.to_dict())
  sec.epochs, sec.batch_size = epochs, 16
  _, params = frozen.fit_linear(x, y, 4, sec, seed=3)
  lines = capsys.readouterr().out.splitlines()
  reference = _fit_linear_in_one_scan(x, y, 4, sec, seed=3)
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(reference), strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  chunk = -(-epochs // frozen.LINEAR_CHUNKS)
  assert len(lines) == -(-epochs // chunk)  # one line a chunk, the last one closing
  assert lines[0].startswith(f'linear probe {chunk}/{epochs} epochs | ') and 'ETA' in lines[0]
  assert lines[-1].startswith(f'linear probe {epochs}/{epochs} epochs | ')


def test_redirected_log_holds_progress_lines_and_no_control_codes(tmp_path):
  """A tiny config (random-init encoder, no pretraining) with stdout and stderr in a file."""
  log = tmp_path / 'log.txt'
  env = {**os.environ, 'SKELJAX_PROGRESS_EVERY_S': '0', 'JAX_PLATFORMS': 'cpu'}
  env.pop('TQDM_DISABLE', None)
  args = [
    sys.executable, '-m', 'skeljax.main', '--config=configs/demo.py:tiny',
    f'--workdir={tmp_path / "run"}', f'--config.data.data_dir={tmp_path / "data"}',
    "--config.stages=('linear',)", '--config.init_from=random', '--config.linear.epochs=3',
    '--config.eval_batch_size=16',
  ]  # fmt: skip
  with open(log, 'wb') as f:
    r = subprocess.run(args, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=300)
  text = log.read_text()
  assert r.returncode == 0, text[-3000:]
  assert '\r' not in text and '\x1b' not in text, [x for x in text.split('\n') if '\r' in x][:3]
  assert 'Downloading and preparing' not in text and 'Subsequent calls' not in text
  lines = text.splitlines()
  assert 'Preparing synthetic_skeleton/tiny into' in lines[1]
  for what in (
    'preparing synthetic_skeleton/tiny train 1/4 subjects',
    'BN recalibration 1/3 batches',
    'features train 16/56 sequences',
    'features test 16/28 sequences',
    'linear probe 1/3 epochs',
  ):
    (line,) = [x for x in lines if x.startswith(what)]
    assert ' | ETA ' in line, line
