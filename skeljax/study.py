"""The MCC study: MCC against its baseline and ablations, one table, several seeds.

  python -m skeljax.study --config=configs/nw_ucla.py --workdir=runs/study_nw_ucla \
      --seeds=0,1,2 [--config.pretrain.epochs=60 ...]

Each row is an ordinary `train_and_evaluate` run in <workdir>/<row>/seed<k>, so
a killed study resumes where it stopped and finished runs are skipped. Rows:

  mcc               MCC pretrain -> linear
  contrastive       SkeletonCLR baseline (same epochs) -> linear
  no_negative       MCC without the motion-broken negative -> linear (= contrastive while
                    the broken clip is MCC's only part on by default)
  no_interp         MCC without interpolation -> linear (= mcc while interpolation is off)
  speed_only        MCC's speed positive alone (no negative, no interpolation) -> linear;
                    only with --rows (the proxy study in docs/results.md has it)
  no_speed          MCC with a same-speed positive (its own crop, as the baseline's) -> linear
                    (= mcc since issue #29: the default leaves the speed positive off)
  speed_positive    MCC with the speed-changed positive (the default before issue #29)
  neg_shuffle       MCC with the segment-shuffled clip as its broken negative -> linear
  neg_reverse       MCC with the time-reversed clip as its broken negative -> linear
  Issue #29's old forms against the new defaults:
  speed_clip        the old speed window (its own crop x speed, clipped: held edge frames)
  neg_rank          the old broken clip (the positive's window, rank loss in the
                    contrastive space) instead of the anchor's twin as a DSM hard negative
  interp_stride     the old interpolation (every 2nd frame dropped, deep features,
                    positions) switched on
  interp_span       the new interpolation (4-8-frame spans, full-rate features, motion) on
  Issue #29's other forms, each against the speed_positive row (only with --rows; each
  speed form switches the speed positive on):
  speed_fit         the fitted speed window (no held frames, the exact relative speed)
  speed_gentle      log-uniform speeds in [0.7, 1.43] instead of {0.5, 2}
  speed_indep       anchor and positive at independent speeds (in fitted windows)
  speed_rsp         RSPNet: same-speed and speed clip both positive + relative-speed head
  speed_class       a speed-class head (playback-rate prediction)
  speed_pace        the same-speed clip the only positive, the speed clip in a speed-class
                    head alone (pace prediction beside a speed-agnostic instance task)
  speed_noise       Gaussian noise (1 cm) on every view right after resampling
  neg_twin          the anchor's twin through the old rank loss
  neg_late          the broken clip's loss on from half the run (curriculum)
  mcc_semi, contrastive_semi, speed_positive_semi, scratch_semi
                    semi-supervised fine-tune on the config's label fractions (semi.fractions,
                    1% and 10%) from row mcc's / contrastive's / speed_positive's encoder /
                    random init, on the same class-balanced subsets (drawn from the seed)
  contrastive_time  the baseline given MCC's pretraining wall time (more epochs: the
                    ratio of the two rows' fastest runs over the seeds) -> linear
  random            random-init encoder -> linear
  scratch           supervised from random init
  mcc_finetune      MCC's encoder (row mcc) fine-tuned end to end
  contrastive_motion, contrastive_bone, mcc_motion, mcc_bone
                    the row pretrained on the motion / bone stream (data.stream) -> linear
  contrastive_2s, mcc_2s   the joint + motion ensemble of those rows' encoders (stage
                    `ensemble`: each stream's probe, softmax probabilities summed)
  contrastive_3s, mcc_3s   joint + motion + bone, the field's "3s" number
  The stream and ensemble rows run only with --rows; an ensemble row needs its members.

A row that trains what row mcc or row contrastive trains (neg_reverse while the default
negative is the reversed clip; no_speed while the speed positive is off; MCC with every part
off is the baseline) is not trained twice: the table lists it as "neg_reverse (= mcc)".
Every pretraining row also reports kNN. The table (mean ± std over seeds of
top-1, kNN-1, pretrain wall time, and top-1 on the time-reversed class pairs of
`config.data.reversed_pairs` apart from the other classes) goes to
<workdir>/study.md and study.json, with a bar chart in <workdir>/study.png. The
pretraining curves (InfoNCE, instance accuracy, the broken-clip term and how often the
broken clip wins, the interpolation loss, the kNN monitor; each logged value an average
over its logging interval) go to <workdir>/study_curves.png, mean over seeds per row, and
their last interval to a second table.

`--report_only` trains nothing: it writes the table and the curves from the finished runs
in --workdir (a study still in progress, or the run files committed under docs/study/) and
names each row and seed that has no finished run.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Base config file[:arg].')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Study folder.')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds, comma-separated.')
_ROWS = flags.DEFINE_list('rows', None, 'Rows to run (default: every row but speed_only).')
_REPORT_ONLY = flags.DEFINE_bool(
  'report_only',
  False,
  'Train nothing: write the table and curves from the finished runs in --workdir and list '
  'the rows and seeds that have none (a study in progress, or committed run files).',
)

# The speed positive is off by default since issue #29 (docs/results.md): the rows that
# measure a speed form switch it back on.
SPEED = {'mcc.speed_positive': True}
PRETRAIN_ROWS = {
  'mcc': {},
  'contrastive': {'objective': 'contrastive'},
  'no_negative': {'mcc.broken_negative': False},
  'no_interp': {'mcc.interpolation': False},
  'speed_only': {**SPEED, 'mcc.broken_negative': False, 'mcc.interpolation': False},
  'no_speed': {'mcc.speed_positive': False},
  'speed_positive': SPEED,
  'neg_shuffle': {'augment.negative': 'segment_shuffle'},
  'neg_reverse': {'augment.negative': 'reverse'},
  'speed_fit': {**SPEED, 'augment.speed_fit': 'fit'},
  'speed_gentle': {**SPEED, 'augment.speed_range': (0.7, 1.43)},
  'speed_indep': {**SPEED, 'augment.speed_fit': 'fit', 'augment.independent_speeds': True},
  'speed_rsp': {**SPEED, 'mcc.speed_form': 'both', 'mcc.speed_head': 'relative'},
  'speed_class': {**SPEED, 'mcc.speed_head': 'classify'},
  'speed_pace': {**SPEED, 'mcc.speed_form': 'head', 'mcc.speed_head': 'classify'},
  'speed_noise': {**SPEED, 'augment.resample_noise_std': 0.01},
  'speed_clip': {**SPEED, 'augment.speed_fit': 'clip'},
  'neg_rank': {'augment.negative_source': 'positive', 'mcc.negative_loss': 'rank'},
  'interp_stride': {'mcc.interpolation': True},
  'interp_span': {
    'mcc.interpolation': True,
    'augment.interp_drop': 'span',
    'mcc.decoder_tap': 'full',
    'mcc.interp_target': 'motion',
  },
  'neg_twin': {'augment.negative_source': 'anchor_twin', 'mcc.negative_loss': 'rank'},
  'neg_late': {'mcc.negative_start': 0.5},
}
# Issue #29's rows: run only when named in --rows.
FORM_ROWS = (
  'speed_fit',
  'speed_gentle',
  'speed_indep',
  'speed_rsp',
  'speed_class',
  'speed_pace',
  'speed_noise',
  'neg_twin',
  'neg_late',
)
# Semi-supervised rows: the encoder each fine-tunes on the label fractions ('' = random).
SEMI_ROWS = {
  'mcc_semi': 'mcc',
  'contrastive_semi': 'contrastive',
  'speed_positive_semi': 'speed_positive',
  'scratch_semi': '',
}
STREAM_ROWS = {
  f'{objective}_{stream}': {**PRETRAIN_ROWS[objective], 'data.stream': stream}
  for objective in ('mcc', 'contrastive')
  for stream in ('motion', 'bone')
}
PRETRAIN_ROWS.update(STREAM_ROWS)
# Ensemble rows: the member rows whose encoders (same seed) the `ensemble` stage fuses.
ENSEMBLE_ROWS = {
  f'{objective}_{name}': (objective, *(f'{objective}_{s}' for s in streams))
  for objective in ('mcc', 'contrastive')
  for name, streams in (('2s', ('motion',)), ('3s', ('motion', 'bone')))
}
ROWS = (
  *PRETRAIN_ROWS,
  'contrastive_time',
  'random',
  'scratch',
  'mcc_finetune',
  *ENSEMBLE_ROWS,
  *SEMI_ROWS,
)
# Rows a study without --rows runs: every row but speed_only (no-negative and
# no-interpolation bracket it; it costs three more pretrainings), the stream rows and
# issue #29's form rows.
DEFAULT_ROWS = tuple(
  r
  for r in ROWS
  if r != 'speed_only' and r not in STREAM_ROWS and r not in ENSEMBLE_ROWS and r not in FORM_ROWS
)
# What a semi row's table gives per labelled fraction: record key `semi_<field>`.
SEMI_FIELDS = ('top1', 'reversed_pairs_top1', 'other_classes_top1')
# Pretraining metrics the study follows (those a row logs).
CURVE_METRICS = ('nce', 'acc', 'knn1', 'broken', 'neg_win', 'interp', 'speed_acc')


def _set(config, dotted: str, value) -> None:
  section, _, field = dotted.rpartition('.')
  (config[section] if section else config)[field] = value


def row_config(base, row: str, seed: int, workdir: str, time_epochs: int | None = None):
  """The config of one study row; `workdir` is the study folder."""
  c = base.copy_and_resolve_references()
  c.seed = seed
  c.random_reference = False
  if row in PRETRAIN_ROWS:
    c.stages = ('pretrain', 'linear', 'knn')
    for k, v in PRETRAIN_ROWS[row].items():
      _set(c, k, v)
  elif row == 'contrastive_time':
    c.stages = ('pretrain', 'linear', 'knn')
    c.objective = 'contrastive'
    c.pretrain.epochs = time_epochs
  elif row == 'random':
    c.stages = ('linear', 'knn')
    c.init_from = 'random'
  elif row == 'scratch':
    c.stages = ('scratch',)
  elif row == 'mcc_finetune':
    c.stages = ('finetune',)
    c.init_from = os.path.join(workdir, 'mcc', f'seed{seed}')
  elif row in SEMI_ROWS:
    c.stages = ('semi',)
    src = SEMI_ROWS[row]
    c.init_from = os.path.join(workdir, src, f'seed{seed}') if src else 'random'
  elif row in ENSEMBLE_ROWS:
    c.stages = ('ensemble',)
    c.ensemble.runs = tuple(os.path.join(workdir, m, f'seed{seed}') for m in ENSEMBLE_ROWS[row])
  else:
    raise ValueError(f'unknown study row {row!r}; rows are {", ".join(ROWS)}')
  return c


def _trained(config) -> dict:
  """What a pretraining row trains: its config with MCC's switches as the step reads them
  (`pretrain.switches`: the baseline is MCC with every part off)."""
  from skeljax import pretrain

  d = config.to_dict()
  d['mcc'].update(pretrain.switches(config))
  d['objective'] = 'mcc'
  return d


def row_aliases(base, rows) -> dict[str, str]:
  """Pretraining rows that train what row mcc or row contrastive trains: {row: that row}.

  E.g. `neg_reverse` when the default negative is the reversed clip, `no_speed` while
  the speed positive is off, `no_negative` when the broken clip is MCC's only part left
  on. They are not trained again; the table shows the reused row's runs under their name.
  """
  refs = {ref: _trained(row_config(base, ref, 0, '')) for ref in ('mcc', 'contrastive')}
  out = {}
  for r in rows:
    if r not in PRETRAIN_ROWS or r in refs:
      continue
    mine = _trained(row_config(base, r, 0, ''))
    same = [ref for ref, d in refs.items() if d == mine]
    if same:
      out[r] = same[0]
  # A semi-supervised row whose encoder row is reused is that row's semi row.
  semi_of = {src: row for row, src in SEMI_ROWS.items() if src}
  for r in rows:
    if SEMI_ROWS.get(r) in out:
      out[r] = semi_of[out[SEMI_ROWS[r]]]
  return out


def _load(path: str) -> dict | None:
  """A finished run's results.json; None where the run has none yet."""
  from skeljax import config as config_lib

  file = os.path.join(path, 'results.json')
  try:
    with open(file) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except json.JSONDecodeError as e:
    raise config_lib.ConfigError(f'{file} is not valid JSON ({e.msg}, line {e.lineno})') from e


