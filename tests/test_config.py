"""Config files parse and validate; bad input exits 2 with one line."""

import subprocess
import sys

import pytest

from skeljax import config as config_lib

from .conftest import REPO

CONFIGS = sorted(p for p in (REPO / 'configs').glob('*.py'))
ARGS = {
  'demo.py': ['', 'tiny'],
  'nw_ucla.py': ['', 'xview', 'xsub', 'xview,tiny'],
  'ntu60.py': ['', 'xsub', 'xview', 'tiny'],
  'ntu120.py': ['', 'xsub', 'xset'],
  'pkummd.py': ['part1_xsub', 'part1_xview', 'part2_xsub', 'part2_xview'],
  'kinetics.py': ['', 'tiny'],
  'folder.py': ['', 'tiny'],
}


def _load(path, arg):
  return config_lib.load_config(path, arg or None)


def test_every_dataset_has_a_config():
  assert {p.name for p in CONFIGS} == set(ARGS)


@pytest.mark.parametrize('name,arg', [(n, a) for n, args in ARGS.items() for a in args])
def test_configs_parse_and_validate(name, arg):
  c = _load(REPO / 'configs' / name, arg)
  config_lib.validate(c)
  doc = (REPO / 'configs' / name).read_text()
  assert 'python -m skeljax.main --config=configs/' in doc
  assert 'Expected result' in doc


def test_load_config_by_name_path_and_path_with_arg(tmp_path, monkeypatch):
  tiny = config_lib.load_config('demo', 'tiny')
  assert tiny.data.frames == 16 and tiny.name == 'demo'
  assert config_lib.load_config(REPO / 'configs' / 'demo.py', 'tiny') == tiny
  assert config_lib.load_config('configs/demo.py:tiny') == tiny  # as --config= takes it
  assert config_lib.load_config('demo').data.frames == 24  # no arg: get_config()
  mine = tmp_path / 'mine.py'
  mine.write_text(
    'from skeljax import config\n'
    'def get_config(arg=None):\n'
    '  c = config.base_config()\n'
    '  c.name = arg or "mine"\n'
    '  return c\n'
  )
  monkeypatch.chdir(tmp_path)
  assert config_lib.load_config('mine.py').name == 'mine'
  assert config_lib.load_config(str(mine), 'other').name == 'other'


def test_demo_parts_switches_on_each_part_that_has_its_own_signal():
  demo, parts = config_lib.load_config('demo'), config_lib.load_config('demo:parts')
  for c in (demo, parts, config_lib.load_config('demo:parts,tiny')):
    config_lib.validate(c)
  assert (demo.mcc.speed_positive, demo.mcc.speed_head, demo.mcc.interpolation) == (
    False,
    'off',
    False,
  )
  assert (parts.mcc.speed_positive, parts.mcc.speed_head, parts.mcc.interpolation) == (
    True,
    'classify',
    True,
  )
  assert (parts.augment.interp_drop, parts.mcc.decoder_tap) == ('span', 'full')
  # Only those parts differ: the rest is the demo's recipe.
  for section in ('data', 'pretrain', 'linear'):
    assert parts[section] == demo[section]


@pytest.mark.parametrize('path', ['nosuchconfig', 'configs/nosuch.py', '/tmp/nope/x.py:tiny'])
def test_load_config_of_a_missing_file_is_one_line(path):
  with pytest.raises(config_lib.ConfigError, match='no config file') as e:
    config_lib.load_config(path)
  assert '\n' not in str(e.value) and 'demo' in str(e.value)


def test_unknown_config_arg_is_an_error():
  with pytest.raises(config_lib.ConfigError, match='unknown config arg'):
    _load(REPO / 'configs' / 'nw_ucla.py', 'xveiw')


