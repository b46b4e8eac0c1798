"""Draws clips (e.g. the MCC views of one sample) as rows of skeleton stick figures.

views = augment.make_views(key, x, n, aug=cfg.augment, layout=layout, frames=50)
plot_views.render_views(views, layout, 'views.png', every=5)   # sample 0 of the batch
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skeljax import skeleton  # noqa: E402

_PERSON_COLOURS = ('tab:blue', 'tab:red', 'tab:green', 'tab:purple')
_ROW_ORDER = ('anchor', 'positive', 'negative', 'interp_input', 'interp_target')


def render_views(views, layout, path, *, every: int = 5, sample: int = 0, dpi: int = 80) -> str:
  """Saves a PNG with one row per clip and one column every `every` frames.

  Args:
    views: dict name -> array [M, T, V, C] (a clip) or [B, M, T, V, C] (a batch,
      of which `sample` is drawn). Other entries (speeds, masks) are skipped, except
      that an 'interp_mask' ([T] or [B, T]) greys out the dropped frames of 'interp_input'.
    layout: skeleton.Layout or its name; its edges are drawn, x-y projection. The y
      axis points down for layouts in image coordinates (not layout.y_up).
    path: output .png path (folders are created).
  Returns:
    path.
  """
  layout = skeleton.get_layout(layout) if isinstance(layout, str) else layout
  if every < 1:
    raise ValueError(f'every must be >= 1, got {every}')
  clips = {}
  known = [k for k in _ROW_ORDER if k in views]
  for name in known + sorted(set(views) - set(known)):
    value = views[name]
    value = np.asarray(value)
    if value.ndim == 5:
      value = value[sample]
    if value.ndim == 4:
      if value.shape[2] != layout.num_joints:
        raise ValueError(
          f'{name}: {value.shape[2]} joints but layout {layout.name} has {layout.num_joints}'
        )
      clips[name] = value
  if not clips:
    raise ValueError('render_views: no [M, T, V, C] or [B, M, T, V, C] arrays in views')
  dropped = views.get('interp_mask')
  if dropped is not None:
    dropped = np.asarray(dropped)
    dropped = dropped[sample] if dropped.ndim == 2 else dropped

  frames = max(c.shape[1] for c in clips.values())
  cols = list(range(0, frames, every))
  fig, axes = plt.subplots(
    len(clips), len(cols), figsize=(1.3 * len(cols), 1.6 * len(clips)), squeeze=False
  )
  for row, (name, clip) in enumerate(clips.items()):
    xy = clip[..., :2]
    present = np.any(clip != 0, axis=-1)  # [M, T, V]
    pts = xy[present] if present.any() else np.zeros((1, 2))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.1 * max(float((hi - lo).max()), 1e-3)
    for col, t in enumerate(cols):
      ax = axes[row, col]
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_aspect('equal')
      ax.set_xlim(lo[0] - pad, hi[0] + pad)
      ax.set_ylim(lo[1] - pad, hi[1] + pad)
      if not layout.y_up:
        ax.invert_yaxis()
      if col == 0:
        ax.set_ylabel(name, fontsize=8)
      if row == 0:
        ax.set_title(f't={t}', fontsize=7)
      if t >= clip.shape[1]:
        continue
      grey = name == 'interp_input' and dropped is not None and dropped[t] > 0
      for m in range(clip.shape[0]):
        if not present[m, t].any():
          continue
        colour = 'lightgrey' if grey else _PERSON_COLOURS[m % len(_PERSON_COLOURS)]
        for a, b in layout.edges:
          if present[m, t, a] and present[m, t, b]:
            ax.plot(xy[m, t, [a, b], 0], xy[m, t, [a, b], 1], color=colour, lw=1)
        ax.scatter(xy[m, t, present[m, t], 0], xy[m, t, present[m, t], 1], s=2, color=colour)
  fig.tight_layout()
  folder = os.path.dirname(os.fspath(path))
  if folder:
    os.makedirs(folder, exist_ok=True)
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  return path
