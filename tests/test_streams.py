"""Input streams (joint / motion / bone) at the encoder input, and the ensemble stage."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skeljax import checkpoint as ckpt_lib
from skeljax import config as config_lib
from skeljax import ensemble, models, skeleton, transforms

from .conftest import REPO
from .test_train import _tiny_config

# A hip with two knees, with an OpenPose-like confidence channel.
TOY = skeleton.Layout(
  name='toy',
  joint_names=('hip', 'kneeLeft', 'kneeRight'),
  parents=(-1, 0, 0),
  center=0,
  shoulders=(1, 2),
  hips=(1, 2),
  channels=('x', 'y', 'score'),
  coord_dims=2,
)


def toy_clip():
  """[M=2, T=3, V=3, C=3]: person 1 absent, the left knee undetected at frame 1."""
  x = np.zeros((2, 3, 3, 3), np.float32)
  x[0, 0] = [[1, 2, 0.9], [1, 3, 0.8], [2, 5, 0.7]]
  x[0, 1] = [[2, 2, 0.9], [0, 0, 0.0], [3, 6, 0.6]]
  x[0, 2] = [[4, 1, 0.5], [2, 4, 0.4], [3, 7, 0.3]]
  return x


# ------------------------------------------------------------------ transform


def test_motion_of_a_hand_made_clip():
  want = np.zeros((2, 3, 3, 3), np.float32)
  # x[t+1] - x[t]; 0 next to an absent entry and at the last frame; score passes through.
  want[0, 0] = [[1, 0, 0.9], [0, 0, 0.8], [1, 1, 0.7]]
  want[0, 1] = [[2, -1, 0.9], [0, 0, 0.0], [0, 1, 0.6]]
  want[0, 2] = [[0, 0, 0.5], [0, 0, 0.4], [0, 0, 0.3]]
  np.testing.assert_array_equal(transforms.to_stream(toy_clip(), TOY, 'motion'), want)


def test_bone_of_a_hand_made_clip():
  want = np.zeros((2, 3, 3, 3), np.float32)
  # x[v] - x[parent]; the root's bone is 0, so is a bone with an absent end.
  want[0, 0] = [[0, 0, 0.9], [0, 1, 0.8], [1, 3, 0.7]]
  want[0, 1] = [[0, 0, 0.9], [0, 0, 0.0], [1, 4, 0.6]]
  want[0, 2] = [[0, 0, 0.5], [-2, 3, 0.4], [-1, 6, 0.3]]
  np.testing.assert_array_equal(transforms.to_stream(toy_clip(), TOY, 'bone'), want)


def test_joint_is_the_input_and_n_masks_padded_frames():
  x = toy_clip()
  assert transforms.to_stream(x, TOY, 'joint') is x
  batch = np.stack([x, x])  # [B, M, T, V, C]; sample 1 has 2 valid frames
  out = np.asarray(transforms.to_stream(batch, TOY, 'motion', n=np.array([3, 2])))
  np.testing.assert_array_equal(out[0], transforms.to_stream(x, TOY, 'motion'))
  np.testing.assert_array_equal(out[1, :, 0], out[0, :, 0])
  np.testing.assert_array_equal(out[1, 0, 1, :, :2], 0)  # no motion into the padding
  np.testing.assert_array_equal(out[1, :, 2], 0)  # the padding itself stays zero
  with pytest.raises(ValueError, match='not one of joint, motion, bone'):
    transforms.to_stream(x, TOY, 'velocity')


# ------------------------------------------------------------------- encoders

T = 12
NTU = skeleton.NTU25


def tiny_model(name='transformer'):
  cfg = config_lib.base_config().model
  cfg.name = name
  cfg.depth, cfg.width, cfg.heads = 1, 16, 2
  cfg.gru_hidden, cfg.gru_layers = 8, 1
  return cfg


def clips(key=0, b=2):
  return jax.random.normal(jax.random.key(key), (b, 2, T, NTU.num_joints, NTU.num_channels))


def shapes(enc):
  x = clips()
  v = jax.eval_shape(
    functools.partial(enc.init, train=False), jax.random.key(1), x, models.full_lengths(x)
  )
  return jax.tree.map(lambda a: (a.shape, a.dtype), v)


@pytest.mark.parametrize('name', ['stgcn', 'transformer', 'gru'])
def test_joint_builds_the_bare_encoder_and_every_stream_the_same_variables(name):
  cfg = tiny_model(name)
  joint = models.build_encoder(cfg, NTU, T)
  assert joint == models.ENCODERS[name](cfg, NTU, T)  # 'joint' is exactly today's encoder
  assert models.build_encoder(cfg, NTU, T, 'joint') == joint
  for stream in ('motion', 'bone'):
    enc = models.build_encoder(cfg, NTU, T, stream)
    assert isinstance(enc, models.StreamInput)
    assert shapes(enc) == shapes(joint)
    assert (enc.feature_dim, enc.temporal_frames(T)) == (
      joint.feature_dim,
      joint.temporal_frames(T),
    )
  with pytest.raises(ValueError, match='unknown stream'):
    models.build_encoder(cfg, NTU, T, 'velocity')


def test_pretraining_and_evaluation_build_the_configured_stream():
  from skeljax import evaluate, pretrain

  c = config_lib.load_config('demo', 'tiny')
  for stream in transforms.STREAMS:
    c.data.stream = stream
    for enc in (pretrain.make_nets(c).encoder, evaluate.build_encoder(c)):
      assert getattr(enc, 'stream', 'joint') == stream


@functools.cache
def _encoders():
  cfg = tiny_model()
  encs = {s: models.build_encoder(cfg, NTU, T, s) for s in transforms.STREAMS}
  x = clips()
  variables = jax.jit(functools.partial(encs['joint'].init, train=False))(
    jax.random.key(1), x, models.full_lengths(x)
  )
  apply = {s: jax.jit(functools.partial(e.apply, train=False)) for s, e in encs.items()}
  return apply, variables


def test_motion_and_bone_encoders_see_differences():
  apply, variables = _encoders()
  x = clips()
  n = models.full_lengths(x)
  shifted = x + jnp.asarray([0.7, -0.3, 1.1])  # the whole scene moved: no zero entry in x
  for stream in transforms.STREAMS:
    a, _ = apply[stream](variables, x, n)
    b, _ = apply[stream](variables, shifted, n)
    if stream == 'joint':
      assert np.abs(a - b).max() > 1e-2
    else:
      np.testing.assert_allclose(a, b, atol=1e-5)
  # The wrapper is to_stream then the joint encoder, on the same variables.
  a, _ = apply['motion'](variables, x, n)
  b, _ = apply['joint'](variables, transforms.to_stream(x, NTU, 'motion', n), n)
  np.testing.assert_allclose(a, b, atol=1e-6)


def test_padded_frames_do_not_reach_a_motion_encoder():
  apply, variables = _encoders()
  x, n = clips(), jnp.array([T, 6])
  junk = x.at[1, :, 6:].set(100.0)
  for stream in ('motion', 'bone'):
    np.testing.assert_allclose(
      apply[stream](variables, x, n)[0], apply[stream](variables, junk, n)[0], atol=1e-5
    )


def test_fingerprint_of_the_joint_stream_matches_runs_from_before_the_field():
  c = config_lib.base_config()
  assert 'stream' not in ckpt_lib.fingerprint(c, ['data'])['data']
  c.data.stream = 'motion'
  assert ckpt_lib.fingerprint(c, ['data'])['data']['stream'] == 'motion'


# --------------------------------------------------------------------- config


@pytest.mark.parametrize(
  'fields,message',
  [
    ({'data.stream': 'velocity'}, "data.stream 'velocity' is not one of joint, motion, bone"),
    ({'stages': ('ensemble',)}, 'needs encoders'),
    ({'stages': ('ensemble', 'pretrain')}, 'after pretrain'),
    (
      {'stages': ('ensemble',), 'ensemble.runs': ('a', 'b'), 'ensemble.weights': (1.0,)},
      '1 values for 2',
    ),
    (
      {'stages': ('pretrain', 'ensemble'), 'ensemble.runs': ('a',), 'ensemble.weights': (1.0,)},
      r"this run's encoder \+ 1 in ensemble.runs",
    ),
    ({'stages': ('ensemble',), 'ensemble.runs': ('a',), 'ensemble.weights': (-1.0,)}, '>= 0'),
    (
      {'stages': ('ensemble',), 'ensemble.runs': ('a', 'b'), 'ensemble.weights': (0, 0)},
      'not all 0',
    ),
  ],
)
def test_validate_rejects_bad_streams_and_ensembles(fields, message):
  c = config_lib.base_config()
  for field, value in fields.items():
    section, _, key = field.rpartition('.')
    (c[section] if section else c)[key] = value
  with pytest.raises(config_lib.ConfigError, match=message) as e:
    config_lib.validate(c)
  assert '\n' not in str(e.value)


def _fake_run(path, layout='ntu25'):
  """A workdir with a config.json and no encoder."""
  path.mkdir()
  c = config_lib.load_config('demo', 'tiny')
  c.data.layout = layout
  (path / 'config.json').write_text(c.to_json_best_effort())
  return path


@pytest.mark.parametrize(
  'make,extra,needle',
  [
    (None, ['--config.data.stream=velocity'], 'data.stream'),
    (lambda tmp: tmp / 'nope', [], 'no run folder'),
    (lambda tmp: _fake_run(tmp / 'empty'), [], 'holds no pretrained encoder'),
    (lambda tmp: _fake_run(tmp / 'ucla', 'kinect20'), [], 'layout kinect20, not ntu25'),
  ],
)
def test_bad_stream_or_ensemble_exits_2_with_one_line(make, extra, needle, tmp_path):
  args = ['--config=configs/demo.py:tiny', *extra]
  if make is not None:
    args += ["--config.stages=('ensemble',)", f"--config.ensemble.runs=('{make(tmp_path)}',)"]
  workdir = tmp_path / 'run'
  r = subprocess.run(
    [sys.executable, '-m', 'skeljax.main', *args, f'--workdir={workdir}'],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.returncode == 2, r.stderr[-2000:]
  lines = [line for line in r.stderr.splitlines() if line.startswith('skeljax: error:')]
  assert len(lines) == 1 and needle in lines[0], r.stderr[-2000:]
  assert 'Traceback' not in r.stderr
  assert not workdir.exists()  # rejected before any stage (or data) touched it


# ------------------------------------------------------------------- ensemble


def _tiny(tmp, **fields):
  # The tiny transformer compiles in a fraction of the ST-GCN's time.
  base = {'model.name': 'transformer', 'model.heads': 2, 'random_reference': False}
  return _tiny_config(tmp, **base, **fields)


@pytest.fixture(scope='module')
def ensemble_runs(tmp_path_factory):
  """A: joint (contrastive); B: motion (MCC), linear, ensemble with A; C: ensemble of both."""
  from skeljax import run

  tmp = tmp_path_factory.mktemp('ens')
  a, b, c = tmp / 'a', tmp / 'b', tmp / 'c'
  run.train_and_evaluate(_tiny(tmp, stages=('pretrain',), objective='contrastive'), str(a))
  out_b = run.train_and_evaluate(
    _tiny(
      tmp,
      **{
        'stages': ('pretrain', 'linear', 'ensemble'),
        'data.stream': 'motion',
        'ensemble.runs': (str(a),),
      },
    ),
    str(b),
  )
  cfg_c = _tiny(
    tmp,
    **{'stages': ('ensemble',), 'ensemble.runs': (str(a), str(b)), 'ensemble.weights': (1.0, 3.0)},
  )
  out_c = run.train_and_evaluate(cfg_c, str(c))
  return (a, b, c), out_b['stages'], out_c['stages']['ensemble'], cfg_c


@pytest.mark.slow  # two tiny pretrainings (~1 min); CI runs the slow set
def test_ensemble_fuses_the_members_probabilities(ensemble_runs):
  (a, b, c), stages_b, entry, _ = ensemble_runs
  assert {'top1', 'top5', 'n_train', 'n_test', 'members', 'fusion'} <= set(entry)
  assert {'per_class_top1', 'confusion_png', 'probs_npz'} <= set(entry)
  assert 0.0 <= entry['top1'] <= entry['top5'] <= 100.0
  assert [(m['run'], m['stream'], m['weight']) for m in entry['members']] == [
    (str(a), 'joint', 0.25),
    (str(b), 'motion', 0.75),
  ]
  saved = np.load(entry['probs_npz'])
  probs, labels = saved['probs'], saved['labels']
  assert probs.shape == (2, entry['n_test'], probs.shape[-1])
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  fused = 0.25 * probs[0].astype(np.float64) + 0.75 * probs[1]
  assert entry['top1'] == pytest.approx(100.0 * np.mean(fused.argmax(-1) == labels))
  for m, p in zip(entry['members'], probs, strict=True):
    assert m['top1'] == pytest.approx(100.0 * np.mean(p.argmax(-1) == labels))
  assert 'joint' in (c / 'results.md').read_text() and 'motion' in (c / 'results.md').read_text()
  # An ensemble-only run trained nothing: its header names no epochs or objective of its own.
  proto = json.loads((c / 'results.json').read_text())['protocol']
  assert proto['epochs'] is None and proto['batch_size'] is None
  assert proto['objective'] == 'none (ensemble of 2 pretrained runs)'
  header = (c / 'results.md').read_text().splitlines()[2]
  assert 'epochs:' not in header and 'objective: none (ensemble of 2' in header


@pytest.mark.slow  # two tiny pretrainings (~1 min); CI runs the slow set
def test_ensemble_members_are_deterministic_across_runs(ensemble_runs):
  (a, b, c), stages_b, entry, _ = ensemble_runs
  own = stages_b['ensemble']['members']  # B's ensemble: its own motion encoder first, then A
  assert [m['stream'] for m in own] == ['motion', 'joint']
  assert own[0]['top1'] == stages_b['linear']['top1']  # the same probe as B's linear stage
  assert (
    own[1]['top1'] == entry['members'][0]['top1'] and own[0]['top1'] == entry['members'][1]['top1']
  )
  np.testing.assert_array_equal(
    np.load(stages_b['ensemble']['probs_npz'])['probs'][::-1], np.load(entry['probs_npz'])['probs']
  )


@pytest.mark.slow  # two tiny pretrainings (~1 min); CI runs the slow set
def test_an_encoder_of_another_stream_is_refused(ensemble_runs):
  from skeljax import evaluate

  (a, b, c), _, _, cfg = ensemble_runs
  with pytest.raises(evaluate.EvalError, match='motion stream, not data.stream=joint'):
    evaluate.encoder_variables(cfg, str(b / 'encoder'))
  members = ensemble.members(cfg, str(c))
  assert [m.config.data.stream for m in members] == ['joint', 'motion']
  assert [m.config.model.name for m in members] == ['transformer', 'transformer']


def test_ensemble_entry_goes_stale_when_a_member_is_pretrained_again(tmp_path):
  import json

  from skeljax import run

  member = tmp_path / 'motion'
  member.mkdir()

  def trained(loss, temperature=0.1):
    saved = {
      '_protocols': {'pretrain': {'mcc': {'temperature': temperature}}},
      'stages': {'pretrain': {'final_loss': loss}},
    }
    (member / 'results.json').write_text(json.dumps(saved))

  config = _tiny_config(tmp_path, **{'stages': ('ensemble',)})
  config.ensemble.runs = (str(member),)
  trained(4.5)
  first = run.stage_protocol(config, 'ensemble', str(tmp_path / 'fused'))
  assert first == run.stage_protocol(config, 'ensemble', str(tmp_path / 'fused'))
  trained(4.2)  # the same config, another seed
  assert run.stage_protocol(config, 'ensemble', str(tmp_path / 'fused')) != first
  trained(4.5, temperature=0.2)
  assert run.stage_protocol(config, 'ensemble', str(tmp_path / 'fused')) != first
  trained(4.5)
  assert run.stage_protocol(config, 'ensemble', str(tmp_path / 'fused')) == first
