"""The shared training loop's samples/s: counted from the end of the compiling first step."""

import itertools
import time

import jax.numpy as jnp
import numpy as np
import pytest

from skeljax import checkpoint as ckpt_lib
from skeljax import loop
from skeljax import mesh as mesh_lib
from skeljax.logger import MetricsLog, read_metrics

BATCH = 8
COMPILE_S = 1.0  # the first call of a jitted step compiles: far slower than the others
STEP_S = 0.01


def _run(tmp_path, total: int) -> list[dict]:
  calls = []

  def step_fn(state, batch):
    time.sleep(COMPILE_S if not calls else STEP_S)
    calls.append(batch['x'].shape)
    return {'w': state['w'] + 1}, {'loss': jnp.float32(1.0)}

  loop.run(
    stage='pretrain',
    state={'w': jnp.zeros((), jnp.float32)},
    step_fn=step_fn,
    batches=lambda start: ({'x': np.zeros((BATCH, 1), np.float32)} for _ in itertools.count()),
    mesh=mesh_lib.make_mesh(),
    ckpt=ckpt_lib.StageCheckpoints(str(tmp_path / 'ckpt'), keep=1, fingerprint_={}),
    log=MetricsLog(str(tmp_path), 'pretrain', total, BATCH),
    total_steps=total,
    log_every=100,
    checkpoint_every=100,
  )
  assert len(calls) == total
  return read_metrics(str(tmp_path), 'pretrain')


def test_a_three_step_run_reports_the_rate_after_the_compiling_step(tmp_path, capsys):
  (record,) = _run(tmp_path, 3)
  # Counted from the start, the compile would hold it below 3 * 8 / 1 s = 24 samples/s.
  assert record['samples_per_s'] > 4 * 3 * BATCH / COMPILE_S
  assert record['samples_per_s'] < 2 * BATCH / STEP_S  # two timed steps, no more
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert line.startswith('pretrain 3/3') and f'{record["samples_per_s"]:.1f} samples/s' in line
  assert record['elapsed_s'] >= COMPILE_S  # the stage's wall time still includes it


def test_a_one_step_run_has_no_rate_instead_of_a_wrong_one(tmp_path, capsys):
  (record,) = _run(tmp_path, 1)
  assert record['samples_per_s'] is None
  assert 'samples/s n/a (only the compiling step ran)' in capsys.readouterr().out


@pytest.mark.parametrize('rate,text', [(12.34, '12.3 samples/s'), (None, 'samples/s n/a')])
def test_results_markdown_prints_the_rate_or_says_there_is_none(rate, text):
  from skeljax import results

  r = results.Results({'stages': {'pretrain': {'final_loss': 1.0, 'steps': 1}}})
  r.payload['stages']['pretrain']['samples_per_s'] = rate
  assert text in r.markdown()