@pytest.mark.parametrize(
  'field,value,message',
  [
    ('stages', ('pretrain', 'lineer'), 'unknown stage'),
    ('data.layout', 'ntu26', 'unknown joint layout'),
    ('augment.segments', 1, 'segments'),
    ('augment.crop_ratio', (0.9, 0.5), 'crop_ratio'),
    ('mcc.temperature', 0.0, 'temperature'),
    ('mcc.negative_weight', -0.5, 'negative_weight'),
    ('pretrain.batch_size', 100, 'queue_size'),
    ('mcc.momentum', 1.0, 'mcc.momentum'),
    ('mcc.momentum', -0.5, 'mcc.momentum'),
    ('mcc.ema_fraction', 0.0, 'ema_fraction'),
    ('mcc.momentum_schedule', 'linear', 'momentum_schedule'),
    ('mcc.temperature', 50.0, 'temperature'),
    ('mcc.interp_weight', -1.0, 'interp_weight'),
    ('mcc.interp_fraction', 0.0, 'interp_fraction'),
    ('mcc.interp_fraction', 0.3, 'whole number'),
    ('mcc.queue_size', -1, 'queue_size'),
    ('data.frames', 3, 'data.frames'),
    ('data.persons', -1, 'data.persons'),
    ('mcc.bn_groups', 0, 'bn_groups'),
    ('mcc.bn_groups', 5, 'bn_groups'),
    ('mcc.negative_loss', 'margin', 'negative_loss'),
    ('augment.negative_source', 'query', 'negative_source'),
    ('augment.positive_window', 'anchor', 'positive_window'),
    ('data.val_fraction', 1.0, 'val_fraction'),
    ('data.reversed_pairs', ('sit down-stand up',), 'reversed_pairs'),
    # augment.* is checked by augment.AugParams, the one home of those checks.
    ('augment.segments', 100, 'augment.segments=100 must be <= data.frames'),
    ('augment.flip_prob', 1.5, 'augment.flip_prob'),
    ('augment.centre', 'hip', 'augment.centre'),
    ('mcc.momentum_end', 1.0, 'momentum_end'),
    ('mcc.momentum_end', 0.98, 'is below mcc.momentum=0.99'),  # the cosine would fall
    ('mcc.nn_mode', 'mine', 'nn_mode'),
    ('mcc.nn_k', 0, 'nn_k'),
    ('mcc.nn_warmup', 1.0, 'nn_warmup'),
    ('mcc.nn_warmup', -0.1, 'nn_warmup'),
    ('mcc.queue_negatives', False, 'needs mcc.batch_negatives=True'),
    ('pretrain.monitor_every', -1, 'monitor_every'),
    ('pretrain.epochs', -1, 'pretrain.epochs must be a whole number'),
    ('linear.epochs', 0, 'linear.epochs must be positive'),  # only pretrain derives 0
    ('model.name', 'resnet', 'model.name'),
    ('model.size', 'huge', 'model.size'),
    # Issue #29: speeds in (0, 8], margins and weights >= 0, fractions in [0, 1).
    ('augment.speeds', (0.5, 9.0), 'augment.speeds must lie in'),
    ('augment.speeds', (0.0, 2.0), 'augment.speeds must lie in'),
    ('augment.speed_range', (0.5, 10.0), 'augment.speed_range'),
    ('augment.speed_range', (0.0, 2.0), 'augment.speed_range'),
    ('augment.speed_fit', 'hold', 'augment.speed_fit'),
    ('augment.resample_noise_std', -0.01, 'resample_noise_std'),
    ('mcc.speed_margin', -0.1, 'speed_margin'),
    ('mcc.speed_weight', -1.0, 'speed_weight'),
    ('mcc.speed_head', 'pace', 'speed_head'),
    ('mcc.speed_form', 'twice', 'speed_form'),
    ('mcc.speed_classes', 1, 'speed_classes'),
    ('mcc.negative_start', 1.0, 'negative_start'),
    ('mcc.negative_start', -0.2, 'negative_start'),
    ('mcc.negative_loss', 'triplet', 'negative_loss'),
    ('augment.interp_drop', 'spans', 'augment.interp_drop'),
    ('augment.span_count', 0, 'augment.span_count'),
    ('augment.span_joint_prob', 0.0, 'augment.span_joint_prob'),
    ('augment.span_joint_prob', 1.5, 'augment.span_joint_prob'),
    ('augment.span_frames', (8, 4), 'augment.span_frames'),
    ('mcc.decoder_tap', 'middle', 'mcc.decoder_tap'),
    ('mcc.interp_target', 'velocity', 'mcc.interp_target'),
  ],
)
def test_validate_rejects_impossible_values(field, value, message):
  c = config_lib.base_config()
  section, _, key = field.rpartition('.')
  (c[section] if section else c)[key] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(c)


