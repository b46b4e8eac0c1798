"""The PyTorch reference of the benchmark is the same network and objective as skeljax's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from benchmarks import bench_train_step as bench  # noqa: E402
from benchmarks import torch_reference as tr  # noqa: E402
from skeljax import skeleton  # noqa: E402
from skeljax.models import stgcn  # noqa: E402

LAYOUT = skeleton.NTU25


def _tiny_proto(model='stgcn-small'):
  return bench.protocol(model, batch=4, frames=16, persons=2, max_frames=32, queue=16)


@pytest.mark.parametrize('model', ['stgcn-small', 'stgcn-base', 'transformer'])
def test_parameter_counts_match_skeljax(model):
  config = bench.skeljax_config(_tiny_proto(model))
  counts = bench.skeljax_param_counts(config)
  assert tr.param_counts(bench.build_torch(config)) == counts
  assert counts['encoder'] > 0 and counts['projector'] > 0 and counts['decoder'] > 0


def test_parameter_mismatch_fails_loudly():
  with pytest.raises(SystemExit, match='parameter counts differ'):
    bench.check_param_counts({'encoder': 3}, {'encoder': 4}, 'stgcn-small')


def test_bad_names_fail_with_one_line():
  with pytest.raises(ValueError, match='unknown ST-GCN size'):
    tr.build_stgcn_mcc(LAYOUT.adjacency('spatial'), 'huge')
  with pytest.raises(SystemExit, match='unknown model'):
    bench.protocol('resnet', 8)


def test_stgcn_computes_the_same_function_as_skeljax():
  """skeljax's weights loaded into the torch ST-GCN give the same outputs (train and eval BN)."""
  # Four blocks cover every kind: no residual, identity, and strided projection residuals.
  widths, strides = (8, 8, 16, 16), (1, 1, 2, 1)
  net = stgcn.STGCN(LAYOUT, widths=widths, strides=strides)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 12, 25, 3))
  n = jnp.full((2,), 12)
  shapes = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(1), x, n, train=False))
  # Random values for every variable, so BN scales, biases, running statistics and edge
  # importance all differ from their inits (a swapped axis cannot hide behind ones/zeros).
  rng = np.random.default_rng(0)
  variables = jax.tree.map(
    lambda a: (1.0 + 0.1 * rng.standard_normal(a.shape)).astype(np.float32), shapes
  )

  @jax.jit
  def both(v):
    evaluated = net.apply(v, x, n, train=False)
    trained, _ = net.apply(v, x, n, train=True, mutable=['batch_stats'])
    return evaluated, trained

  outputs = both(variables)
  backbone = tr.STGCN(LAYOUT.adjacency('spatial'), 3, widths, strides)
  tr.load_skeljax_stgcn(backbone, variables['params'], variables['batch_stats'])
  xt = torch.tensor(np.asarray(x))
  for train, (pj, tj) in zip((False, True), outputs, strict=True):
    backbone.train(train)
    with torch.no_grad():
      pt, tt = backbone(xt)
    assert pt.shape == (2, 16) and tt.shape == (2, 6, 16)  # T' = ceil(12 / 2)
    scale = float(np.abs(np.asarray(pj)).max())
    np.testing.assert_allclose(pt.numpy(), np.asarray(pj), rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(tt.numpy(), np.asarray(tj), rtol=1e-4, atol=1e-5 * scale)


def test_views_shapes_and_structure():
  proto = _tiny_proto()
  x, n = bench.synthetic_batch(proto)
  g = torch.Generator().manual_seed(0)
  v = tr.make_views(
    torch.tensor(x),
    torch.tensor(n).long(),
    frames=16,
    flip_perm=list(LAYOUT.flip),
    center=LAYOUT.center,
    generator=g,
  )
  for name in ('anchor', 'positive', 'negative', 'interp_input'):
    assert v[name].shape == (4, 2, 16, 25, 3), name
  a, neg = v['anchor'].numpy(), v['negative'].numpy()
  # The negative is the anchor's frames in another order: same multiset, different sequence.
  np.testing.assert_allclose(np.sort(a, axis=2), np.sort(neg, axis=2))
  assert all(not np.array_equal(a[i], neg[i]) for i in range(4))
  # Interpolation input keeps every 2nd frame (and the last) and fills the rest.
  kept = v['interp_mask'][0].numpy() == 0
  assert kept[::2].all() and kept[-1] and not kept[1]
  np.testing.assert_allclose(v['interp_input'].numpy()[:, :, kept], a[:, :, kept])
  mid = 0.5 * (a[:, :, 0] + a[:, :, 2])
  np.testing.assert_allclose(v['interp_input'].numpy()[:, :, 1], mid, rtol=1e-5, atol=1e-6)


def test_one_training_step_updates_and_enqueues():
  proto = _tiny_proto()
  a = LAYOUT.adjacency('spatial')
  model = tr.MCC(
    lambda: tr.STGCN(a, 3, (8, 16), (1, 2)),
    frames=16,
    persons=2,
    num_joints=25,
    feature_dim=32,
    queue_size=16,
    decoder_width=16,
  )
  model.train()
  opt = tr.make_optimizer(model)
  x, n = bench.synthetic_batch(proto)
  views = tr.make_views(
    torch.tensor(x),
    torch.tensor(n).long(),
    frames=16,
    flip_perm=list(LAYOUT.flip),
    center=LAYOUT.center,
    generator=torch.Generator().manual_seed(0),
  )
  before = model.encoder_q.backbone.data_bn.weight.detach().clone()
  queue = model.queue.clone()
  loss = tr.train_step(model, opt, views)
  assert np.isfinite(loss) and loss > 0
  assert not torch.equal(before, model.encoder_q.backbone.data_bn.weight)
  assert int(model.queue_ptr) == 4
  assert not torch.equal(queue[:, :4], model.queue[:, :4])
  torch.testing.assert_close(model.queue[:, 4:], queue[:, 4:])
  # Keys are L2-normalised, so the enqueued columns have unit norm.
  torch.testing.assert_close(model.queue[:, :4].norm(dim=0), torch.ones(4))


def test_decoder_upsampling_matches_skeljax():
  from skeljax.models import heads

  y = np.random.default_rng(0).standard_normal((2, 13, 5)).astype(np.float32)
  ours = np.asarray(heads.interpolate_time(jnp.asarray(y), 50))
  dec = tr.InterpDecoder(5, frames=50, persons=1, num_joints=1, channels=1, width=4)
  up = torch.nn.functional.interpolate(
    torch.tensor(y).transpose(1, 2), size=50, mode='linear', align_corners=dec.align_corners
  ).transpose(1, 2)
  np.testing.assert_allclose(up.numpy(), ours, rtol=1e-5, atol=1e-6)
