"""skeljax.load_encoder: an exported encoder as a callable, from a workdir or its encoder/.

The encoders here are random-init ones exported as the pretrain stage exports them
(run.encoder_metadata, checkpoint.save_encoder), so no test pretrains. That its features
equal the knn stage's on a pretrained, BN-recalibrated encoder is checked on the tiny demo
run in test_train.py (test_load_encoder_gives_the_knn_stage_features).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import skeljax
from skeljax import checkpoint as ckpt_lib
from skeljax import config as config_lib
from skeljax import data, evaluate, frozen, run
from skeljax import encoder as encoder_lib
from skeljax import mesh as mesh_lib
from skeljax.encoder import EncoderError

from .conftest import run_python


def _config():
  config = config_lib.load_config('demo', 'tiny')
  config.data.persons = 2  # clips of 1 and 3 persons are padded and cut to it
  return config


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """(config, workdir, pretraining variables, recalibrated variables) of a saved encoder."""
  config = _config()
  workdir = tmp_path_factory.mktemp('enc') / 'run'
  variables = evaluate.random_encoder_variables(config)
  # Stand-in recalibrated statistics: different from the pretraining ones.
  recalibrated = jax.tree.map(lambda s: np.asarray(s) * 0.5 + 0.25, variables['batch_stats'])
  ckpt_lib.save_encoder(
    str(workdir / 'encoder'),
    variables,
    run.encoder_metadata(config, steps=3),
    recalibrated={'batch_stats': recalibrated},
  )
  return config, workdir, variables, {**variables, 'batch_stats': recalibrated}


def _clips(seed=0):
  """Raw clips [5, 3, 100, 25, 3] with n: 3 persons, one longer than data.max_frames (64)."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((5, 3, 100, 25, 3)).astype(np.float32)
  return x, np.array([100, 30, 64, 65, 2], np.int32)


def _pipeline_features(config, variables, x, n):
  """What the frozen stages compute: data.Preprocess, then frozen.make_feature_fn."""
  pre = data.preprocessor(config.data)
  recs = [
    pre({'skeleton': x[i, :, : n[i]].transpose(1, 0, 2, 3), 'label': 0}) for i in range(len(n))
  ]
  fn = frozen.make_feature_fn(config, mesh_lib.make_mesh())
  return np.asarray(
    fn(variables, np.stack([r['x'] for r in recs]), np.stack([r['n'] for r in recs]))
  )


