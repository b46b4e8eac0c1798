"""skeljax's jitted MCC pretraining step against a PyTorch reference, A/B alternated.

Every side runs in its own worker process, started once and then driven round by round:

  skeljax        `skeljax.pretrain.jit_train_step` (views built on device inside the step)
  torch          benchmarks/torch_reference.py, default glibc allocator
  torch+malloc   the same, with the glibc allocator tuned through MALLOC_*_ env variables
                 (read at process start, hence a separate process)

In each round every side runs `--steps` steps while the others wait (the order rotates every
round), so load from other processes on the machine hits every side alike. A side's number
is the median over rounds of samples/s. The torch sides time view construction (host tensor
ops, which the peers do in the data loader and never count) apart from the model step, and
report both; skeljax's step always includes its views, and its views alone are timed too.

Also measured: parameter parity (the run fails if the two implementations differ), compile
time, FLOPs per sample from XLA's cost analysis (torch's from FlopCounterMode), the fp32
matmul peak of this machine (numpy and jnp, median), peak RSS of each worker, the input
pipeline's samples/s against the step's, and (--with-demo) the demo run's peak RSS.

  python -m benchmarks.bench_train_step [--models stgcn-small,stgcn-base,transformer]
      [--batch B] [--steps N] [--rounds R] [--quick] [--with-demo] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

RESULTS = REPO / 'benchmarks' / 'results'
MARK = '@@bench '
# glibc reads these once at start-up. Large thresholds keep freed blocks in the heap instead
# of returning them to the kernel, so a step's big temporaries are not re-mmapped (and
# re-zeroed page by page) every step.
TUNED_MALLOC = {
  'MALLOC_MMAP_THRESHOLD_': str(2**30),
  'MALLOC_TRIM_THRESHOLD_': str(2**31),
  'MALLOC_TOP_PAD_': str(2**28),
}
# name -> (model config overrides, default batch). Base and transformer run a smaller batch by
# default: one ST-GCN base step is ~29 GFLOP per sample, ~4 TFLOP at batch 128 (minutes on 2 cores).
MODELS = {
  'stgcn-small': ({'name': 'stgcn', 'size': 'small'}, 128),
  'stgcn-base': ({'name': 'stgcn', 'size': 'base'}, 16),
  'transformer': ({'name': 'transformer'}, 64),
}


def protocol(
  model: str,
  batch: int,
  frames: int = 50,
  persons: int = 2,
  max_frames: int = 300,
  queue: int = 32768,
) -> dict:
  if model not in MODELS:
    raise SystemExit(f'unknown model {model!r}; choose from {", ".join(MODELS)}')
  return dict(
    model=model,
    batch=batch,
    frames=frames,
    persons=persons,
    max_frames=max_frames,
    joints=25,
    channels=3,
    layout='ntu25',
    queue=queue,
    feature_dim=128,
  )


def available_models() -> list[str]:
  """The models both skeljax and the torch reference implement."""
  import importlib.util

  from benchmarks import torch_reference as tr

  out = []
  for name, (overrides, _) in MODELS.items():
    kind = overrides['name']
    torch_ok = kind == 'stgcn' or hasattr(tr, f'build_{kind}_mcc')
    if importlib.util.find_spec(f'skeljax.models.{kind}') is not None and torch_ok:
      out.append(name)
  return out


def skeljax_config(proto: dict):
  """skeljax's base config with the benchmark's protocol (NTU 25 joints, MCC defaults)."""
  from skeljax import config as config_lib

  c = config_lib.base_config()
  c.data.layout = proto['layout']
  c.data.frames = proto['frames']
  c.data.persons = proto['persons']
  c.data.max_frames = proto['max_frames']
  for k, v in MODELS[proto['model']][0].items():
    c.model[k] = v
  c.pretrain.batch_size = proto['batch']
  c.mcc.queue_size = proto['queue']
  c.mcc.feature_dim = proto['feature_dim']
  config_lib.validate(c)
  return c


def skeljax_param_counts(config) -> dict:
  """Trainable parameters per part, {'encoder', 'projector', 'decoder'} (no compute)."""
  import jax
  import optax

  from skeljax import pretrain

  nets = pretrain.make_nets(config)
  shapes = jax.eval_shape(
    lambda r: pretrain.init_state(nets, config, optax.sgd(0.1), r), jax.random.PRNGKey(0)
  )
  return {
    k: int(sum(np.prod(x.shape) for x in jax.tree.leaves(v))) for k, v in shapes.params.items()
  }


def build_torch(config):
  """The PyTorch reference of `config`'s pretraining model (an MCC module)."""
  from benchmarks import torch_reference as tr
  from skeljax import skeleton

  layout = skeleton.get_layout(config.data.layout)
  m = config.model
  kw = dict(
    frames=config.data.frames,
    persons=config.data.persons,
    channels=layout.num_channels,
    feature_dim=config.mcc.feature_dim,
    queue_size=config.mcc.queue_size,
    momentum=config.mcc.momentum,
    temperature=config.mcc.temperature,
    interp_weight=config.mcc.interp_weight,
    projection_hidden=m.projection_hidden,
    decoder_width=m.decoder_width,
  )
  if m.name == 'stgcn':
    return tr.build_stgcn_mcc(layout.adjacency(m.adjacency), m.size, **kw)
  if m.name == 'transformer':
    from skeljax.models import transformer

    patch = m.get('patch', transformer.DEFAULT_PATCH)  # the default skeljax's registry uses
    return tr.build_transformer_mcc(
      layout, depth=m.depth, width=m.width, heads=m.heads, patch=patch, **kw
    )
  raise SystemExit(f'no torch reference for model {m.name!r}')