def equal_time_epochs(mcc: list[dict], contrastive: list[dict], epochs: int) -> int:
  """Baseline epochs that cost MCC's pretraining wall time, from the measured stages.

  The ratio is that of each row's fastest finished run over all seeds: on a shared
  machine load only ever adds time, so the fastest run is the closest to the step's
  own cost, and every seed's equal-time row trains the same number of epochs.
  """
  fastest = lambda runs: min(r['stages']['pretrain']['stage_wall_s'] for r in runs)
  # pretrain.epochs=0 is derived from the data: the baseline's runs record what it became.
  epochs = epochs or contrastive[0]['stages']['pretrain']['epochs']
  return max(epochs, round(epochs * fastest(mcc) / fastest(contrastive)))


def _stat(values: list[float]) -> dict:
  values = [v for v in values if v is not None and math.isfinite(v)]
  if not values:
    return {'mean': None, 'std': None, 'n': 0}
  return {
    'mean': float(np.mean(values)),
    'std': float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
    'n': len(values),
  }


def pretrain_curves(run_dir: str) -> dict[str, list[tuple[int, float]]]:
  """{metric: [(step, value), ...]} of one run's pretraining log, for CURVE_METRICS.

  A step logged twice (a resumed run re-logs nothing, but a hand-copied log might) keeps
  its last record. Missing log: {}.
  """
  by_step = {}
  try:
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
      for line in f:
        rec = json.loads(line)
        if rec.get('stage') == 'pretrain':
          by_step[rec['step']] = rec
  except FileNotFoundError:
    return {}
  steps = sorted(by_step)
  curves = {k: [(s, float(by_step[s][k])) for s in steps if k in by_step[s]] for k in CURVE_METRICS}
  return {k: v for k, v in curves.items() if v}


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
  """The mean over seeds at the steps every seed logged."""
  if not curves:
    return []
  common = set.intersection(*(set(s for s, _ in c) for c in curves))
  values = [dict(c) for c in curves]
  return [(s, float(np.mean([v[s] for v in values]))) for s in sorted(common)]


