"""Evaluation arithmetic with exact expectations: fixed logits, constructed features."""

import numpy as np
import pytest

from skeljax import evaluate, frozen, results, supervised


def test_accuracy_from_fixed_logits():
  logits = np.array(
    [
      [9, 1, 2, 3, 4, 5, 0],  # label 0 first: top1, top5
      [1, 9, 2, 3, 4, 5, 0],  # label 2 third: top5 only
      [1, 2, 3, 4, 5, 6, 9],  # label 0 is the second smallest: neither
      [0, 1, 2, 3, 4, 9, 5],  # label 6 second: top5 only
    ],
    np.float32,
  )
  labels = np.array([0, 2, 0, 6])
  acc = evaluate.accuracy(logits, labels)
  assert acc == {'top1': 25.0, 'top5': 75.0}


def test_confusion_counts():
  cm = evaluate.confusion(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
  np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])


def test_knn_on_constructed_features():
  # Two tight clusters on orthogonal axes; one test point near each, one between
  # them but closer to class 1.
  train = np.array([[1, 0.01], [1, -0.01], [0.9, 0.0], [0.01, 1], [-0.01, 1]], np.float32)
  labels = np.array([0, 0, 0, 1, 1])
  test = np.array([[1, 0.1], [0.1, 1], [0.6, 0.8]], np.float32)
  # Raw cosines (centre=False): the geometry the comments describe.
  s1 = frozen.knn_scores(train, labels, test, 2, k=1, temperature=0.1, centre=False)
  assert list(np.argmax(s1, -1)) == [0, 1, 1]
  # k = 5 uses every training point: class 0 has more votes, but the weights
  # exp(cos/0.1) still favour the nearer class 1 for the last point.
  s5 = frozen.knn_scores(train, labels, test, 2, k=5, temperature=0.1, centre=False)
  assert list(np.argmax(s5, -1)) == [0, 1, 1]
  # With a huge temperature the weights are equal: a plain majority vote -> class 0.
  s_flat = frozen.knn_scores(train, labels, test, 2, k=5, temperature=1e6, centre=False)
  assert list(np.argmax(s_flat, -1)) == [0, 0, 0]


def test_balanced_subset_is_balanced_deterministic_and_seeded():
  labels = np.repeat(np.arange(4), [10, 20, 30, 40])
  a = supervised.balanced_subset(labels, 0.1, seed=0)
  b = supervised.balanced_subset(labels, 0.1, seed=0)
  c = supervised.balanced_subset(labels, 0.1, seed=1)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert np.bincount(labels[a]).tolist() == [1, 2, 3, 4]
  # 1% of a 10-sample class still keeps one example.
  assert np.bincount(labels[supervised.balanced_subset(labels, 0.01, 0)]).tolist() == [1, 1, 1, 1]


def test_fit_linear_learns_a_separable_problem():
  import ml_collections

  from skeljax import config as config_lib

  rng = np.random.default_rng(0)
  centres = rng.standard_normal((3, 8)) * 3
  y = np.repeat(np.arange(3), 40)
  x = (centres[y] + rng.standard_normal((120, 8)) * 0.3).astype(np.float32)
  sec = config_lib.base_config().linear
  sec = ml_collections.ConfigDict(sec.to_dict())
  sec.epochs, sec.batch_size, sec.lr = 20, 16, 0.1
  clf, params = frozen.fit_linear(x, y, 3, sec, seed=0)
  logits = np.asarray(clf.apply({'params': params}, x))
  assert evaluate.accuracy(logits, y)['top1'] == pytest.approx(100.0)


def test_results_schema_and_markdown(tmp_path):
  r = results.Results()
  r.set_stage('pretrain', {'final_loss': 5.1, 'steps': 800, 'wall_s': 10.0}, {'a': 1})
  r.set_stage(
    'linear',
    {
      'top1': 71.3,
      'top5': 95.0,
      'n_train': 1020,
      'n_test': 464,
      'init': str(tmp_path / 'encoder'),
      'wall_s': 2.0,
    },
    {'b': 1},
  )
  r.set_stage('linear_random', {'top1': 40.1, 'top5': 80.0, 'init': 'random'}, None)
  r.set_run(
    {
      'dataset': 'x',
      'split': 's',
      'frames': 50,
      'batch_size': 128,
      'epochs': 1,
      'seed': 0,
      'encoder': 'stgcn/small',
      'objective': 'mcc',
    },
    'cpu',
  )
  r.save(str(tmp_path))
  import json

  saved = json.loads((tmp_path / 'results.json').read_text())
  assert set(saved) >= {'stages', 'protocol', 'device', 'wall_s'}
  assert saved['stages']['linear']['top1'] == 71.3
  assert saved['wall_s'] == 12.0
  md = (tmp_path / 'results.md').read_text()
  assert '| linear | 71.30 | 95.00 | 1020 | 464 | encoder |' in md
  assert '| linear_random | 40.10 |' in md
  loaded = results.Results.load(str(tmp_path))
  assert loaded.done('linear', {'b': 1}) and not loaded.done('linear', {'b': 2})