def test_loads_from_a_workdir_or_its_encoder_folder(exported):
  config, workdir, _, recalibrated = exported
  for path in (workdir, workdir / 'encoder', str(workdir / 'encoder') + '/'):
    enc = skeljax.load_encoder(path)
    assert enc.path == str(workdir / 'encoder')
    assert (enc.layout.name, enc.frames, enc.persons, enc.max_frames) == ('ntu25', 16, 2, 64)
    assert enc.model.name == 'stgcn' and enc.feature_dim == 256
    assert enc.batch_stats == 'recalibrated' and enc.meta['format'] == ckpt_lib.ENCODER_FORMAT
  for got, want in zip(jax.tree.leaves(enc.variables), jax.tree.leaves(recalibrated), strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  assert skeljax.load_encoder is encoder_lib.load_encoder


def test_features_are_the_frozen_stages_features_of_the_same_clips(exported):
  config, workdir, pretraining, recalibrated = exported
  x, n = _clips()
  enc = skeljax.load_encoder(workdir)
  feats = enc(x, n, batch_size=2)  # batches of 2, the last one padded
  assert feats.shape == (5, 256) and feats.dtype == np.float32
  np.testing.assert_allclose(feats, _pipeline_features(config, recalibrated, x, n), atol=1e-6)
  np.testing.assert_array_equal(enc(jnp.asarray(x), jnp.asarray(n), batch_size=2), feats)
  # The pretraining statistics on request: other features, the pipeline's for them.
  old = skeljax.load_encoder(workdir, batch_stats='pretraining')
  assert old.batch_stats == 'pretraining'
  np.testing.assert_allclose(old(x, n), _pipeline_features(config, pretraining, x, n), atol=1e-6)
  assert not np.allclose(old(x, n), feats)
  # n omitted: every frame is valid.
  np.testing.assert_array_equal(enc(x[:2, :, :30]), enc(x[:2], np.array([30, 30])))


def test_apply_is_the_pure_function_behind_it(exported):
  _, workdir, _, _ = exported
  enc = skeljax.load_encoder(workdir)
  x, n = enc.fit(*_clips())
  assert x.shape == (5, 2, 64, 25, 3) and n.tolist() == [64, 30, 64, 64, 2]
  jitted = np.asarray(jax.jit(enc.apply)(enc.variables, x, n))
  np.testing.assert_allclose(jitted, enc(*_clips()), atol=1e-6)
  per_sample = jax.vmap(lambda xi, ni: enc.apply(enc.variables, xi[None], ni[None])[0])(x, n)
  np.testing.assert_allclose(np.asarray(per_sample), jitted, atol=1e-5)
  assert enc.clips(x, n).shape == (5, 2, 16, 25, 3)


@pytest.mark.parametrize(
  'shape, message',
  [
    ((2, 1, 30, 20, 3), r'got shape \(2, 1, 30, 20, 3\); 20 joints x 3 channels are those of '
     'layout kinect20$'),
    ((2, 1, 30, 25, 2), r'got shape \(2, 1, 30, 25, 2\); 25 joints x 2 channels are those of no '
     'known layout$'),
    ((1, 30, 25, 3), r'got shape \(1, 30, 25, 3\); one clip\? add the batch axis: x\[None\]'),
    ((2, 1, 0, 25, 3), r'got shape \(2, 1, 0, 25, 3\)$'),
  ],
)  # fmt: skip
def test_clips_of_another_shape_are_one_line(exported, shape, message):
  enc = skeljax.load_encoder(exported[1])
  expected = (
    r'^clips must be \[B, M, T, V, C\] = \[B, M, T, 25, 3\] for this encoder \(layout ntu25\), '
  )
  with pytest.raises(EncoderError, match=expected + message):
    enc(np.zeros(shape, np.float32))


def test_bad_valid_frame_counts_are_one_line(exported):
  enc = skeljax.load_encoder(exported[1])
  x = np.zeros((2, 1, 30, 25, 3), np.float32)
  with pytest.raises(EncoderError, match=r'^n\[1\] = 31 is not a valid-frame count 1\.\.30'):
    enc(x, np.array([30, 31]))
  with pytest.raises(EncoderError, match=r'^n must be integer valid-frame counts \[B\] = \[2\]'):
    enc(x, np.array([30.0, 3.0]))


def test_a_path_without_an_encoder_is_one_line(tmp_path):
  with pytest.raises(EncoderError, match=r'^\S*/nope does not exist: give a workdir'):
    skeljax.load_encoder(tmp_path / 'nope')
  (tmp_path / 'run').mkdir()
  with pytest.raises(EncoderError, match=r'^\S*/run holds no exported encoder: expected a workdir'):
    skeljax.load_encoder(tmp_path / 'run')


def _save_format_1(directory, variables, meta):
  """save_encoder as skeljax wrote it before encoder metadata had a format."""
  with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True)) as m:
    args = ocp.args.Composite(
      variables=ocp.args.StandardSave(variables), meta=ocp.args.JsonSave(meta)
    )
    m.save(0, args=args, force=True)
    m.wait_until_finished()