def summarize(workdir: str, rows, seeds, aliases: dict | None = None) -> list[dict]:
  """One record per row: mean/std of top-1, kNN-1 and pretraining wall time over seeds.

  `aliases` maps a row to the row whose runs it reuses (see row_aliases).
  """
  aliases = aliases or {}
  out = []
  for row in rows:
    src = aliases.get(row, row)
    dirs = [os.path.join(workdir, src, f'seed{s}') for s in seeds]
    dirs = [d for d in dirs if _load(d)]  # finished runs only
    runs = [_load(d) for d in dirs]
    if not runs:
      continue
    main = {'scratch': 'scratch', 'mcc_finetune': 'finetune'}.get(row, 'linear')
    if row in ENSEMBLE_ROWS:
      main = 'ensemble'
    if row in SEMI_ROWS:
      main = 'semi'
    semi = {field: {} for field in SEMI_FIELDS}
    for r in runs:
      for frac, res in r['stages'].get('semi', {}).get('fractions', {}).items():
        for field in SEMI_FIELDS:
          semi[field].setdefault(frac, []).append(res.get(field))
    top1 = [r['stages'].get(main, {}).get('top1') for r in runs]
    knn1 = [r['stages'].get('knn', {}).get('k1', {}).get('top1') for r in runs]
    wall = [r['stages'].get('pretrain', {}).get('stage_wall_s') for r in runs]
    pairs = [r['stages'].get(main, {}).get('reversed_pairs_top1') for r in runs]
    others = [r['stages'].get(main, {}).get('other_classes_top1') for r in runs]
    seed_curves = [c for c in (pretrain_curves(d) for d in dirs) if c]
    curves = {
      k: mean_curve([c[k] for c in seed_curves])
      for k in CURVE_METRICS
      if seed_curves and all(k in c for c in seed_curves)
    }
    last = {k: _stat([c[k][-1][1] for c in seed_curves]) for k in curves}
    first = runs[0]
    out.append(
      {
        'row': row if src == row else f'{row} (= {src})',
        'protocol': main,
        'top1': _stat(top1),
        'knn1': _stat(knn1),
        'pretrain_wall_s': _stat(wall),
        'reversed_pairs_top1': _stat(pairs),
        'other_classes_top1': _stat(others),
        **{
          f'semi_{field}': {f: _stat(v) for f, v in sorted(d.items(), key=lambda kv: float(kv[0]))}
          for field, d in semi.items()
        },
        'pretrain_last': last,
        'pretrain_curves': curves,
        'pretrain_epochs': first['stages'].get('pretrain', {}).get('epochs'),
        'seeds': [r['protocol']['seed'] for r in runs],
        'device': first['device'],
      }
    )
  return out


