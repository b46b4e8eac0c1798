"""The pretraining curves plot: which metric goes on which panel of the grid."""

from skeljax import plots


def _records(**extra):
  out = []
  for step in (10, 20, 30):
    r = {'stage': 'pretrain', 'step': step, 'loss': 5.0 - step / 10, 'nce': 4.0, 'acc': 0.1}
    r.update(lr=1e-3, momentum=0.99, elapsed_s=step * 2.0, samples_per_s=50.0, nn_active=0.0)
    r.update({k: v(step) for k, v in extra.items()})
    out.append(r)
  out[-1].update(knn1=40.0, knn20=45.0)  # the monitor logs only some steps
  return out


def test_mcc_metrics_get_their_own_panels_and_bookkeeping_shares_one():
  records = _records(
    broken=lambda s: 0.6,
    neg_win=lambda s: 0.4,
    interp=lambda s: 1.0,
    extra=float,
    nce_batch=lambda s: 3.9,
    acc_batch=lambda s: 0.2,
  )
  panels = {title: keys for title, keys, _ in plots.curve_panels(records)}
  assert panels['loss'] == ('loss', 'nce')
  assert panels['instance accuracy'] == ('acc', 'acc_batch')
  assert panels['in-batch InfoNCE (same-step keys)'] == ('nce_batch',)
  assert panels['kNN monitor (top-1 %)'] == ('knn1', 'knn20')
  assert panels['broken clip: neg_win (chance 0.5)'] == ('neg_win',)
  assert panels['interpolation / linear fill'] == ('interp',)
  assert panels['extra'] == ('extra',)  # a metric nobody listed still gets drawn
  assert list(panels)[-1] == 'lr, momentum' and panels['lr, momentum'] == ('lr', 'momentum')
  drawn = [k for keys in panels.values() for k in keys]
  assert len(drawn) == len(set(drawn))  # every metric on one panel only
  assert not {'elapsed_s', 'samples_per_s', 'nn_active', 'step'} & set(drawn)


def test_contrastive_run_draws_no_empty_panels_and_no_duplicate_nce(tmp_path):
  records = [dict(r, nce=r['loss']) for r in _records()]
  panels = plots.curve_panels(records)
  assert [t for t, _, _ in panels] == [
    'loss',
    'instance accuracy',
    'kNN monitor (top-1 %)',
    'lr, momentum',
  ]
  assert panels[0][1] == ('loss',)  # nce equals the loss everywhere: drawn once
  path = plots.training_curves(records, str(tmp_path / 'c.png'), 'pretrain')
  assert path and (tmp_path / 'c.png').stat().st_size > 10_000
  assert plots.training_curves([], str(tmp_path / 'none.png'), 'x') is None


def test_the_in_batch_read_of_an_in_batch_only_run_is_not_drawn_twice():
  # mcc.queue_negatives=False: the trained loss is the in-batch read itself.
  records = _records(nce_batch=lambda s: 4.0, acc_batch=lambda s: 0.1)
  panels = {title: keys for title, keys, _ in plots.curve_panels(records)}
  assert panels['instance accuracy'] == ('acc',)
  assert 'in-batch InfoNCE (same-step keys)' not in panels
  # Where they differ anywhere, both are drawn.
  records[1]['nce_batch'] = 3.0
  assert 'in-batch InfoNCE (same-step keys)' in {t for t, _, _ in plots.curve_panels(records)}


def test_study_curves_keep_each_rows_colour_on_every_panel(tmp_path, monkeypatch):
  # Only the later rows log `broken` / `interp`: their lines must not take the first rows'
  # colours there, and the legend lists every row once.
  line = [(10, 1.0), (20, 0.5)]
  curves = {
    'mcc': {'nce': line, 'knn1': line},
    'contrastive': {'nce': line},
    'neg_rank': {'nce': line, 'broken': line},
    'interp_span': {'nce': line, 'interp': line},
  }
  figs = []
  monkeypatch.setattr(plots, '_save', lambda fig, path: figs.append(fig) or path)
  plots.study_curves(curves, ('nce', 'knn1', 'broken', 'interp'), str(tmp_path / 's.png'), 't')
  (fig,) = figs
  colour = {}
  for ax in fig.axes:
    for ln in ax.get_lines():
      assert colour.setdefault(ln.get_label(), ln.get_color()) == ln.get_color(), ax.get_title()
  assert set(colour) == set(curves) and len(set(colour.values())) == len(curves)
  assert [t.get_text() for t in fig.legends[0].get_texts()] == list(curves)
  assert [ax.get_title() for ax in fig.axes] == ['nce', 'knn1', 'broken', 'interp']
