"""The method's own cost: the MCC step against the contrastive (SkeletonCLR) step.

Same encoder, same batch, same machinery (EMA key encoder, ghost BN, queue); only
`config.objective` differs. The two jitted steps run alternately in one process, so the
ratio is taken in the same minutes of a shared machine. Two shapes by default:

  NW-UCLA  T 32, M 1, 20 joints, batch 64   (configs/nw_ucla.py)
  NTU      T 50, M 2, 25 joints, batch 128  (configs/ntu60.py)

  python -m benchmarks.bench_objective [--shapes nw_ucla,ntu] [--rounds 3] [--steps 3]

Prints one table (samples/s of each step, MCC / contrastive time ratio, compile time,
peak RSS of the process) and writes it as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import numpy as np

SHAPES = {
  'nw_ucla': dict(config='nw_ucla', frames=32, persons=1, batch=64, max_frames=64),
  'ntu': dict(config='ntu60', frames=50, persons=2, batch=128, max_frames=100),
}


def _config(shape: dict, objective: str, overrides: dict):
  from skeljax import config as config_lib

  c = config_lib.load_config(shape['config'])
  c.objective = objective
  c.data.frames, c.data.persons = shape['frames'], shape['persons']
  c.data.max_frames = shape['max_frames']
  c.pretrain.batch_size = shape['batch']
  c.mcc.queue_size = max(c.mcc.queue_size // shape['batch'], 1) * shape['batch']
  for k, v in overrides.items():
    section, _, field = k.rpartition('.')
    (c[section] if section else c)[field] = v
  return c


def _batch(shape: dict, layout, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  b, m, t = shape['batch'], shape['persons'], shape['max_frames']
  steps = rng.normal(0, 0.01, size=(b, m, t, layout.num_joints, layout.num_channels))
  x = np.cumsum(steps, axis=2).astype(np.float32) + rng.normal(size=(b, m, 1, layout.num_joints, 3))
  return {
    'x': x.astype(np.float32),
    'n': np.full((b,), t, np.int32),
    'index': np.arange(b, dtype=np.int32),
  }


class Step:
  """One objective's jitted train step on a 1-device mesh, timed per call."""

  def __init__(self, config):
    import jax

    from skeljax import mesh as mesh_lib
    from skeljax import optim, pretrain, skeleton

    self.jax = jax
    nets = pretrain.make_nets(config)
    tx, _ = optim.make_optimizer(config.pretrain, steps_per_epoch=100, total_steps=10_000)
    mesh = mesh_lib.make_mesh()
    rep = mesh_lib.replicated(mesh)
    self.state = jax.jit(lambda r: pretrain.init_state(nets, config, tx, r), out_shardings=rep)(
      jax.random.PRNGKey(0)
    )
    layout = skeleton.get_layout(config.data.layout)
    shape = dict(
      batch=config.pretrain.batch_size,
      persons=config.data.persons,
      max_frames=config.data.max_frames,
    )
    self.batch = mesh_lib.to_global(mesh, _batch(shape, layout))
    fn = pretrain.jit_train_step(
      nets, config, rep, mesh_lib.batch_sharded(mesh), total_steps=10_000
    )
    t0 = time.perf_counter()
    self.fn = fn.lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - t0
    self.run(1)  # warm-up

  def run(self, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
      t = time.perf_counter()
      self.state, metrics = self.fn(self.state, self.batch)
      self.jax.block_until_ready(metrics['loss'])
      times.append(time.perf_counter() - t)
    return times


def measure(shape_name: str, rounds: int, steps: int, overrides: dict) -> dict:
  shape = SHAPES[shape_name]
  sides = {obj: Step(_config(shape, obj, overrides)) for obj in ('mcc', 'contrastive')}
  times = {obj: [] for obj in sides}
  for _ in range(rounds):
    for obj, side in sides.items():  # alternated: each round times both
      times[obj] += side.run(steps)
  med = {obj: float(np.median(t)) for obj, t in times.items()}
  return {
    'shape': shape_name,
    **{k: shape[k] for k in ('frames', 'persons', 'batch')},
    'mcc_samples_per_s': shape['batch'] / med['mcc'],
    'contrastive_samples_per_s': shape['batch'] / med['contrastive'],
    'ratio_mcc_over_contrastive': med['mcc'] / med['contrastive'],
    'compile_s': {obj: round(side.compile_s, 1) for obj, side in sides.items()},
    'steps_timed': rounds * steps,
  }


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--shapes', default='nw_ucla,ntu')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--steps', type=int, default=3)
  p.add_argument('--set', action='append', default=[], help='config override k=v (python value)')
  p.add_argument('--out', default='')
  a = p.parse_args(argv)
  import ast

  overrides = {}
  for item in a.set:
    k, _, v = item.partition('=')
    try:
      overrides[k] = ast.literal_eval(v)
    except (ValueError, SyntaxError):
      overrides[k] = v
  import jax

  import skeljax  # noqa: F401  (XLA flags before the first computation)

  rows = [measure(s, a.rounds, a.steps, overrides) for s in a.shapes.split(',')]
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  device = f'{jax.devices()[0].platform}:{jax.devices()[0].device_kind} ({platform.processor()})'
  print(f'device: {device}; jax {jax.__version__}; overrides {overrides}; peak RSS {rss:.1f} GiB')
  print('| shape | T | M | batch | MCC samples/s | contrastive samples/s | MCC / contrastive |')
  print('|---|---|---|---|---|---|---|')
  for r in rows:
    print(
      f'| {r["shape"]} | {r["frames"]} | {r["persons"]} | {r["batch"]} | '
      f'{r["mcc_samples_per_s"]:.1f} | {r["contrastive_samples_per_s"]:.1f} | '
      f'{r["ratio_mcc_over_contrastive"]:.2f}x |'
    )
  if a.out:
    with open(a.out, 'w') as f:
      json.dump({'device': device, 'peak_rss_gib': rss, 'rows': rows}, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
