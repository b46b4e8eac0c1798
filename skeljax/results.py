"""results.json / results.md: one entry per stage, plus the run's protocol.

Schema (fixed; scripts read it):
  {"stages": {"<stage>": {"top1": .., "top5": .., "n_train": .., "n_test": .., "init": .., ...},
              "pretrain": {"final_loss": .., "steps": .., ...}},
   "protocol": {"dataset", "split", "frames", "batch_size", "epochs", "seed", "encoder",
                "objective"},
   "device": "...", "wall_s": ...}
Accuracies are percentages.
"""

from __future__ import annotations

import json
import os

_WALL = 'wall_s'


def _split(d) -> str:
  if d.val_holdout:
    return (
      f'{d.config}: validation = {d.train_split} samples with {d.val_holdout}, '
      'trained on the rest (test split unused)'
    )
  if d.val_fraction:
    return (
      f'{d.config}: validation = a fixed {d.val_fraction:g} of {d.train_split}, '
      'trained on the rest (test split unused)'
    )
  return f'{d.config}: train={d.train_split}, test={d.test_split}'


def protocol(config) -> dict:
  d = config.data
  out = {
    'dataset': d.name,
    'split': _split(d),
    'frames': d.frames,
    'batch_size': config.pretrain.batch_size,
    'epochs': config.pretrain.epochs,
    'seed': config.seed,
    'encoder': f'{config.model.name}/{config.model.size}'
    if config.model.name == 'stgcn'
    else config.model.name,
    'objective': config.objective,
  }
  if tuple(config.stages) == ('ensemble',):
    # It trains nothing: the pretraining fields would describe no run of its own. Each
    # member's protocol is its own run's (the ensemble entry lists the members).
    n = len(config.ensemble.runs)
    out.update(batch_size=None, epochs=None, objective=f'none (ensemble of {n} pretrained runs)')
  return out


class Results:
  def __init__(self, payload: dict | None = None):
    self.payload = payload or {'stages': {}, 'protocol': {}, 'device': None, _WALL: 0.0}
    self.payload.setdefault('_protocols', {})

  @classmethod
  def load(cls, workdir: str) -> Results:
    path = os.path.join(workdir, 'results.json')
    if not os.path.exists(path):
      return cls()
    with open(path) as f:
      return cls(json.load(f))

  def done(self, stage: str, proto: dict) -> bool:
    return stage in self.payload['stages'] and self.payload['_protocols'].get(stage) == proto

  def set_stage(self, name: str, entry: dict, proto: dict | None) -> None:
    self.payload['stages'][name] = entry
    if proto is not None:
      self.payload['_protocols'][name] = proto
    # Secondary entries (linear_random) share their stage's clock: count it once.
    stages = self.payload['stages']
    self.payload[_WALL] = round(
      sum(stages[n].get('wall_s', 0.0) for n in self.payload['_protocols'] if n in stages), 1
    )

  def set_run(self, protocol: dict, device: str) -> None:
    self.payload['protocol'] = protocol
    self.payload['device'] = device

  def as_dict(self) -> dict:
    return {k: v for k, v in self.payload.items() if k != '_protocols'}

  def save(self, workdir: str) -> None:
    for name, text in (
      ('results.json', json.dumps(self.payload, indent=2, default=float)),
      ('results.md', self.markdown(workdir)),
    ):
      path = os.path.join(workdir, name)
      with open(path + '.tmp', 'w') as f:
        f.write(text + '\n')
      os.replace(path + '.tmp', path)

  def markdown(self, workdir: str | None = None) -> str:
    p = self.payload
    proto = p.get('protocol', {})
    lines = [
      '# skeljax results',
      '',
      ' | '.join(f'{k}: {v}' for k, v in proto.items() if v is not None),
      '',
      f'device: {p.get("device")}; wall: {p.get(_WALL)} s',
      '',
      '| stage | top-1 % | top-5 % | n_train | n_test | init | details |',
      '|---|---|---|---|---|---|---|',
    ]
    for name, e in p['stages'].items():
      if name == 'pretrain':
        rate = e.get('samples_per_s')
        details = (
          f'final loss {e.get("final_loss", float("nan")):.4f}, {e.get("steps")} steps, '
          + (f'{rate:.1f} samples/s' if rate else 'samples/s n/a (only the compiling step ran)')
        )
        lines.append(f'| pretrain | | | | | | {details} |')
        continue
      details = ', '.join(
        f'{k}={e[k]}' for k in ('epochs', 'batch_size', 'lr', 'encoder') if k in e
      )
      if 'k' in e:
        details = ', '.join(f'k={k}: {e[f"k{k}"]["top1"]:.1f}' for k in e['k'])
      if 'members' in e:  # the ensemble: each member's own top-1
        details = ', '.join(f'{m["stream"]} {m["top1"]:.1f}' for m in e['members'])
      lines.append(
        f'| {name} | {e.get("top1", float("nan")):.2f} | '
        f'{e.get("top5", float("nan")):.2f} | {e.get("n_train", "")} | '
        f'{e.get("n_test", "")} | {_short(e.get("init", ""), workdir)} | {details} |'
      )
    figures = [(n, k, e[k]) for n, e in p['stages'].items() for k in e if k.endswith('_png')]
    if figures:
      lines += ['', '## Figures', '']
      for name, kind, path in figures:
        rel = os.path.relpath(path, workdir) if workdir else path
        lines.append(f'- {name} {kind[:-4]}: ![{name} {kind[:-4]}]({rel})')
    return '\n'.join(lines)


def _short(init: str, workdir: str | None) -> str:
  if workdir and init.startswith(workdir):
    return os.path.relpath(init, workdir)
  return init