def check_param_counts(jax_counts: dict, torch_counts: dict, what: str) -> None:
  """Fails loudly unless both implementations have the same parameters per part."""
  if jax_counts != torch_counts:
    raise SystemExit(
      f'{what}: parameter counts differ, skeljax {jax_counts} vs torch '
      f'{torch_counts}; the comparison would not be like for like'
    )


def synthetic_batch(proto: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """A padded batch x [B, M, Tmax, V, C] float32, n [B] int32 in [Tmax/2, Tmax] (benchmark
  input only; nothing here trains a model that is kept)."""
  rng = np.random.default_rng(seed)
  b, t = proto['batch'], proto['max_frames']
  n = rng.integers(t // 2, t + 1, size=b).astype(np.int32)
  x = rng.standard_normal((b, proto['persons'], t, proto['joints'], proto['channels']))
  x = (x * (np.arange(t)[None, :] < n[:, None])[:, None, :, None, None]).astype(np.float32)
  return x, n


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median(xs):
  return float(np.median(np.asarray(xs, np.float64))) if len(xs) else float('nan')


# ---------------------------------------------------------------- worker sides


class JaxSide:
  """skeljax's own step: `pretrain.jit_train_step` on a 1-device mesh."""

  def __init__(self, proto: dict):
    import jax

    from skeljax import augment, optim, pretrain, skeleton
    from skeljax import mesh as mesh_lib

    self.jax = jax
    config = skeljax_config(proto)
    self.counts = skeljax_param_counts(config)
    nets = pretrain.make_nets(config)
    tx, _ = optim.make_optimizer(config.pretrain, steps_per_epoch=1000, total_steps=100_000)
    mesh = mesh_lib.make_mesh()
    rep = mesh_lib.replicated(mesh)
    self.state = jax.jit(lambda r: pretrain.init_state(nets, config, tx, r), out_shardings=rep)(
      jax.random.PRNGKey(0)
    )
    x, n = synthetic_batch(proto)
    index = np.arange(len(n), dtype=np.int32)
    self.batch = mesh_lib.to_global(mesh, {'x': x, 'n': n, 'index': index})
    step = pretrain.jit_train_step(
      nets, config, rep, mesh_lib.batch_sharded(mesh), total_steps=100_000
    )
    t0 = time.perf_counter()
    lowered = step.lower(self.state, self.batch)
    t1 = time.perf_counter()
    self.step = lowered.compile()
    t2 = time.perf_counter()
    cost = self.step.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    self.info = dict(
      params=self.counts,
      trace_lower_s=t1 - t0,
      compile_s=t2 - t1,
      flops_per_step=float(cost.get('flops', float('nan'))),
      bytes_accessed_per_step=float(cost.get('bytes accessed', float('nan'))),
    )
    self._run_steps(1)  # warm-up: first-call allocation and thread-pool start
    # The views alone (they are inside the step; timed apart so they can be subtracted).
    layout = skeleton.get_layout(config.data.layout)
    views = jax.jit(
      lambda k, x, n: augment.make_views(
        k,
        x,
        n,
        aug=config.augment,
        layout=layout,
        frames=config.data.frames,
        **pretrain.switches(config),
      )
    )
    key = jax.random.PRNGKey(1)
    jax.block_until_ready(views(key, self.batch['x'], self.batch['n']))
    times = []
    for i in range(5):
      t = time.perf_counter()
      jax.block_until_ready(views(jax.random.fold_in(key, i), self.batch['x'], self.batch['n']))
      times.append(time.perf_counter() - t)
    self.info['views_s'] = _median(times)

  def _run_steps(self, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
      t = time.perf_counter()
      self.state, metrics = self.step(self.state, self.batch)
      loss = float(metrics['loss'])  # blocks until the step is done
      times.append(time.perf_counter() - t)
    if not np.isfinite(loss):
      raise SystemExit(f'skeljax step gave a non-finite loss {loss}')
    return times

  def run(self, steps: int) -> dict:
    return {'step_s': self._run_steps(steps)}


class TorchSide:
  """The PyTorch reference (benchmarks/torch_reference.py), views built on the host."""

  def __init__(self, proto: dict, threads: int):
    import torch

    from benchmarks import torch_reference as tr
    from skeljax import skeleton

    torch.set_num_threads(threads)
    self.torch, self.tr = torch, tr
    config = skeljax_config(proto)
    self.model = build_torch(config)
    self.model.train()
    self.counts = tr.param_counts(self.model)
    self.opt = tr.make_optimizer(
      self.model,
      lr=config.pretrain.lr,
      momentum=config.pretrain.momentum,
      weight_decay=config.pretrain.weight_decay,
    )
    x, n = synthetic_batch(proto)
    self.x, self.n = torch.from_numpy(x), torch.from_numpy(n).long()
    layout = skeleton.get_layout(config.data.layout)
    self.view_kw = dict(
      frames=config.data.frames,
      flip_perm=list(layout.flip),
      center=layout.center,
      speeds=tuple(config.augment.speeds),
      crop_ratio=tuple(config.augment.crop_ratio),
      segments=config.augment.segments,
      interp_stride=config.augment.interp_stride,
    )
    self.gen = torch.Generator().manual_seed(0)
    self.info = dict(
      params=self.counts,
      threads=threads,
      malloc={k: os.environ[k] for k in TUNED_MALLOC if k in os.environ},
    )
    self.run(1)  # warm-up
    views = self._views()
    self.info['flops_per_step'] = float(
      tr.count_flops(lambda: tr.train_step(self.model, self.opt, views))
    )

  def _views(self):
    with self.torch.no_grad():
      return self.tr.make_views(self.x, self.n, generator=self.gen, **self.view_kw)

  def run(self, steps: int) -> dict:
    view_s, step_s = [], []
    for _ in range(steps):
      t0 = time.perf_counter()
      views = self._views()
      t1 = time.perf_counter()
      loss = self.tr.train_step(self.model, self.opt, views)
      step_s.append(time.perf_counter() - t1)
      view_s.append(t1 - t0)
    if not np.isfinite(loss):
      raise SystemExit(f'torch step gave a non-finite loss {loss}')
    return {'step_s': step_s, 'views_s': view_s}


def _reply(obj) -> None:
  sys.stdout.write(MARK + json.dumps(obj) + '\n')
  sys.stdout.flush()


def worker_main(side: str, proto: dict, threads: int) -> None:
  """Builds one side, reports its info, then runs the parent's commands from stdin."""
  try:
    impl = JaxSide(proto) if side == 'skeljax' else TorchSide(proto, threads)
  except SystemExit as e:
    _reply({'error': str(e)})
    return
  _reply({'ready': impl.info})
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd['cmd'] == 'run':
      _reply(impl.run(cmd['steps']))
    elif cmd['cmd'] == 'quit':
      _reply({'peak_rss_mib': peak_rss_mib()})
      return


class Worker:
  """A side in its own process, driven over stdin/stdout (JSON lines)."""

  def __init__(self, name: str, side: str, proto: dict, threads: int, env: dict, log):
    self.name = name
    cmd = [
      sys.executable,
      '-m',
      'benchmarks.bench_train_step',
      '--worker',
      side,
      '--proto',
      json.dumps(proto),
      '--threads',
      str(threads),
    ]
    self.proc = subprocess.Popen(
      cmd, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
    )
    t = time.perf_counter()
    msg = self._read()
    if 'error' in msg:
      raise SystemExit(f'{name}: {msg["error"]}')
    self.info = msg['ready']
    self.info['setup_s'] = time.perf_counter() - t

  def _read(self) -> dict:
    for line in self.proc.stdout:
      if line.startswith(MARK):
        return json.loads(line[len(MARK) :])
    raise SystemExit(
      f'{self.name}: worker exited with code {self.proc.wait()} (see the log named in the output)'
    )

  def request(self, **cmd) -> dict:
    self.proc.stdin.write(json.dumps(cmd) + '\n')
    self.proc.stdin.flush()
    return self._read()

  def close(self) -> dict:
    out = self.request(cmd='quit')
    self.proc.wait(timeout=60)
    return out


# ---------------------------------------------------------------- measurements


def matmul_peak(size: int = 2048, repeats: int = 7) -> dict:
  """Median fp32 GFLOP/s of a size^2 matmul, numpy and jnp (this machine's practical peak)."""
  import jax
  import jax.numpy as jnp

  rng = np.random.default_rng(0)
  a = rng.standard_normal((size, size), dtype=np.float32)
  b = rng.standard_normal((size, size), dtype=np.float32)
  flops = 2.0 * size**3
  out = {}
  times = []
  a @ b
  for _ in range(repeats):
    t = time.perf_counter()
    a @ b
    times.append(time.perf_counter() - t)
  out['numpy_gflops'] = flops / _median(times) / 1e9
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  mm = jax.jit(jnp.matmul)
  mm(ja, jb).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    mm(ja, jb).block_until_ready()
    times.append(time.perf_counter() - t)
  out['jnp_gflops'] = flops / _median(times) / 1e9
  return out


def bench_model(
  model: str,
  batch: int,
  steps: int,
  rounds: int,
  threads: int,
  log,
  sides,
  queue: int = 32768,
  frames: int = 50,
  max_frames: int = 300,
) -> dict:
  """Alternated A/B rounds of every side for one model; returns its section of the results."""
  proto = protocol(model, batch, frames=frames, max_frames=max_frames, queue=queue)
  base_env = dict(os.environ, JAX_PLATFORMS='cpu')
  for k in TUNED_MALLOC:
    base_env.pop(k, None)
  tuned = dict(base_env, **TUNED_MALLOC)
  envs = {'skeljax': base_env, 'skeljax+malloc': tuned, 'torch': base_env, 'torch+malloc': tuned}
  unknown = [s for s in sides if s not in envs]
  if unknown:
    raise SystemExit(f'unknown sides {unknown}; choose from {", ".join(envs)}')
  workers = []
  try:
    for name in sides:
      print(f'  starting {name} ...', flush=True)
      workers.append(Worker(name, name.split('+')[0], proto, threads, envs[name], log))
    counts = {w.name: w.info['params'] for w in workers}
    if 'skeljax' in counts:
      for name, c in counts.items():
        check_param_counts(counts['skeljax'], c, f'{model} ({name})')
    runs = {w.name: [] for w in workers}
    for r in range(rounds):
      order = workers[r % len(workers) :] + workers[: r % len(workers)]
      for w in order:
        runs[w.name].append(w.request(cmd='run', steps=steps))
      line = '  '.join(f'{n} {batch * steps / sum(runs[n][-1]["step_s"]):.1f}' for n in runs)
      print(f'  round {r + 1}/{rounds} samples/s (model step only): {line}', flush=True)
    rss = {w.name: w.close()['peak_rss_mib'] for w in workers}
  finally:
    for w in workers:
      if w.proc.poll() is None:
        w.proc.kill()
        w.proc.wait()
  out = {'protocol': proto, 'steps_per_round': steps, 'rounds': rounds, 'sides': {}}
  for w in workers:
    per_round = runs[w.name]
    step = [sum(r['step_s']) for r in per_round]
    s = dict(w.info)
    s['peak_rss_mib'] = rss[w.name]
    s['round_samples_per_s'] = [batch * steps / t for t in step]
    s['samples_per_s'] = _median(s['round_samples_per_s'])
    s['step_s_median'] = _median([t for r in per_round for t in r['step_s']])
    if 'views_s' in per_round[0]:  # torch: views on the host, timed apart
      with_views = [sum(r['step_s']) + sum(r['views_s']) for r in per_round]
      s['samples_per_s_with_views'] = _median([batch * steps / t for t in with_views])
      s['views_s'] = _median([t for r in per_round for t in r['views_s']])
    else:  # skeljax: views are inside the step
      s['samples_per_s_with_views'] = s['samples_per_s']
    s['flops_per_sample'] = s['flops_per_step'] / batch
    s['achieved_gflops'] = s['flops_per_sample'] * s['samples_per_s'] / 1e9
    out['sides'][w.name] = s
  torch_sides = [s for n, s in out['sides'].items() if n.startswith('torch')]
  if 'skeljax' in out['sides'] and torch_sides:
    jx = out['sides']['skeljax']['samples_per_s']
    # Peers' protocol: torch's views are not counted (their data loader builds them).
    out['ratio_vs_best_torch_step'] = jx / max(s['samples_per_s'] for s in torch_sides)
    # Like for like: both sides build their views.
    out['ratio_vs_best_torch_with_views'] = jx / max(
      s['samples_per_s_with_views'] for s in torch_sides
    )
  return out


def bench_pipeline(proto: dict, steps: int = 20, threads: int = 2) -> dict:
  """Host input pipeline (tfds data_source + grain + preprocessing) in samples/s.

  Reads the synthetic dataset of configs/demo.py, prepared into a temporary data_dir, with
  host batches of the benchmark's shape (persons, max_frames) and batch size.
  """
  import tensorflow_datasets as tfds
  from absl import flags

  from configs import demo
  from skeljax import data

  flags.FLAGS.mark_as_parsed()  # grain reads absl flags
  tfds.display_progress_bar(False)
  cfg = demo.get_config()
  with tempfile.TemporaryDirectory() as tmp:
    cfg.data.data_dir = tmp
    t = time.perf_counter()
    builder = data.prepare(cfg.data)
    prepare_s = time.perf_counter() - t
    cfg.data.persons, cfg.data.max_frames = proto['persons'], proto['max_frames']
    split = data.load_split(builder, cfg.data, cfg.data.train_split)
    it = data.train_batches(
      split,
      batch_size=proto['batch'],
      seed=0,
      start_step=0,
      num_steps=steps + 1,
      num_threads=threads,
    )
    first = next(it)
    if first['x'].shape != (proto['batch'], proto['persons'], proto['max_frames'], 25, 3):
      raise SystemExit(f'pipeline batch has shape {first["x"].shape}')
    t = time.perf_counter()
    count = sum(1 for _ in it)
    wall = time.perf_counter() - t
  return dict(
    samples_per_s=count * proto['batch'] / wall,
    batches=count,
    batch=proto['batch'],
    persons=proto['persons'],
    max_frames=proto['max_frames'],
    grain_threads=threads,
    dataset='synthetic_skeleton/default',
    train_size=split.size,
    prepare_s=prepare_s,
  )


def demo_rss(timeout: int = 1800) -> dict:
  """Peak RSS and wall time of the demo run (`python -m skeljax.main --config=configs/demo.py`).

  A fresh wrapper process runs the demo as its only child, so RUSAGE_CHILDREN is the demo's.
  """
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [
      sys.executable,
      '-m',
      'skeljax.main',
      '--config=configs/demo.py',
      f'--workdir={tmp}/run',
      f'--config.data.data_dir={tmp}/data',
    ]
    wrapper = (
      'import resource, subprocess, sys, time\n'
      't = time.perf_counter()\n'
      'rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n'
      'w = time.perf_counter() - t\n'
      'r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n'
      f'print({MARK!r} + f"{{rc}} {{r}} {{w}}")\n'
    )
    out = subprocess.run(
      [sys.executable, '-c', wrapper] + cmd,
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=timeout,
    )
  line = [x for x in out.stdout.splitlines() if x.startswith(MARK)]
  if not line:
    raise SystemExit(f'demo wrapper failed: {out.stderr[-500:]}')
  rc, kib, wall = line[0][len(MARK) :].split()
  if int(rc) != 0:
    raise SystemExit(f'demo run exited with code {rc}: {out.stderr[-500:]}')
  return dict(
    peak_rss_mib=int(kib) / 1024.0, wall_s=float(wall), command=' '.join(['python'] + cmd[1:3])
  )


def device_name(threads: int) -> str:
  model = platform.processor() or 'cpu'
  try:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        model = line.split(':', 1)[1]
        break
  except OSError:
    pass
  words = [
    w
    for w in model.lower().replace('(r)', '').replace('(tm)', '').split()
    if w not in ('processor', 'cpu', '@') and not w.endswith('-core')
  ][:3]
  return 'cpu-' + '-'.join(w.strip(',') for w in words) + f'-{threads}cores'


def load_results(path: Path) -> dict:
  return json.loads(path.read_text()) if path.exists() else {}


def write_results(path: Path, update: dict) -> None:
  """Merges `update` into the JSON at `path` (other benchmarks' sections are kept)."""
  results = load_results(path)
  results.update(update)
  results = {k: v for k, v in results.items() if v is not None}  # None deletes a section
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(results, indent=1, sort_keys=True) + '\n')


# ---------------------------------------------------------------- report


def table(section: dict) -> str:
  """Markdown table of one run's train-step results."""
  peak = section['matmul_peak']
  peak_g = max(peak['numpy_gflops'], peak['jnp_gflops'])
  rows = [
    '| model | batch | side | samples/s (step) | samples/s (+ views) | ratio vs torch+malloc '
    '| GFLOP/sample | GFLOP/s | of peak | compile s | peak RSS MiB |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for model, m in section['models'].items():
    sides = m['sides']
    ref = sides.get('torch+malloc') or sides.get('torch')
    for name, s in sides.items():
      ratio = s['samples_per_s_with_views'] / ref['samples_per_s'] if ref else float('nan')
      compile_s = f'{s["compile_s"]:.1f}' if 'compile_s' in s else '-'
      rows.append(
        f'| {model} | {m["protocol"]["batch"]} | {name} | {s["samples_per_s"]:.1f} | '
        f'{s["samples_per_s_with_views"]:.1f} | {ratio:.2f} | {s["flops_per_sample"] / 1e9:.2f} | '
        f'{s["achieved_gflops"]:.0f} | {s["achieved_gflops"] / peak_g:.0%} | {compile_s} | '
        f'{s["peak_rss_mib"]:.0f} |'
      )
  lines = [
    '\n'.join(rows),
    '',
    f'fp32 matmul peak ({peak["size"]}^2, median): numpy {peak["numpy_gflops"]:.0f} '
    f'GFLOP/s, jnp {peak["jnp_gflops"]:.0f} GFLOP/s.',
  ]
  for model, m in section['models'].items():
    if 'ratio_vs_best_torch_step' in m:
      lines.append(
        f'{model}: skeljax / best torch = {m["ratio_vs_best_torch_step"]:.2f}x '
        f"(torch views not counted, the peers' protocol), "
        f'{m["ratio_vs_best_torch_with_views"]:.2f}x (both sides build views).'
      )
  if 'pipeline' in section:
    p = section['pipeline']
    lines.append(
      f'Input pipeline (tfds data_source + grain, {p["grain_threads"]} threads): '
      f'{p["samples_per_s"]:.0f} samples/s = {p.get("ratio_to_step", float("nan")):.1f}x'
      " the skeljax step's consumption."
    )
  if 'demo' in section:
    d = section['demo']
    lines.append(f'Demo run: peak RSS {d["peak_rss_mib"]:.0f} MiB, wall {d["wall_s"]:.0f} s.')
  return '\n'.join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    '--models',
    default=None,
    help=f'comma-separated, from {", ".join(MODELS)} (default: all; --quick: stgcn-small)',
  )
  parser.add_argument('--batch', type=int, default=0, help="0: each model's default batch")
  parser.add_argument('--steps', type=int, default=2, help='steps per side per round')
  parser.add_argument('--rounds', type=int, default=5, help='A/B rounds')
  parser.add_argument('--threads', type=int, default=os.cpu_count(), help='torch threads')
  parser.add_argument(
    '--sides',
    default='skeljax,torch,torch+malloc',
    help='also skeljax+malloc: skeljax with the tuned allocator',
  )
  parser.add_argument('--quick', action='store_true', help='tiny settings: a smoke test')
  parser.add_argument('--with-demo', action='store_true', help="also the demo run's RSS")
  parser.add_argument('--no-pipeline', action='store_true')
  parser.add_argument('--out', default='', help='JSON path; default results/<device>.json')
  parser.add_argument('--worker', choices=('skeljax', 'torch'), help=argparse.SUPPRESS)
  parser.add_argument('--proto', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    worker_main(args.worker, json.loads(args.proto), args.threads)
    return {}
  if args.models is None:
    args.models = 'stgcn-small' if args.quick else ','.join(available_models())
  models = [m for m in args.models.split(',') if m]
  for m in models:
    protocol(m, 1)  # unknown names fail before anything runs
  sides = [s for s in args.sides.split(',') if s]
  queue, frames, max_frames = 32768, 50, 300
  if args.quick:
    args.batch, args.steps, args.rounds, queue, max_frames = 4, 1, 2, 64, 64
  device = device_name(args.threads)
  out = Path(args.out) if args.out else RESULTS / f'{device}.json'
  log_path = Path(tempfile.gettempdir()) / f'bench_train_step_{os.getpid()}.log'
  print(f'device {device}; worker logs in {log_path}', flush=True)
  section = {
    'date': datetime.datetime.now().isoformat(timespec='seconds'),
    'command': ' '.join(['python -m benchmarks.bench_train_step'] + sys.argv[1:]),
    'device': device,
    'quick': args.quick,
    'tuned_malloc_env': TUNED_MALLOC,
    'models': {},
  }
  peaks = [matmul_peak()]
  with open(log_path, 'w') as log:
    for m in models:
      batch = args.batch or MODELS[m][1]
      print(f'{m}: batch {batch}, {args.rounds} rounds x {args.steps} steps', flush=True)
      section['models'][m] = bench_model(
        m,
        batch,
        args.steps,
        args.rounds,
        args.threads,
        log,
        sides,
        queue=queue,
        frames=frames,
        max_frames=max_frames,
      )
      # Saved after every model, so a later failure does not lose the finished ones.
      write_results(out, {'train_step_partial': section})
  peaks.append(matmul_peak())
  section['matmul_peak'] = {k: _median([p[k] for p in peaks]) for k in peaks[0]}
  section['matmul_peak']['size'] = 2048
  peak_g = max(section['matmul_peak']['numpy_gflops'], section['matmul_peak']['jnp_gflops'])
  for m in section['models'].values():
    for s in m['sides'].values():
      s['fraction_of_peak'] = s['achieved_gflops'] / peak_g
  if not args.no_pipeline:
    first = next(iter(section['models'].values()))
    pipe = bench_pipeline(first['protocol'], steps=4 if args.quick else 20)
    if 'skeljax' in first['sides']:
      pipe['ratio_to_step'] = pipe['samples_per_s'] / first['sides']['skeljax']['samples_per_s']
      pipe['step_model'] = first['protocol']['model']
    section['pipeline'] = pipe
  if args.with_demo:
    print('demo run (minutes) ...', flush=True)
    section['demo'] = demo_rss()
  print(table(section))
  write_results(out, {'train_step': section, 'train_step_partial': None})
  print(f'wrote {out}')
  return section


if __name__ == '__main__':
  main()