SPEED = {'mcc.speed_positive': True}  # off by default since issue #29


@pytest.mark.parametrize(
  'fields,message',
  [
    ({**SPEED, 'mcc.speed_head': 'relative'}, "needs mcc.speed_form='both' or 'head'"),
    ({**SPEED, 'mcc.speed_form': 'head'}, "give mcc.speed_head='relative' or 'classify'"),
    (
      {'mcc.speed_form': 'head', 'mcc.speed_head': 'classify', 'mcc.speed_positive': False},
      'speed_positive=False',
    ),
    ({'mcc.speed_form': 'both', 'mcc.speed_positive': False}, 'speed_positive=False'),
    ({'mcc.speed_head': 'classify'}, r'speed_positive=False \(set it to True\)'),  # the default
    ({**SPEED, 'mcc.speed_head': 'classify', 'augment.speeds': (2.0,)}, 'more than one relative'),
    ({'mcc.negative_start': 0.3, 'mcc.broken_negative': False}, 'broken_negative=False'),
    ({'augment.independent_speeds': True, 'augment.speed_fit': 'clip'}, "speed_fit='fit'"),
  ],
)
def test_a_head_that_needs_a_part_that_is_off_is_an_error(fields, message):
  c = config_lib.base_config()
  for field, value in fields.items():
    section, key = field.split('.')
    c[section][key] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(c)
  c.objective = 'contrastive'  # the baseline reads none of the MCC parts
  if 'augment.independent_speeds' not in fields:
    config_lib.validate(c)


def test_spans_must_fit_the_clip_and_the_full_decoder_needs_stgcn():
  c = config_lib.base_config()
  c.augment.interp_drop, c.mcc.decoder_tap, c.mcc.interp_target = 'span', 'full', 'motion'
  config_lib.validate(c)  # data.frames = 50 fits spans of up to 48 frames
  c.augment.span_frames = (4, 49)
  with pytest.raises(config_lib.ConfigError, match=r'span_frames=\(4, 49\).*data.frames=50'):
    config_lib.validate(c)
  c.augment.interp_drop = 'stride'  # inert without spans
  config_lib.validate(c)
  for name in ('transformer', 'gru'):
    c.model.name = name
    with pytest.raises(config_lib.ConfigError, match=f"decoder_tap='full'.*model.name='{name}'"):
      config_lib.validate(c)
  c.mcc.decoder_tap = 'deep'
  config_lib.validate(c)


def test_without_queue_negatives_there_are_no_queue_neighbours_to_mine():
  c = config_lib.base_config()
  c.mcc.update(queue_negatives=False, batch_negatives=True)
  config_lib.validate(c)  # in-batch negatives only: a valid recipe
  c.mcc.nn_mode = 'drop'
  with pytest.raises(config_lib.ConfigError, match='none to mine'):
    config_lib.validate(c)


def test_the_constant_momentum_schedule_ignores_momentum_end():
  c = config_lib.base_config()
  assert (c.mcc.momentum, c.mcc.momentum_schedule, c.mcc.momentum_end) == (0.99, 'cosine', 0.999)
  c.mcc.update(momentum_schedule='constant', momentum=0.9995)  # above the unused end
  config_lib.validate(c)


def test_batch_not_divisible_by_devices_is_an_error():
  c = config_lib.base_config()
  c.pretrain.batch_size = 128
  with pytest.raises(config_lib.ConfigError, match='does not divide over 3 devices'):
    config_lib.validate(c, num_devices=3)


