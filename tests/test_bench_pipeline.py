"""benchmarks/bench_pipeline.py compares two designs that must yield the same batches."""

import numpy as np
import pytest

from benchmarks import bench_pipeline, device_check

SHAPE = dict(persons=2, max_frames=40, frames=16)


def test_per_record_and_per_step_designs_yield_the_same_batches():
  split = device_check.in_memory_split(64, SHAPE)
  bench_pipeline.check_same_batches(split, batch=8)
  rate = bench_pipeline.time_design(bench_pipeline.per_record_batches, split, 8, 2, 1)
  assert rate > 0


def test_the_check_catches_a_design_that_reorders(monkeypatch):
  split = device_check.in_memory_split(64, SHAPE)
  original = bench_pipeline.per_step_batches

  def shifted(split, **kw):
    for b in original(split, **kw):
      yield {k: np.roll(v, 1, axis=0) for k, v in b.items()}

  monkeypatch.setattr(bench_pipeline, 'per_step_batches', shifted)
  with pytest.raises(AssertionError):
    bench_pipeline.check_same_batches(split, batch=8)
