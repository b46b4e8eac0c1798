"""PNG figures written next to results: curves, confusion matrices, feature maps, studies."""

from __future__ import annotations

import os

import matplotlib
import matplotlib.lines
import matplotlib.ticker

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=100, bbox_inches='tight')
  plt.close(fig)
  os.replace(tmp, path)
  return path


# The curves plot's panels: (title, metrics drawn together, reference line or None). Any
# other numeric metric gets a panel of its own; BOOKKEEPING shares one small panel.
CURVE_PANELS = (
  ('loss', ('loss', 'nce'), None),
  ('instance accuracy', ('acc', 'acc_batch', 'acc_speed_clip'), None),
  ('in-batch InfoNCE (same-step keys)', ('nce_batch',), None),
  ('kNN monitor (top-1 %)', ('knn1', 'knn20'), None),
  ('broken clip: loss', ('broken',), None),
  ('broken clip: neg_win (chance 0.5)', ('neg_win',), 0.5),
  ('interpolation / linear fill', ('interp',), 1.0),
  ('speed head: loss', ('speed',), None),
  ('speed head: accuracy', ('speed_acc',), None),
)
BOOKKEEPING = ('lr', 'momentum')
NOT_DRAWN = ('stage', 'step', 'samples_per_s', 'elapsed_s', 'nn_active')


def curve_panels(records: list[dict]) -> list[tuple[str, tuple[str, ...], float | None]]:
  """The panels training_curves draws for these records, in order; empty ones left out."""
  present = []
  for r in records:  # every metric any record has (the kNN monitor logs only some steps)
    present += [k for k, v in r.items() if k not in present and isinstance(v, int | float)]
  # A metric equal to another at every logged step is drawn once: the loss that is
  # InfoNCE alone, and the in-batch read of a run whose only negatives are in-batch
  # (mcc.queue_negatives=False).
  for twin, of in (('nce', 'loss'), ('nce_batch', 'nce'), ('acc_batch', 'acc')):
    if all(r.get(twin) == r.get(of) for r in records):
      present = [k for k in present if k != twin]
  panels, placed = [], set(NOT_DRAWN) | set(BOOKKEEPING)
  for title, keys, ref in CURVE_PANELS:
    keys = tuple(k for k in keys if k in present)
    if keys:
      panels.append((title, keys, ref))
      placed.update(keys)
  panels += [(k, (k,), None) for k in present if k not in placed]
  book = tuple(k for k in BOOKKEEPING if k in present)
  if book:
    panels.append(('lr, momentum', book, None))
  return panels


def training_curves(records: list[dict], path: str, title: str) -> str | None:
  """A grid of a stage's metrics against step (curve_panels): the loss parts, instance
  accuracy, the kNN monitor and each MCC signal on their own panels; lr and momentum
  share one small panel (momentum on the right axis)."""
  panels = curve_panels(records)
  if not panels:
    return None
  cols = min(3, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
  for ax in axes.flat[len(panels) :]:
    ax.set_visible(False)
  for ax, (name, keys, ref) in zip(axes.flat, panels, strict=False):
    for i, k in enumerate(keys):
      have = [r for r in records if r.get(k) is not None]
      steps, values = [r['step'] for r in have], [r[k] for r in have]
      marker = '.' if len(have) < 30 else None
      if k == 'momentum' and len(keys) > 1:  # a different scale: its own axis
        twin = ax.twinx()
        twin.plot(steps, values, color='tab:gray', linestyle='--')
        twin.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter('%.4f'))
        if max(values) - min(values) < 1e-4:  # a constant EMA: a readable window around it
          twin.set_ylim(values[0] - 1e-3, values[0] + 1e-3)
        twin.set_ylabel('momentum (dashed)', color='tab:gray', fontsize=8)
        continue
      ax.plot(steps, values, marker=marker, label=k, color=f'C{i}')
    if ref is not None:
      ax.axhline(ref, color='k', linewidth=0.8, linestyle=':')
    if len([k for k in keys if k != 'momentum']) > 1:
      ax.legend(fontsize=8, loc='best')
    ax.set_title(name, fontsize=10)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  return _save(fig, path)