def _main(*args):
  return subprocess.run(
    [sys.executable, '-m', 'skeljax.main', *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )


@pytest.mark.parametrize(
  'args,needle',
  [
    (['--config=configs/demo.py', '--config.pretrain.nope=1'], 'unknown config key'),
    (['--config=configs/demo.py', '--config.seed=abc'], 'config.seed'),
    (['--config=configs/demo.py:nonsense'], 'unknown config arg'),
    (['--config=configs/demo.py', '--config.data.layout=ntu26'], 'unknown joint layout'),
    (['--config=configs/demo.py', '--config.pretrain.batch_size=48'], 'queue_size'),
    (['--config=configs/demo.py', '--config.num_processes=2'], 'processes were launched'),
    (['--config=configs/demo.py', '--config.mcc.momentum=1.5'], 'mcc.momentum'),
    (['--config=configs/demo.py', '--config.mcc.temperature=0'], 'mcc.temperature'),
    (['--config=configs/demo.py', '--config.mcc.interp_weight=-1'], 'mcc.interp_weight'),
    (['--config=configs/demo.py', '--config.mcc.queue_size=-64'], 'mcc.queue_size'),
    (['--config=configs/demo.py', '--config.pretrain.monitor_every=-1'], 'monitor_every'),
    (['--config=configs/demo.py', '--config.mcc.nn_k=0'], 'mcc.nn_k'),
    (['--config=configs/demo.py', '--config.mcc.nn_warmup=1.0'], 'mcc.nn_warmup'),
    (['--config=configs/demo.py', '--config.mcc.nn_mode=twins'], 'mcc.nn_mode'),
    (['--config=configs/demo.py', '--config.augment.speed_range=(0.5,12.0)'], 'speed_range'),
    (['--config=configs/demo.py', '--config.mcc.speed_margin=-1'], 'mcc.speed_margin'),
    (['--config=configs/demo.py', '--config.mcc.negative_start=1.5'], 'mcc.negative_start'),
    (
      [
        '--config=configs/demo.py',
        '--config.mcc.speed_positive=True',
        '--config.mcc.speed_head=relative',
      ],
      "speed_form='both'",
    ),
    (
      [
        '--config=configs/demo.py',  # T = 32: a span fits in frames 1..30
        '--config.augment.interp_drop=span',
        '--config.augment.span_frames=(4,31)',
      ],
      'augment.span_frames=(4, 31)',
    ),
    (
      ['--config=configs/demo.py', '--config.model.name=gru', '--config.mcc.decoder_tap=full'],
      "model.name='gru'",
    ),
    (
      [
        '--config=configs/demo.py',
        '--config.mcc.batch_negatives=False',
        '--config.mcc.queue_negatives=False',
      ],
      'queue_negatives',
    ),
    (
      [
        '--config=configs/demo.py:tiny',
        '--config.mcc.momentum=-1',  # derived from the run length: checked with the data
        '--config.mcc.momentum_end=0.5',
      ],
      "below the key encoder's start rate",
    ),
    (
      [
        '--config=configs/demo.py:tiny',
        '--config.mcc.mask_own=False',
        '--config.mcc.queue_size=1024',
      ],
      'holds the whole training set',
    ),
    (
      [
        '--config=configs/demo.py:tiny',
        '--config.pretrain.batch_size=1024',
        '--config.mcc.queue_size=1024',
      ],
      'exceeds the 56 training samples',
    ),
    (
      [
        '--config=configs/ntu60.py',
        '--config.data.manual_dir=/nonexistent',
        '--config.data.data_dir=/tmp/skeljax_empty_data',
      ],
      'nturgbd_skeletons_s001_to_s017.zip',
    ),
  ],
)
def test_bad_input_exits_2_with_one_line(args, needle, tmp_path):
  # An earlier run's workdir: a rejected config, even one rejected only once the data
  # is read, must leave it as it was.
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text('{"earlier": "run"}')
  r = _main(*args, f'--workdir={workdir}')
  assert r.returncode == 2, r.stderr[-2000:]
  lines = [line for line in r.stderr.splitlines() if line.startswith('skeljax: error:')]
  assert len(lines) == 1, r.stderr[-2000:]
  assert needle in lines[0]
  assert 'Traceback' not in r.stderr
  assert sorted(p.name for p in workdir.iterdir()) == ['config.json']
  assert (workdir / 'config.json').read_text() == '{"earlier": "run"}'