def _fmt(s: dict, digits: int = 1) -> str:
  if s['mean'] is None:
    return ''
  if s['n'] > 1:
    return f'{s["mean"]:.{digits}f} ± {s["std"]:.{digits}f}'
  return f'{s["mean"]:.{digits}f}'


def markdown(records: list[dict], base) -> str:
  d = base.data
  lines = [
    f'# Study: {d.name}/{d.config}, T={d.frames}, {base.model.name}/{base.model.size}, '
    f'pretrain batch {base.pretrain.batch_size}, linear {base.linear.epochs} epochs',
    '',
    '| row | protocol | top-1 % | kNN-1 % | reversed pairs top-1 % | other classes top-1 % '
    '| pretrain epochs | pretrain wall s | seeds |',
    '|---|---|---|---|---|---|---|---|---|',
  ]
  for r in records:
    lines.append(
      f'| {r["row"]} | {r["protocol"]} | {_fmt(r["top1"])} | {_fmt(r["knn1"])} | '
      f'{_fmt(r["reversed_pairs_top1"])} | {_fmt(r["other_classes_top1"])} | '
      f'{r["pretrain_epochs"] or ""} | {_fmt(r["pretrain_wall_s"], 0)} | '
      f'{",".join(map(str, r["seeds"]))} |'
    )
  semi = [r for r in records if r.get('semi_top1')]
  if semi:
    fracs = sorted({f for r in semi for f in r['semi_top1']}, key=float)
    pcts = [f'{float(f) * 100:g}%' for f in fracs]
    lines += [
      '',
      'Semi-supervised fine-tuning, top-1 % on the test split by labelled fraction (the same '
      'class-balanced subsets for every row of a seed), and top-1 on the time-reversed class '
      'pairs / the other classes:',
      '',
      '| row | ' + ' | '.join(f'{p} labels | {p}: pairs / other' for p in pcts) + ' |',
      '|---|' + '---|---|' * len(fracs),
    ]
    for r in semi:
      cells = []
      for f in fracs:
        top1, pairs, other = (_fmt(r[f'semi_{k}'].get(f, _stat([]))) for k in SEMI_FIELDS)
        cells += [top1, f'{pairs} / {other}' if pairs or other else '']
      lines.append(f'| {r["row"]} | ' + ' | '.join(cells) + ' |')
  curved = [r for r in records if r.get('pretrain_last')]
  if curved:
    lines += [
      '',
      'Pretraining, last logging interval (mean ± std over seeds; `-` where the row has no '
      'such term):',
      '',
      '| row | ' + ' | '.join(CURVE_METRICS) + ' |',
      '|---|' + '---|' * len(CURVE_METRICS),
    ]
    for r in curved:
      cells = [
        _fmt(r['pretrain_last'][k], 3) if k in r['pretrain_last'] else '-' for k in CURVE_METRICS
      ]
      lines.append(f'| {r["row"]} | ' + ' | '.join(cells) + ' |')
  if records:
    lines += ['', f'device: {records[0]["device"]}']
  return '\n'.join(lines)


