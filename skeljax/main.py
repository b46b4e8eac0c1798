"""python -m skeljax.main --config=configs/<file>.py[:arg] [--workdir=DIR] [--config.x.y=V]

Wires flags to `skeljax.run.train_and_evaluate`. Bad input (unknown config key,
impossible value, missing data) prints one line and exits with code 2.
"""

from __future__ import annotations

import os
import sys

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment config file[:arg].', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder; default runs/<config>[_<arg>].')
_COORDINATOR = flags.DEFINE_string('coordinator', None, 'Multi-host: coordinator host:port.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Multi-host: process count.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-host: this process index.')
_HEARTBEAT = flags.DEFINE_integer(
  'heartbeat_timeout',
  100,
  'Multi-host: seconds without a heartbeat before the other processes stop with an error.',
)
_DISTRIBUTED = flags.DEFINE_bool(
  'distributed',
  False,
  'Call jax.distributed.initialize() with the cluster environment JAX detects (TPU pods, SLURM).',
)


def default_workdir(config_arg: str) -> str:
  path, _, arg = config_arg.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', f'{name}_{arg}' if arg else name)


def _fail(message: str) -> int:
  print(f'skeljax: error: {message}', file=sys.stderr)
  return 2


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv if argv is None else argv)
  try:
    flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    # ml_collections reports an unknown override key as AttributeError(KeyError(key)).
    key = str(e.args[0] if e.args else e).strip('"\'')
    culprits = [a.split('=')[0] for a in argv if a.startswith('--config.') and key in a]
    where = culprits[0] if culprits else key
    return _fail(
      f'unknown config key {where} ({key!r} is not a field); '
      'the fields and their defaults are in skeljax/config.py'
    )
  except (flags.Error, ValueError, TypeError) as e:
    # A config file that raised while loading: keep its last line, not the traceback.
    text = str(e)
    if 'Traceback' in text:
      text = text.strip().splitlines()[-1].split(': ', 1)[-1]
    return _fail(' '.join(text.split()))
  if _CONFIG.value is None:
    return _fail('--config is required, e.g. --config=configs/demo.py')
  import jax

  from skeljax import config as config_lib
  from skeljax import data, evaluate, loop, run
  from skeljax.checkpoint import CheckpointMismatch

  if _COORDINATOR.value or _DISTRIBUTED.value:
    # Cross-process collectives on CPU need gloo; GPU and TPU ignore this setting.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
      coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value,
      process_id=_PROCESS_ID.value,
      heartbeat_timeout_seconds=_HEARTBEAT.value,
    )
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS['config'].serialize().split('=', 1)[1])
  if jax.process_index() == 0:
    print(f'skeljax: writing to {os.path.abspath(workdir)}', flush=True)
  try:
    run.train_and_evaluate(_CONFIG.value, workdir)
  except (config_lib.ConfigError, data.DataError, evaluate.EvalError, CheckpointMismatch) as e:
    return _fail(' '.join(str(e).split()))
  except loop.NonFiniteLoss as e:
    print(f'skeljax: error: {e}', file=sys.stderr)
    return 3
  return 0


if __name__ == '__main__':
  sys.exit(main())
