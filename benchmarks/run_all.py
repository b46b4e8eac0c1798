"""Runs every benchmark and writes results/<device>.json and results/<device>.md.

  python -m benchmarks.run_all [--quick] [--with-demo] [--steps N] [--rounds R] [--models ...]

The train-step benchmark (skeljax vs the PyTorch reference, input pipeline, RSS) runs first;
then each of bench_models.py, bench_augment.py and bench_ntu_parse.py that exists runs as a
subprocess. A script that supports `--json PATH` writes its results there; otherwise the last
line of its output that is a JSON object is taken, and failing that its output tail is kept.
The markdown file is meant to be pasted into docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from benchmarks import bench_train_step  # noqa: E402

OTHERS = ('bench_models', 'bench_augment', 'bench_ntu_parse')
QUICK_ARGS = {
  'bench_models': ['--models', 'stgcn', '--batch', '4', '--repeats', '1'],
  'bench_augment': ['--batch', '8', '--repeats', '2'],
  'bench_ntu_parse': ['--copies', '2', '--repeats', '1'],
}


def _last_json(text: str):
  for line in reversed(text.strip().splitlines()):
    line = line.strip()
    if line.startswith('{'):
      try:
        return json.loads(line)
      except json.JSONDecodeError:
        continue
  return None


def run_script(name: str, quick: bool, timeout: int = 1200) -> dict:
  """Runs benchmarks/<name>.py as a subprocess and returns its results (or why it failed)."""
  script = REPO / 'benchmarks' / f'{name}.py'
  helptext = subprocess.run(
    [sys.executable, str(script), '--help'], cwd=REPO, capture_output=True, text=True, timeout=120
  ).stdout
  extra = []
  if quick:
    extra = ['--quick'] if '--quick' in helptext else QUICK_ARGS.get(name, [])
  with tempfile.TemporaryDirectory() as tmp:
    json_path = Path(tmp) / 'out.json'
    cmd = [sys.executable, str(script)] + extra
    if '--json' in helptext:
      cmd += ['--json', str(json_path)]
    t = time.perf_counter()
    try:
      out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
      return {'error': f'timed out after {timeout} s', 'command': ' '.join(cmd[1:]), 'ok': False}
    wall = time.perf_counter() - t
    result = {
      'command': 'python ' + ' '.join([f'benchmarks/{name}.py'] + extra),
      'wall_s': wall,
      'returncode': out.returncode,
      'ok': out.returncode == 0,
    }
    if json_path.exists():
      result['results'] = json.loads(json_path.read_text())
    else:
      parsed = _last_json(out.stdout)
      if parsed is not None:
        result['results'] = parsed
    if result['ok']:
      result['stdout'] = out.stdout[-3000:]
    else:
      result['output_tail'] = (out.stdout + out.stderr)[-3000:]
  return result


def markdown(results: dict) -> str:
  """The Performance section: the train-step table, then each other benchmark's output."""
  ts = results['train_step']
  lines = [
    f'## Performance ({results["device"]}, {results["date"][:10]})',
    '',
    f'`{results["command"]}`',
    '',
  ]
  lines += [
    '### MCC pretraining step: skeljax vs a PyTorch reference',
    '',
    bench_train_step.table(ts),
    '',
    'Samples/s are medians over alternated A/B rounds (other load on the machine hits '
    'every side alike). "step" counts the model step; "+ views" adds view construction, '
    'which skeljax always does inside its jitted step and the peers do in their data '
    'loader. The ratio is each side\'s "+ views" rate over the tuned-allocator torch '
    "model step, the peers' own protocol. See benchmarks/README.md.",
    '',
  ]
  for name in OTHERS:
    if name not in results:
      continue
    r = results[name]
    lines += [f'### {name}', '', f'`{r.get("command", "")}`', '']
    if r.get('ok'):  # its own printed summary; the parsed numbers are in the JSON
      lines += ['```', r['stdout'].strip()[-2000:], '```']
    else:
      lines += [
        f'failed (exit {r.get("returncode")}): {r.get("error", "")}',
        '',
        '```',
        r.get('output_tail', '').strip()[-1500:],
        '```',
      ]
    lines.append('')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help='tiny settings everywhere')
  parser.add_argument('--with-demo', action='store_true', help="also the demo run's RSS")
  parser.add_argument('--models', default=None, help='default: every available model')
  parser.add_argument('--steps', type=int, default=2)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--skip', default='', help='comma-separated scripts not to run')
  parser.add_argument('--sides', default='', help='train-step sides (default: all three)')
  args = parser.parse_args(argv)
  device = bench_train_step.device_name(os.cpu_count())
  json_path = bench_train_step.RESULTS / f'{device}.json'
  ts_args = ['--steps', str(args.steps), '--rounds', str(args.rounds), '--out', str(json_path)]
  ts_args += ['--models', args.models] if args.models else []
  ts_args += ['--sides', args.sides] if args.sides else []
  ts_args += ['--quick'] if args.quick else []
  ts_args += ['--with-demo'] if args.with_demo else []
  results = {
    'date': datetime.datetime.now().isoformat(timespec='seconds'),
    'device': device,
    'command': ' '.join(['python -m benchmarks.run_all'] + sys.argv[1:]),
  }
  skip = set(args.skip.split(','))
  if 'bench_train_step' not in skip:
    results['train_step'] = bench_train_step.main(ts_args)
  else:
    results['train_step'] = bench_train_step.load_results(json_path)['train_step']
  for name in OTHERS:
    if name in skip or not (REPO / 'benchmarks' / f'{name}.py').exists():
      continue
    print(f'running {name} ...', flush=True)
    results[name] = run_script(name, args.quick)
    status = 'ok' if results[name].get('ok') else 'failed'
    print(f'  {name}: {status} ({results[name].get("wall_s", 0):.0f} s)', flush=True)
  bench_train_step.write_results(json_path, results)
  md_path = json_path.with_suffix('.md')
  md_path.write_text(markdown(results))
  print(f'wrote {json_path} and {md_path}')


if __name__ == '__main__':
  main()