def run_study(
  base, workdir: str, seeds: list[int], rows=DEFAULT_ROWS, report_only: bool = False
) -> list[dict]:
  """Train every (row, seed) without a finished run, then table and plot the finished ones.

  report_only: train nothing; name each (row, seed) that has no finished run.
  """
  from skeljax import plots, run

  workdir = os.path.abspath(workdir)
  for row in rows:
    if row not in ROWS:
      raise ValueError(f'unknown study row {row!r}; rows are {", ".join(ROWS)}')
  aliases = row_aliases(base, rows)
  for row, src in aliases.items():
    print(f'study: {row} trains what row {src} trains; its runs are reused', flush=True)
  for seed in seeds:
    for row in rows:
      if row in aliases:
        continue
      if report_only:
        if not _load(os.path.join(workdir, row, f'seed{seed}')):
          print(f'study: {row}, seed {seed}: no finished run (--report_only)', flush=True)
        continue
      time_epochs = None
      if row == 'contrastive_time':
        mcc, con = (
          [r for r in (_load(os.path.join(workdir, name, f'seed{s}')) for s in seeds) if r]
          for name in ('mcc', 'contrastive')
        )
        if not (mcc and con):
          print(f'study: {row} needs finished mcc and contrastive runs; skipped', flush=True)
          continue
        time_epochs = equal_time_epochs(mcc, con, base.pretrain.epochs)
      if row == 'mcc_finetune' and not _load(os.path.join(workdir, 'mcc', f'seed{seed}')):
        print(f'study: {row} needs row mcc of seed {seed}; skipped', flush=True)
        continue
      src = SEMI_ROWS.get(row)
      if src and not _load(os.path.join(workdir, src, f'seed{seed}')):
        print(f'study: {row} needs row {src} of seed {seed}; skipped', flush=True)
        continue
      missing = [
        m for m in ENSEMBLE_ROWS.get(row, ()) if not _load(os.path.join(workdir, m, f'seed{seed}'))
      ]
      if missing:
        print(f'study: {row} needs rows {", ".join(missing)} of seed {seed}; skipped', flush=True)
        continue
      print(f'study: {row}, seed {seed}', flush=True)
      run.train_and_evaluate(
        row_config(base, row, seed, workdir, time_epochs),
        os.path.join(workdir, row, f'seed{seed}'),
      )
  records = summarize(workdir, rows, seeds, aliases)
  with open(os.path.join(workdir, 'study.json'), 'w') as f:
    json.dump(records, f, indent=2)
  with open(os.path.join(workdir, 'study.md'), 'w') as f:
    f.write(markdown(records, base) + '\n')
  bars = [
    {'name': f'{r["row"]} ({r["protocol"]})', 'mean': r['top1']['mean'], 'std': r['top1']['std']}
    for r in records
    if r['top1']['mean'] is not None
  ]
  if bars:
    plots.study_bars(bars, os.path.join(workdir, 'study.png'), f'{base.data.name} study')
  curves = {r['row']: r['pretrain_curves'] for r in records if r.get('pretrain_curves')}
  if curves:
    plots.study_curves(
      curves, CURVE_METRICS, os.path.join(workdir, 'study_curves.png'), f'{base.data.name} study'
    )
  print(markdown(records, base), flush=True)
  return records


def main(argv) -> int:
  flags.FLAGS(argv)
  if _CONFIG.value is None or _WORKDIR.value is None:
    print('skeljax: error: --config and --workdir are required', file=sys.stderr)
    return 2
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    print(f'skeljax: error: --seeds must be integers, got {_SEEDS.value}', file=sys.stderr)
    return 2
  if _REPORT_ONLY.value and not os.path.isdir(_WORKDIR.value):
    print(f'skeljax: error: --report_only: no study folder {_WORKDIR.value}', file=sys.stderr)
    return 2
  rows = tuple(_ROWS.value or DEFAULT_ROWS)
  unknown = [r for r in rows if r not in ROWS]
  if unknown:
    print(f'skeljax: error: unknown rows {unknown}; use {", ".join(ROWS)}', file=sys.stderr)
    return 2
  from skeljax import config as config_lib
  from skeljax import data

  try:
    run_study(_CONFIG.value, _WORKDIR.value, seeds, rows, report_only=_REPORT_ONLY.value)
  except (config_lib.ConfigError, data.DataError) as e:
    print(f'skeljax: error: {" ".join(str(e).split())}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