def confusion_matrix(cm: np.ndarray, names, path: str, title: str) -> str:
  k = cm.shape[0]
  size = min(2 + 0.35 * k, 24)
  fig, ax = plt.subplots(figsize=(size, size))
  norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
  ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
  if k <= 30:
    ax.set_xticks(range(k), [str(n)[:18] for n in names], rotation=90, fontsize=7)
    ax.set_yticks(range(k), [str(n)[:18] for n in names], fontsize=7)
    for i in range(k):
      for j in range(k):
        if cm[i, j]:
          ax.text(
            j,
            i,
            int(cm[i, j]),
            ha='center',
            va='center',
            fontsize=6,
            color='white' if norm[i, j] > 0.5 else 'black',
          )
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(title)
  return _save(fig, path)


def feature_map(features: np.ndarray, labels: np.ndarray, names, path: str, title: str) -> str:
  """Test features projected on their first two principal components, by class."""
  f = features - features.mean(axis=0)
  _, _, vt = np.linalg.svd(f, full_matrices=False)
  xy = f @ vt[:2].T
  fig, ax = plt.subplots(figsize=(6, 5))
  cmap = plt.get_cmap('tab20' if len(names) > 10 else 'tab10')
  for c in np.unique(labels):
    m = labels == c
    ax.scatter(xy[m, 0], xy[m, 1], s=8, color=cmap(int(c) % cmap.N), label=str(names[c])[:18])
  if len(names) <= 20:
    ax.legend(fontsize=6, markerscale=2, loc='best')
  ax.set_title(title + ' (PCA)')
  return _save(fig, path)


def study_bars(rows: list[dict], path: str, title: str) -> str:
  """rows: {'name', 'mean', 'std'} in percent; one bar each."""
  fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 3.5))
  ax.bar(
    range(len(rows)),
    [r['mean'] for r in rows],
    yerr=[r.get('std', 0) for r in rows],
    capsize=4,
    color='tab:blue',
  )
  ax.set_xticks(range(len(rows)), [r['name'] for r in rows], rotation=30, ha='right')
  ax.set_ylabel('top-1 (%)')
  ax.set_title(title)
  return _save(fig, path)


def study_curves(curves: dict[str, dict], metrics, path: str, title: str) -> str:
  """curves: {row: {metric: [(step, value), ...]}}; one panel per metric, a line per row.

  A row keeps its colour on every panel, also on panels where earlier rows have no line (the
  broken clip's or the interpolation's term), and one legend lists every row.
  """
  shown = [k for k in metrics if any(k in c for c in curves.values())]
  palette = plt.get_cmap('tab10' if len(curves) <= 10 else 'tab20')
  colors = {row: palette(i % palette.N) for i, row in enumerate(curves)}
  ncols = len(shown) if len(shown) <= 4 else -(-len(shown) // 2)  # more than 4: two rows
  nrows = -(-len(shown) // ncols)
  fig, axes = plt.subplots(
    nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows + 0.4), squeeze=False, layout='constrained'
  )
  for ax in axes.flat[len(shown) :]:
    fig.delaxes(ax)
  for ax, k in zip(axes.flat, shown, strict=False):
    for row, c in curves.items():
      if c.get(k):
        steps, values = zip(*c[k], strict=True)
        ax.plot(steps, values, color=colors[row], label=row)
    ax.set_title(k)
    ax.set_xlabel('step')
  handles = [matplotlib.lines.Line2D([], [], color=colors[row], label=row) for row in curves]
  fig.legend(handles=handles, loc='outside right upper', fontsize=7)
  fig.suptitle(title)
  return _save(fig, path)
