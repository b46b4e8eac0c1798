"""One command that checks a GPU, TPU (or CPU) machine end to end.

  python -m benchmarks.device_check [--quick] [--expect gpu|tpu|cpu] [--out DIR]

In one run, in this order:

  1. the install check: the device, jax/jaxlib versions and `jax.devices()`;
     `--expect gpu` (or tpu, cpu) stops here with one line and exit code 1 when the
     platform differs;
  2. the tiny demo (`configs/demo.py:tiny` through `skeljax.run.train_and_evaluate`, in a
     temporary workdir);
  3. the MCC pretraining train step (`skeljax.pretrain.jit_train_step`, views built inside
     the step) in samples/s for stgcn small, stgcn base and the transformer, in float32 and
     bfloat16 (`model.dtype`), at the NTU shape (batch 128, T 50, M 2, T_max 300, queue
     32768), against the PyTorch reference of benchmarks/torch_reference.py on the same
     device (float32, and bfloat16 under torch.autocast) where torch imports and, on a
     GPU, sees CUDA;
  4. one NTU-60-sized pretraining epoch (40,000 samples, T 50, M 2) of stgcn small:
     extrapolated from the median step at batch 128 in both dtypes, and on an accelerator
     also measured end to end, input pipeline included, over a synthetic in-memory source
     of that size (no download);
  5. the input pipeline (`skeljax.data.train_batches` over that source: grain, host
     preprocessing) in samples/s, with its thread count, against what the step consumes.

It writes <out>/<device>.json (section `device_check`, merged into the file) and
<out>/<device>.md, where <device> is a slug of `jax.devices()[0].device_kind` (e.g.
`nvidia-h100-80gb-hbm3`); <out> defaults to benchmarks/results. A section that fails is
recorded with its error, the others still run, and the exit code is then 1.
`--quick` (CPU smoke test, about a minute): stgcn small in float32 only (`--dtypes` adds
bfloat16, which tests/test_dtype.py covers), batch 4, T_max 64, a queue of 64, two timed
steps, an epoch of 3 steps; its numbers check the path, not the speed.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import inspect
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

# skeljax sets its XLA:CPU flag at import, before JAX starts a backend.
import skeljax  # noqa: E402, F401
from benchmarks import bench_train_step as bts  # noqa: E402

MARK = '@@device_check '
MODELS = ('stgcn-small', 'stgcn-base', 'transformer')
DTYPES = ('float32', 'bfloat16')
EPOCH_SAMPLES = 40_000  # NTU-60 x-sub has 40,091 training sequences
EPOCH_MODEL = 'stgcn-small'  # the peers' (SkeletonCLR/AimCLR) pretraining encoder
NTU = dict(batch=128, frames=50, persons=2, max_frames=300, queue=32768)
QUICK = dict(batch=4, frames=50, persons=2, max_frames=64, queue=64)


def slug(text: str) -> str:
  return re.sub(r'[^a-z0-9]+', '-', text.lower()).strip('-') or 'unknown'


def _cores() -> int:
  """The cores this process may run on (a container's CPU set, not the host's count)."""
  try:
    return max(len(os.sched_getaffinity(0)), 1)
  except AttributeError:  # not on Linux
    return max(os.cpu_count() or 1, 1)


def _median(xs) -> float:
  return float(np.median(np.asarray(xs, np.float64))) if len(xs) else float('nan')


# ---------------------------------------------------------------- 1. install check


def install_check(expect: str | None) -> dict:
  """The devices JAX sees; exits with one line when they are not the expected platform."""
  # A jaxlib with a GPU plugin but no usable GPU logs its fallback as warnings; the
  # answer is the platform below, in one line.
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.ERROR)
  import jax
  import jaxlib

  devices = jax.devices()
  platform_ = devices[0].platform
  if expect and platform_ != expect:
    raise SystemExit(f'device_check: expected {expect}, but jax.devices() returned {devices}')
  kind = devices[0].device_kind
  return dict(
    platform=platform_,
    device_kind=kind,
    device=slug(kind),
    devices=[repr(d) for d in devices],
    device_count=len(devices),
    process_count=jax.process_count(),
    jax=jax.__version__,
    jaxlib=jaxlib.__version__,
    python=platform.python_version(),
    host_cpu=bts.device_name(os.cpu_count()),
    cpu_count=_cores(),
    xla_flags=os.environ.get('XLA_FLAGS', ''),
  )


# ---------------------------------------------------------------- 2. tiny demo


def demo_config(data_dir: str):
  from skeljax import config as config_lib

  config = config_lib.load_config('demo', 'tiny')
  config.data.data_dir = data_dir
  return config


def run_demo() -> dict:
  """configs/demo.py:tiny through the real train_and_evaluate, in a temporary workdir."""
  from skeljax import run

  with tempfile.TemporaryDirectory() as tmp:
    config = demo_config(os.path.join(tmp, 'data'))
    config.random_reference = False  # the path is the check; the reference adds a probe
    t = time.perf_counter()
    out = run.train_and_evaluate(config, os.path.join(tmp, 'run'))
    wall = time.perf_counter() - t
  stages = {}
  for name, entry in out['stages'].items():
    stages[name] = {k: entry[k] for k in ('top1', 'top5', 'final_loss', 'steps') if k in entry}
  return dict(config='configs/demo.py:tiny', wall_s=wall, stages=stages)


# ---------------------------------------------------------------- 3. train step


def _proto(model: str, shape: dict) -> dict:
  return bts.protocol(
    model,
    shape['batch'],
    frames=shape['frames'],
    persons=shape['persons'],
    max_frames=shape['max_frames'],
    queue=shape['queue'],
  )


def skeljax_config(model: str, dtype: str, shape: dict):
  config = bts.skeljax_config(_proto(model, shape))
  config.model.dtype = dtype
  return config


class JaxStep:
  """skeljax's jitted pretraining step on a mesh over every device, compiled once.

  The batch carries `index` (dataset row ids), which steps that mask a query's own
  earlier keys read, and `total_steps` (and `tx`) are passed to `jit_train_step` where it
  takes them.
  """

  TOTAL_STEPS = 100_000

  def __init__(self, model: str, dtype: str, shape: dict):
    import jax

    from skeljax import mesh as mesh_lib
    from skeljax import optim, pretrain

    self.jax, self.mesh_lib = jax, mesh_lib
    self.batch_size = shape['batch']
    config = skeljax_config(model, dtype, shape)
    nets = pretrain.make_nets(config)
    tx, _ = optim.make_optimizer(
      config.pretrain, steps_per_epoch=1000, total_steps=self.TOTAL_STEPS
    )
    self.mesh = mesh_lib.make_mesh()
    rep = mesh_lib.replicated(self.mesh)
    self.state = jax.jit(lambda r: pretrain.init_state(nets, config, tx, r), out_shardings=rep)(
      jax.random.PRNGKey(0)
    )
    x, n = bts.synthetic_batch(_proto(model, shape))
    self.batch = self.to_device({'x': x, 'n': n})
    params = inspect.signature(pretrain.jit_train_step).parameters
    extra = {'total_steps': self.TOTAL_STEPS} if 'total_steps' in params else {}
    # Newer steps take the optimizer from the state (a flax TrainState), older ones as `tx`.
    head = (nets, config, tx) if 'tx' in params else (nets, config)
    step = pretrain.jit_train_step(*head, rep, mesh_lib.batch_sharded(self.mesh), **extra)
    t0 = time.perf_counter()
    lowered = step.lower(self.state, self.batch)
    t1 = time.perf_counter()
    self.step = lowered.compile()
    self.info = dict(
      trace_lower_s=t1 - t0,
      compile_s=time.perf_counter() - t1,
      params=bts.skeljax_param_counts(config),
    )
    cost = self.step.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    if cost and 'flops' in cost:
      self.info['flops_per_sample'] = float(cost['flops']) / self.batch_size

  def to_device(self, host: dict):
    b = len(host['n'])
    batch = {
      'x': host['x'],
      'n': np.asarray(host['n'], np.int32),
      'index': np.asarray(host.get('index', np.arange(b)), np.int32),
    }
    return self.mesh_lib.to_global(self.mesh, batch)

  def __call__(self, batch=None) -> float:
    self.state, metrics = self.step(self.state, self.batch if batch is None else batch)
    return float(metrics['loss'])  # blocks until the step is done

  def time_steps(self, warmup: int, steps: int) -> dict:
    for _ in range(warmup):
      self()
    times, loss = [], float('nan')
    for _ in range(steps):
      t = time.perf_counter()
      loss = self()
      times.append(time.perf_counter() - t)
    if not np.isfinite(loss):
      raise RuntimeError(f'non-finite loss {loss}')
    step_s = _median(times)
    return dict(
      self.info, step_s=step_s, samples_per_s=self.batch_size / step_s, loss=loss, steps=steps
    )


def torch_status(platform_: str) -> tuple[bool, str]:
  """Whether the torch side can run here, and why not."""
  if importlib.util.find_spec('torch') is None:
    return False, 'torch is not importable (pip install -e ".[bench]")'
  if platform_ == 'tpu':
    return False, 'no PyTorch reference on TPU'
  return True, ''


def torch_worker(spec: dict) -> dict:
  """The PyTorch reference's step on `spec['device']` for every (model, dtype) of `spec`.

  Views are built on the host (the peers' data loader does it) and not counted.
  """
  import torch

  from benchmarks import torch_reference as tr
  from skeljax import skeleton

  device = torch.device(spec['device'])
  if device.type == 'cuda':
    if not torch.cuda.is_available():
      return {'skipped': f'torch {torch.__version__} sees no CUDA device'}
    torch.backends.cudnn.benchmark = True  # the best setting for fixed shapes
    # TF32 matmuls, as XLA's default precision uses on the same GPUs.
    torch.set_float32_matmul_precision('high')
  else:
    torch.set_num_threads(_cores())
  rows = []
  for model, dtype in spec['runs']:
    config = skeljax_config(model, dtype, spec['shape'])
    if config.mcc.momentum < 0:  # 'derive from the run length': the cost is the same
      config.mcc.momentum = 0.999
    net = bts.build_torch(config).to(device)
    net.train()
    opt = tr.make_optimizer(net, lr=config.pretrain.lr, momentum=config.pretrain.momentum)
    x, n = bts.synthetic_batch(_proto(model, spec['shape']))
    layout = skeleton.get_layout(config.data.layout)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
      views = tr.make_views(
        torch.from_numpy(x),
        torch.from_numpy(n).long(),
        frames=config.data.frames,
        flip_perm=list(layout.flip),
        center=layout.center,
        speeds=tuple(config.augment.speeds),
        crop_ratio=tuple(config.augment.crop_ratio),
        segments=config.augment.segments,
        interp_stride=config.augment.interp_stride,
        generator=gen,
      )
    views = {k: v.to(device) for k, v in views.items()}
    autocast = torch.bfloat16 if dtype == 'bfloat16' else None
    for _ in range(spec['warmup']):
      tr.train_step(net, opt, views, autocast_dtype=autocast)
    times = []
    for _ in range(spec['steps']):
      t = time.perf_counter()
      loss = tr.train_step(net, opt, views, autocast_dtype=autocast)  # float(): synchronises
      times.append(time.perf_counter() - t)
    step_s = _median(times)
    rows.append(
      dict(
        model=model,
        dtype=dtype,
        side='torch',
        batch=spec['shape']['batch'],
        step_s=step_s,
        samples_per_s=spec['shape']['batch'] / step_s,
        loss=loss,
        steps=spec['steps'],
        torch=torch.__version__,
        device=str(device),
        params=tr.param_counts(net),
      )
    )
    del net, opt, views
    if device.type == 'cuda':
      torch.cuda.empty_cache()
  return {'rows': rows}


def run_torch(spec: dict, timeout: int) -> dict:
  """torch_worker in its own process: its CUDA libraries and memory stay out of JAX's."""
  env = dict(os.environ)
  if spec['device'] == 'cpu':
    env.update(bts.TUNED_MALLOC)  # PyTorch's best CPU setting (benchmarks/README.md)
  cmd = [sys.executable, '-m', 'benchmarks.device_check', '--torch-worker', json.dumps(spec)]
  out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
  for line in out.stdout.splitlines():
    if line.startswith(MARK):
      return json.loads(line[len(MARK) :])
  raise RuntimeError(f'torch worker exited with code {out.returncode}: {out.stderr[-800:]}')


# ---------------------------------------------------------------- 4./5. source, pipeline


class InMemorySource:
  """`size` NTU-shaped records, indexable like a tfds data source (benchmark input only).

  Records cycle through `pool` distinct sequences of T_max/2..T_max frames of two persons,
  drawn like the timed steps' batch (`bench_train_step.synthetic_batch`: standard normal
  coordinates), so the epoch trains on the same kind of input. Smooth synthetic motion
  would not do: the interpolation loss is normalised by the linear fill's error, which
  near-linear motion makes tiny, and the step then diverges. Nothing is read from disk.
  """

  def __init__(self, size: int, max_frames: int, pool: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    self.size, self.seqs = size, []
    for _ in range(pool):
      t = int(rng.integers(max_frames // 2, max_frames + 1))
      self.seqs.append(rng.standard_normal((t, 2, 25, 3), dtype=np.float32))

  def __len__(self) -> int:
    return self.size

  def __getitem__(self, i: int) -> dict:
    i = int(i)
    if not 0 <= i < self.size:
      raise IndexError(i)
    return {'skeleton': self.seqs[i % len(self.seqs)], 'label': i % 60}


def in_memory_split(size: int, shape: dict):
  from skeljax import config as config_lib
  from skeljax import data

  cfg = config_lib.base_config().data
  cfg.persons, cfg.max_frames, cfg.frames = shape['persons'], shape['max_frames'], shape['frames']
  return data.Split(
    source=InMemorySource(size, shape['max_frames']),
    size=size,
    num_classes=60,
    label_names=tuple(f'A{i + 1:03d}' for i in range(60)),
    preprocess=data.preprocessor(cfg),
  )


def train_batches(split, batch: int, num_steps: int, threads: int):
  from skeljax import data

  kw = dict(batch_size=batch, seed=0, start_step=0, num_steps=num_steps)
  if 'num_threads' in inspect.signature(data.train_batches).parameters:
    kw['num_threads'] = threads
  return data.train_batches(split, **kw)


def bench_pipeline(split, batch: int, steps: int, threads: int) -> dict:
  """Host samples/s of data.train_batches over `steps` batches.

  The clock starts before the iterator exists: thread start-up and the prefetch buffer
  filling are counted, so the rate errs low, never high.
  """
  t = time.perf_counter()
  shapes = [b['x'].shape for b in train_batches(split, batch, steps, threads)]
  wall = time.perf_counter() - t
  return dict(
    samples_per_s=len(shapes) * batch / wall,
    threads=threads,
    batch=batch,
    batches=len(shapes),
    host_batch_shape=list(shapes[0]),
    source_size=split.size,
    cpu_count=_cores(),
  )


def measured_epoch(step: JaxStep, split, threads: int) -> dict:
  """One pass over `split` through train_batches, device transfer and the step."""
  steps = split.size // step.batch_size
  it = train_batches(split, step.batch_size, steps, threads)
  step(step.to_device(next(it)))  # first batch and thread start-up, not timed
  t = time.perf_counter()
  for host in it:
    loss = step(step.to_device(host))
  wall = time.perf_counter() - t
  if not np.isfinite(loss):
    raise RuntimeError(f'non-finite loss {loss}')
  per_step = wall / (steps - 1)
  return dict(
    samples=split.size,
    steps=steps,
    timed_steps=steps - 1,
    wall_s=wall,
    epoch_s=per_step * steps,
    samples_per_s=step.batch_size / per_step,
    loss=loss,
  )


# ---------------------------------------------------------------- report


def markdown(r: dict) -> str:
  inst = r['install']
  lines = [
    f'## Device check: {inst["device_kind"]} ({r["date"][:10]})',
    '',
    f'`{r["command"]}`{" (quick: checks the path, not the speed)" if r["quick"] else ""}',
    '',
    f'jax {inst["jax"]}, jaxlib {inst["jaxlib"]}, Python {inst["python"]}; '
    f'{inst["device_count"]} device(s): {", ".join(inst["devices"])}; host {inst["host_cpu"]}.',
    '',
  ]
  if 'demo' in r:
    d = r['demo']
    top1 = d['stages'].get('linear', {}).get('top1')
    probe = f', linear probe top-1 {top1:.1f}%' if top1 is not None else ''
    lines.append(f'Tiny demo ({d["config"]}) ran in {d["wall_s"]:.0f} s{probe}.')
    lines.append('')
  ts = r.get('train_step')
  if ts:
    p = ts['shape']
    lines += [
      f'### MCC pretraining step (batch {p["batch"]}, T {p["frames"]}, M {p["persons"]}, '
      f'T_max {p["max_frames"]}, queue {p["queue"]})',
      '',
      '| model | dtype | skeljax samples/s | torch samples/s | skeljax / torch | compile s |',
      '|---|---|---|---|---|---|',
    ]
    for row in ts['rows']:
      t = row.get('torch_samples_per_s')
      ratio = f'{row["samples_per_s"] / t:.2f}' if t else '-'
      lines.append(
        f'| {row["model"]} | {row["dtype"]} | {row["samples_per_s"]:.1f} | '
        f'{f"{t:.1f}" if t else "-"} | {ratio} | {row.get("compile_s", float("nan")):.1f} |'
      )
    differ = [
      f'{r["model"]} {r["dtype"]}' for r in ts['rows'] if r.get('torch_params_match') is False
    ]
    if differ:
      lines.append(
        f'\nThe PyTorch reference has other parameter counts than skeljax for {", ".join(differ)} '
        '(it lags the current MCC design; counts per part in the JSON): a cost comparison, '
        'not a like-for-like one.'
      )
    if ts.get('skipped_for_time'):
      lines.append(f'\nNot run within --time-limit: {", ".join(ts["skipped_for_time"])}.')
    if ts.get('torch_skipped'):
      lines.append(f'\nPyTorch reference not run: {ts["torch_skipped"]}.')
    lines += [
      '',
      "skeljax's step builds its views on the device; the torch step excludes its views "
      "(host tensor ops, the peers' data loader). Medians of timed steps after compile and "
      'warm-up.',
      '',
    ]
  ep = r.get('ntu60_epoch')
  if ep:
    parts = [f'{dt} {s:.1f} s' for dt, s in ep['extrapolated_s'].items()]
    lines.append(
      f'NTU-60-sized epoch ({ep["samples"]} samples, {ep["model"]}, batch {ep["batch"]}), '
      f'extrapolated from the median step: {", ".join(parts)}.'
    )
    m = ep.get('measured')
    if m:
      lines.append(
        f'Measured end to end ({m["dtype"]}, train_batches over the in-memory source, '
        f'{m["threads"]} threads): {m["epoch_s"]:.1f} s ({m["samples"]} samples).'
      )
    elif ep.get('measured_skipped'):
      lines.append(f'Not measured end to end: {ep["measured_skipped"]}.')
    lines.append('')
  pipe = r.get('pipeline')
  if pipe:
    ratio = pipe.get('ratio_to_step')
    lines.append(
      f'Input pipeline (data.train_batches, {pipe["threads"]} threads of {pipe["cpu_count"]} '
      f'cores, host batch {pipe["host_batch_shape"]}): {pipe["samples_per_s"]:.0f} samples/s'
      + (f' = {ratio:.1f}x what the fastest {EPOCH_MODEL} step consumes.' if ratio else '.')
    )
    lines.append('')
  for name, err in r.get('errors', {}).items():
    lines.append(f'**{name} failed**: `{err.splitlines()[-1] if err else ""}`')
  lines.append(f'Wall time of the whole check: {r["wall_s"]:.0f} s.')
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------- main


def _section(results: dict, name: str, fn):
  """Runs one section; a failure is recorded and printed, and the run goes on."""
  t = time.perf_counter()
  print(f'== {name}', flush=True)
  try:
    out = fn()
  except Exception:  # noqa: BLE001 - a device check reports every failure and goes on
    err = traceback.format_exc()
    results.setdefault('errors', {})[name] = err
    print(err, file=sys.stderr, flush=True)
    return None
  print(f'   {name}: {time.perf_counter() - t:.1f} s', flush=True)
  return out


def _torch_section(results, args, inst, models, dtypes, shape, warmup, steps, timeout):
  """The PyTorch reference's rows by (model, dtype), and why there are none."""
  ok, why = (False, '--no-torch') if args.no_torch else torch_status(inst['platform'])
  if not ok:
    return {}, why
  spec = dict(
    device='cuda' if inst['platform'] == 'gpu' else 'cpu',
    runs=[(m, d) for m in models for d in dtypes],
    shape=shape,
    warmup=warmup,
    steps=steps,
  )
  out = _section(results, 'torch reference', lambda: run_torch(spec, timeout))
  if out and 'rows' in out:
    return {(r['model'], r['dtype']): r for r in out['rows']}, ''
  return {}, (out or {}).get('skipped', 'the torch worker failed (see errors)')


def _epoch_and_pipeline(results, args, inst, shape, rows, fastest):
  """The NTU-60-sized epoch (extrapolated; measured on an accelerator) and the pipeline."""
  n_steps = EPOCH_SAMPLES // shape['batch']
  ep = results['ntu60_epoch'] = dict(
    model=EPOCH_MODEL,
    samples=EPOCH_SAMPLES,
    batch=shape['batch'],
    frames=shape['frames'],
    persons=shape['persons'],
    method=f'{n_steps} steps x the median step time at batch {shape["batch"]}',
    extrapolated_s={r['dtype']: n_steps * r['step_s'] for r in rows},
  )
  source = _section(results, 'in-memory source', lambda: in_memory_split(EPOCH_SAMPLES, shape))
  if source is None:
    return
  batches = 8 if args.quick else 60
  pipe = _section(
    results, 'input pipeline', lambda: bench_pipeline(source, NTU['batch'], batches, args.threads)
  )
  if pipe:
    if fastest:
      consumed = fastest[1]['samples_per_s']
      pipe.update(ratio_to_step=pipe['samples_per_s'] / consumed, step_dtype=fastest[1]['dtype'])
    results['pipeline'] = pipe
  if not fastest:
    return
  if args.quick:
    # The same code path over a source of 3 batches: a check, not a measurement.
    split = in_memory_split(3 * shape['batch'], shape)
  elif inst['platform'] == 'cpu':
    ep['measured_skipped'] = 'on a CPU the extrapolation stands for it (hours otherwise)'
    return
  else:
    split = source
  m = _section(results, 'measured epoch', lambda: measured_epoch(fastest[0], split, args.threads))
  if m:
    ep['measured'] = dict(m, dtype=fastest[1]['dtype'], threads=args.threads)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='CPU smoke test, about a minute')
  parser.add_argument('--expect', choices=('gpu', 'tpu', 'cpu'), help='required platform')
  parser.add_argument('--out', default=str(bts.RESULTS), help='folder for <device>.json/.md')
  parser.add_argument('--models', default='', help=f'comma-separated from {", ".join(MODELS)}')
  parser.add_argument(
    '--dtypes',
    default='',
    help=f'comma-separated from {", ".join(DTYPES)} (default: both; quick: float32)',
  )
  parser.add_argument('--steps', type=int, default=0, help='timed steps (default 10; quick 2)')
  parser.add_argument(
    '--threads', type=int, default=_cores(), help='input pipeline threads (default: all cores)'
  )
  parser.add_argument(
    '--time-limit',
    type=float,
    default=540.0,
    help='seconds; train steps not started by then are skipped (and say so), which keeps '
    'the whole check under 10 minutes',
  )
  parser.add_argument('--no-torch', action='store_true')
  parser.add_argument('--no-demo', action='store_true')
  parser.add_argument('--torch-worker', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.torch_worker:
    print(MARK + json.dumps(torch_worker(json.loads(args.torch_worker))), flush=True)
    return 0
  t_start = time.perf_counter()
  # JAX would otherwise take 75% of GPU memory at start, which the torch worker needs.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  inst = install_check(args.expect)
  print(f'device {inst["device_kind"]} ({inst["platform"]}); jax.devices() = {inst["devices"]}')
  print(f'jax {inst["jax"]}, jaxlib {inst["jaxlib"]}, host {inst["host_cpu"]}', flush=True)
  shape = QUICK if args.quick else NTU
  models = [m for m in args.models.split(',') if m] or (
    [EPOCH_MODEL] if args.quick else list(MODELS)
  )
  dtypes = [d for d in args.dtypes.split(',') if d] or (['float32'] if args.quick else list(DTYPES))
  for m in models:
    bts.protocol(m, 1)  # unknown names fail before anything runs
  for d in dtypes:
    if d not in DTYPES:
      raise SystemExit(f'unknown dtype {d!r}; choose from {", ".join(DTYPES)}')
  # The epoch model first: the epoch and the pipeline ratio need it, whatever the time limit.
  models.sort(key=lambda m: m != EPOCH_MODEL)
  steps = args.steps or (2 if args.quick else 10)
  warmup = 1 if args.quick else 3
  results = dict(
    date=datetime.datetime.now().isoformat(timespec='seconds'),
    command=' '.join(['python -m benchmarks.device_check'] + (argv or sys.argv[1:])),
    quick=args.quick,
    install=inst,
  )
  from absl import flags

  flags.FLAGS.mark_as_parsed()  # grain reads absl flags outside absl.app.run

  if not args.no_demo:
    demo = _section(results, 'tiny demo', run_demo)
    if demo:
      results['demo'] = demo
      print(f'   demo stages: {demo["stages"]}', flush=True)

  # The PyTorch reference first, in its own process, so that JAX's steps do not hold the
  # device memory it needs; it gets a third of the time left.
  left = args.time_limit - (time.perf_counter() - t_start)
  torch_rows, torch_skipped = _torch_section(
    results, args, inst, models, dtypes, shape, warmup, steps, timeout=max(120, left / 3)
  )

  rows, skipped, fastest = [], [], None
  for m in models:
    for d in dtypes:
      if time.perf_counter() - t_start > args.time_limit:
        skipped.append(f'{m} {d}')
        continue

      def bench(m=m, d=d):
        step = JaxStep(m, d, shape)
        return step, step.time_steps(warmup, steps)

      out = _section(results, f'skeljax {m} {d}', bench)
      if out is not None:
        step, row = out
        row.update(model=m, dtype=d, side='skeljax', batch=shape['batch'])
        t = torch_rows.get((m, d))
        if t:
          row['torch_samples_per_s'] = t['samples_per_s']
          row['ratio_vs_torch'] = row['samples_per_s'] / t['samples_per_s']
          # The reference can lag skeljax's MCC design; the report says where it does.
          row['torch_params_match'] = t['params'] == row['params']
        rows.append(row)
        print(f'   {m} {d}: {row["samples_per_s"]:.1f} samples/s', flush=True)
        if m == EPOCH_MODEL and (
          fastest is None or row['samples_per_s'] > fastest[1]['samples_per_s']
        ):
          fastest = (step, row)  # kept for the measured epoch
      out = step = None  # frees this step's state and executable
      gc.collect()
    if m == EPOCH_MODEL:
      epoch_rows = [r for r in rows if r['model'] == EPOCH_MODEL]
      if epoch_rows:
        _epoch_and_pipeline(results, args, inst, shape, epoch_rows, fastest)
      fastest = None
      gc.collect()
  results['train_step'] = dict(
    shape=shape,
    rows=rows,
    torch_rows=list(torch_rows.values()),
    torch_skipped=torch_skipped,
    timed_steps=steps,
    warmup_steps=warmup,
    skipped_for_time=skipped,
  )

  results['wall_s'] = time.perf_counter() - t_start
  json_path = Path(args.out) / f'{inst["device"]}.json'
  bts.write_results(json_path, {'device_check': results})
  md = markdown(results)
  json_path.with_suffix('.md').write_text(md)
  print(md)
  print(f'wrote {json_path} and {json_path.with_suffix(".md")}')
  return 1 if results.get('errors') else 0


if __name__ == '__main__':
  sys.exit(main())