def test_encoders_of_other_versions(exported, tmp_path):
  config, _, variables, _ = exported
  meta = run.encoder_metadata(config, steps=3)
  ckpt_lib.save_encoder(str(tmp_path / 'newer' / 'encoder'), variables, {**meta, 'format': 99})
  with pytest.raises(EncoderError, match=r'encoder of format 99, saved by another skeljax version'):
    skeljax.load_encoder(tmp_path / 'newer')
  # Format 1 (no 'format', no persons/max_frames/augment): the run's config.json completes it.
  old = {k: meta[k] for k in ('layout', 'model', 'frames', 'dataset', 'objective', 'steps')}
  _save_format_1(str(tmp_path / 'old' / 'encoder'), variables, old)
  with pytest.raises(EncoderError, match=r'encoder of format 1 without persons, max_frames, '):
    skeljax.load_encoder(tmp_path / 'old')
  (tmp_path / 'old' / 'config.json').write_text(json.dumps(json.loads(config.to_json())))
  enc = skeljax.load_encoder(tmp_path / 'old')
  assert (enc.persons, enc.max_frames, enc.batch_stats) == (2, 64, 'pretraining')
  with pytest.raises(EncoderError, match=r"has no recalibrated BN statistics .*'pretraining'"):
    skeljax.load_encoder(tmp_path / 'old', batch_stats='recalibrated')
  # Metadata that does not describe these variables.
  bigger = {**meta, 'model': {**meta['model'], 'size': 'base'}}
  ckpt_lib.save_encoder(str(tmp_path / 'other' / 'encoder'), variables, bigger)
  with pytest.raises(EncoderError, match=r'the saved variables do not fit model stgcn/base .*'
                     r'incompatible skeljax version'):  # fmt: skip
    skeljax.load_encoder(tmp_path / 'other')
  ckpt_lib.save_encoder(str(tmp_path / 'gone' / 'encoder'), variables, {**meta, 'layout': 'x'})
  with pytest.raises(EncoderError, match=r"metadata does not describe .* unknown joint layout 'x'"):
    skeljax.load_encoder(tmp_path / 'gone')


def test_stack_pads_sequences_as_saved_on_disk():
  a = np.ones((4, 25, 3), np.float32)  # [T, V, C]
  b = np.full((6, 2, 25, 3), 2.0, np.float32)  # [T, M, V, C]
  x, n = encoder_lib.stack([a, b])
  assert x.shape == (2, 2, 6, 25, 3) and n.tolist() == [4, 6]
  assert (x[0, 0, :4] == 1).all() and (x[0, 0, 4:] == 0).all() and (x[0, 1] == 0).all()
  assert (x[1] == 2).all()
  assert encoder_lib.stack([b], persons=1)[0].shape == (1, 1, 6, 25, 3)
  with pytest.raises(EncoderError, match='different joints x channels'):
    encoder_lib.stack([a, np.ones((3, 20, 3))])


def test_import_skeljax_stays_light():
  r = run_python(
    'import sys, skeljax; assert "jax" not in sys.modules, "jax"; '
    'f = skeljax.load_encoder; assert "jax" in sys.modules; print(f.__module__)'
  )
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.strip() == 'skeljax.encoder'
  assert os.path.basename(encoder_lib.__file__) == 'encoder.py'


def test_nearest_ranks_the_bank_by_centred_cosine():
  bank = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], np.float32) + 5.0
  idx, cos = encoder_lib.nearest(np.array([[6.0, 5.1], [5.1, 3.0]], np.float32), bank, k=2)
  assert idx.tolist() == [[0, 1], [3, 0]]
  np.testing.assert_allclose(cos[:, 0], np.cos(np.arctan([0.1, 0.05])), rtol=1e-6)
  # Uncentred, the common offset of 5 makes every cosine close to 1.
  _, raw = encoder_lib.nearest(np.array([[6.0, 5.1]], np.float32), bank, k=4, centre=False)
  assert raw.min() > 0.8
  with pytest.raises(EncoderError, match=r'nearest needs \[Q, D\] and \[N, D\] features'):
    encoder_lib.nearest(np.zeros((2, 3)), np.zeros((4, 2)))
