"""Shared test fixtures: paths to the licensed data beside the repository."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'


def shared_data(*parts) -> pathlib.Path:
  """A path under ../shared/data, or skip the test when it is absent."""
  path = SHARED_DATA.joinpath(*parts)
  if not path.exists():
    pytest.skip(f'{path} is absent (licensed data is never copied into the repository)')
  return path


def run_python(code: str, devices: int = 1, timeout: int = 600, env=None):
  """Runs `code` in a fresh interpreter with `devices` forced CPU devices."""
  e = dict(os.environ)
  e['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  e['JAX_PLATFORMS'] = 'cpu'
  e.update(env or {})
  return subprocess.run(
    [sys.executable, '-c', code], cwd=REPO, env=e, capture_output=True, text=True, timeout=timeout
  )