def test_standardize_uses_training_statistics_only():
  rng = np.random.default_rng(0)
  train = rng.normal(3.0, [1.0, 10.0, 0.1], size=(200, 3)).astype(np.float32)
  test = rng.normal(0.0, 1.0, size=(7, 3)).astype(np.float32)
  tr, te = frozen.standardize(train, test)
  np.testing.assert_allclose(tr.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(tr.std(0), 1.0, rtol=1e-4)
  np.testing.assert_allclose(te, (test - train.mean(0)) / train.std(0), rtol=1e-4)
  # A dead feature stays finite.
  dead = np.zeros((5, 2), np.float32)
  assert np.isfinite(frozen.standardize(dead, dead)[0]).all()


def test_standardize_zeroes_dimensions_dead_on_the_training_set():
  # Columns: std 1; constant 5; std 10; std 5e-6 (below 1e-3 x the median std 1).
  train = np.array([[1, 5, 0, 7], [3, 5, 20, 7.00001]], np.float32)
  test = np.array([[2, 7, 30, 9]], np.float32)  # the dead columns move on the test set
  tr, te = frozen.standardize(train, test)
  np.testing.assert_allclose(tr, [[-1, 0, -1, 0], [1, 0, 1, 0]], atol=1e-6)
  # With the old absolute floor of 1e-6 the test row was [0, 2e6, 2, 4e5].
  np.testing.assert_allclose(te, [[0, 0, 2, 0]], atol=1e-6)
  assert tr.dtype == te.dtype == np.float32
  np.testing.assert_array_equal(frozen.live_dimensions(train), [True, False, True, False])
  # Every column dead: all zeros, no division by zero.
  dead = np.full((5, 2), 3.0, np.float32)
  out = frozen.standardize(dead, dead + 1)
  assert (out[0] == 0).all() and (out[1] == 0).all()


def test_knn_centring_on_the_training_mean_changes_the_neighbour():
  train = np.array([[1, 0], [3, 3]], np.float32)
  labels = np.array([0, 1])
  test = np.array([[1.5, 1.2]], np.float32)
  # Raw: the test point's angle (38.7 deg) is nearer [3, 3] (45 deg) than [1, 0] (0 deg).
  raw = frozen.knn_scores(train, labels, test, 2, k=1, temperature=0.1, centre=False)
  cos_raw = (1.5 * 3 + 1.2 * 3) / (np.sqrt(1.5**2 + 1.2**2) * np.sqrt(18))
  np.testing.assert_allclose(raw, [[0, np.exp(cos_raw / 0.1)]], rtol=1e-5)
  # Centred on the training mean (2, 1.5): [1, 0] -> (-1, -1.5), test -> (-0.5, -0.3).
  cen = frozen.knn_scores(train, labels, test, 2, k=1, temperature=0.1)
  cos_cen = (0.5 * 1 + 0.3 * 1.5) / (np.sqrt(0.5**2 + 0.3**2) * np.sqrt(1 + 1.5**2))
  np.testing.assert_allclose(cen, [[np.exp(cos_cen / 0.1), 0]], rtol=1e-5)


def test_per_class_and_reversed_pairs_accuracy():
  names = ('sit down', 'stand up', 'walk', 'throw')
  labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
  pred = np.array([0, 1, 1, 1, 2, 2, 3, 0])  # one sit/stand confusion, one throw error
  out = evaluate.per_class(pred, labels, names, ('sit down|stand up',))
  assert out['per_class_top1'] == {
    'sit down': 50.0,
    'stand up': 100.0,
    'walk': 100.0,
    'throw': 50.0,
  }
  assert out['reversed_pairs_top1'] == 75.0
  assert out['other_classes_top1'] == 75.0
  with pytest.raises(evaluate.EvalError, match='not a label'):
    evaluate.per_class(pred, labels, names, ('sit down|stand upp',))


def test_validation_rows_are_stratified_disjoint_and_fixed():
  from skeljax import data

  labels = np.repeat(np.arange(4), [10, 20, 30, 40])
  train, val = data.validation_rows(labels, 0.2)
  assert len(np.intersect1d(train, val)) == 0
  assert len(train) + len(val) == len(labels)
  assert [int(np.sum(labels[val] == c)) for c in range(4)] == [2, 4, 6, 8]
  again = data.validation_rows(labels, 0.2)[1]
  np.testing.assert_array_equal(val, again)


def test_recalibrate_bn_gives_the_clean_clips_statistics():
  import jax
  import jax.numpy as jnp

  from configs import demo
  from skeljax import augment, data, mesh, skeleton

  config = demo.get_config('tiny')
  layout = skeleton.get_layout('ntu25')
  rng = np.random.default_rng(0)
  records = [
    {'skeleton': rng.normal(size=(int(t), 1, 25, 3)).astype(np.float32), 'label': i % 3}
    for i, t in enumerate(rng.integers(20, 60, size=12))
  ]
  split = data.Split(records, len(records), 3, ('a', 'b', 'c'), data.preprocessor(config.data))
  config.eval_batch_size = 12  # one batch holds the whole split
  variables = evaluate.random_encoder_variables(config)
  variables = {
    **variables,
    'batch_stats': jax.tree.map(lambda s: s + 5.0, variables['batch_stats']),  # stale stats
  }
  new = frozen.recalibrate_bn(config, mesh.make_mesh(), variables, split)
  batch = split.read(range(12))
  clips = np.asarray(
    augment.eval_clip(
      jnp.asarray(batch['x']),
      jnp.asarray(batch['n']),
      aug=config.augment,
      layout=layout,
      frames=config.data.frames,
    )
  )[:, 0]  # [N, T, V, C], one person
  stats = new['batch_stats']['data_bn']
  np.testing.assert_allclose(np.asarray(stats['mean']), clips.mean(axis=(0, 1)), atol=1e-4)
  np.testing.assert_allclose(np.asarray(stats['var']), clips.var(axis=(0, 1)), rtol=1e-3, atol=1e-4)
  # Every layer's statistics were replaced, and the parameters were not touched.
  old_leaves = jax.tree.leaves(variables['batch_stats'])
  assert all(
    np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
    for a, b in zip(old_leaves, jax.tree.leaves(new['batch_stats']), strict=True)
  )
  assert new['params'] is variables['params']
