"""Builds the tiny config into a temporary data_dir and checks what comes back.

Plain pytest, not tfds.testing.DatasetBuilderTestCase, which imports TensorFlow.
"""

import json
import re
import shutil
import sys

import numpy as np
import pytest

from skeljax import config as config_lib
from skeljax import data as data_lib
from tfds_builders.synthetic_skeleton import actions, generator, kinematics
from tfds_builders.synthetic_skeleton import synthetic_skeleton_dataset_builder as ssb

J = kinematics.joint


def _build(data_dir):
  builder = ssb.SyntheticSkeleton(config='tiny', data_dir=str(data_dir))
  builder.download_and_prepare()
  return builder


def _read(builder):
  """{split: {file_name: example}}."""
  out = {}
  for split, source in builder.as_data_source().items():
    examples = [source[i] for i in range(len(source))]
    out[split] = {e['file_name'].decode(): e for e in examples}
  return out


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  builder = _build(tmp_path_factory.mktemp('a'))
  return builder, _read(builder)


def test_counts_shapes_and_schema(built):
  builder, data = built
  config = builder.builder_config
  assert {k: len(v) for k, v in data.items()} == {'train': 56, 'test': 28}
  assert {k: config.size(k) for k in data} == {'train': 56, 'test': 28}
  assert '56 train' in config.description and '28 test' in config.description
  assert builder.info.features['label'].names == ssb.LABEL_NAMES
  assert len(ssb.LABEL_NAMES) == 14
  for split in data.values():
    for name, ex in split.items():
      skel = ex['skeleton']
      assert skel.dtype == np.float32 and skel.shape[1:] == (2, 25, 3)
      assert generator.MIN_FRAMES <= skel.shape[0] <= generator.MAX_FRAMES
      assert ex['n_frames'] == skel.shape[0]
      assert np.isfinite(skel).all()
      assert ex['setup'] == -1 and ex['replication'] == 1 and 1 <= ex['view'] <= 3
      assert re.fullmatch(r'S000C00[1-3]P\d{3}R001A\d{3}', name)
      assert name == ssb.file_name(int(ex['subject']), int(ex['label']), 1)


def test_camera_space_is_plausible(built):
  _, data = built
  for ex in data['train'].values():
    first = ex['skeleton'][:, 0]
    present = (first != 0).any(axis=-1)  # lost joints are all zeros
    # Kinect depth range, and a person the right way up in every frame.
    assert 1.0 < first[present][:, 2].min() and first[present][:, 2].max() < 5.5
    assert (first[:, J('Head'), 1] > first[:, J('SpineBase'), 1]).all()
    ankle = present[:, J('AnkleLeft')]
    assert (first[ankle, J('SpineBase'), 1] > first[ankle, J('AnkleLeft'), 1]).all()


def test_second_person_is_empty(built):
  _, data = built
  for split in data.values():
    for ex in split.values():
      assert not ex['skeleton'][:, 1].any()


def test_subjects_disjoint_and_match_metadata(built):
  builder, data = built
  subjects = {split: {int(e['subject']) for e in d.values()} for split, d in data.items()}
  assert not subjects['train'] & subjects['test']
  assert sorted(subjects['train']) == builder.info.metadata['train_subjects']
  assert sorted(subjects['test']) == builder.info.metadata['test_subjects']


def test_every_label_in_every_split(built):
  _, data = built
  for split in data.values():
    labels = np.bincount([int(e['label']) for e in split.values()], minlength=14)
    assert len(labels) == 14
    assert (labels == labels[0]).all() and labels[0] > 0


def test_build_never_imports_tensorflow(built):
  assert 'tensorflow' not in sys.modules


def test_build_is_deterministic(built, tmp_path):
  _, first = built
  second = _read(_build(tmp_path))
  for split in first:
    assert first[split].keys() == second[split].keys()
    for name, ex in first[split].items():
      np.testing.assert_array_equal(ex['skeleton'], second[split][name]['skeleton'])
      assert ex['label'] == second[split][name]['label']


def test_clip_does_not_depend_on_generation_order():
  a = generator.synthesize(0, 3, 5, 1, 2)
  generator.synthesize(0, 9, 1, 2, 3)
  np.testing.assert_array_equal(a, generator.synthesize(0, 3, 5, 1, 2))
  assert not np.array_equal(a, generator.synthesize(1, 3, 5, 1, 2))


def test_forward_kinematics_keeps_bone_lengths():
  rng = np.random.default_rng(0)
  lengths = kinematics.sample_bone_lengths(rng)
  angles = rng.uniform(-np.pi, np.pi, size=(7, 25, 3))
  pos = kinematics.forward_kinematics(angles, lengths)
  for j, p in kinematics.LAYOUT.bones:
    np.testing.assert_allclose(np.linalg.norm(pos[:, j] - pos[:, p], axis=-1), lengths[j])


def test_bone_lengths_constant_in_data_up_to_noise(built):
  _, data = built
  trunk = [(J('SpineMid'), J('SpineBase')), (J('KneeLeft'), J('HipLeft'))]
  trunk += [(J('ElbowRight'), J('ShoulderRight')), (J('AnkleRight'), J('KneeRight'))]
  for ex in data['test'].values():
    skel = ex['skeleton'][:, 0]
    present = (skel != 0).any(axis=-1)  # lost joints are all zeros
    for j, p in trunk:
      both = present[:, j] & present[:, p]
      length = np.linalg.norm(skel[both, j] - skel[both, p], axis=-1)
      # Joint noise is at most 1 cm per coordinate here, so a bone wobbles by
      # about 2 cm; a real change of length would be much larger.
      assert length.std() < 0.03 and 0.1 < length.mean() < 0.6


def test_subjects_differ_in_size():
  heights = [generator.subject_for(0, s).bone_lengths.sum() for s in range(1, 9)]
  assert np.ptp(heights) > 0.1


def test_mirror_is_a_reflection():
  rng = np.random.default_rng(1)
  lengths = kinematics.sample_bone_lengths(rng)
  lengths = 0.5 * (lengths + lengths[list(kinematics.LAYOUT.flip)])
  angles = rng.uniform(-1, 1, size=(3, 25, 3))
  pos = kinematics.forward_kinematics(angles, lengths)
  mirrored = kinematics.forward_kinematics(kinematics.mirror_angles(angles), lengths)
  np.testing.assert_allclose(mirrored, pos[:, list(kinematics.LAYOUT.flip)] * [-1, 1, 1], atol=1e-9)
  np.testing.assert_array_equal(kinematics.mirror_angles(kinematics.mirror_angles(angles)), angles)


def _angles(action, u):
  times = np.array([t for t, _ in action.keys])
  return actions.key_angles(times, np.stack([actions.pose(p) for _, p in action.keys]), u)


def _groups():
  """Actions that visit the same key poses: labels 4k..4k+3, and the last two."""
  n = len(actions.ACTIONS)
  return [actions.ACTIONS[i : i + 4] for i in range(0, n - 2, 4)] + [actions.ACTIONS[n - 2 :]]


@pytest.mark.parametrize('forward,backward', actions.REVERSE_PAIRS)
def test_reverse_pairs_are_time_reverses(forward, backward):
  a, b = actions.by_name(forward), actions.by_name(backward)
  u = np.linspace(0, 1, 41)
  np.testing.assert_allclose(_angles(b, u), _angles(a, 1 - u), atol=1e-12)
  # ... and not the same motion: somewhere the two are far apart.
  assert np.abs(_angles(a, u) - _angles(b, u)).max() > np.deg2rad(30)


def test_every_pair_of_labels_2k_2k1_is_a_reverse_pair():
  assert len(actions.REVERSE_PAIRS) == len(actions.ACTIONS) // 2
  for k, (forward, backward) in enumerate(actions.REVERSE_PAIRS):
    assert (ssb.LABEL_NAMES.index(forward), ssb.LABEL_NAMES.index(backward)) == (2 * k, 2 * k + 1)


def test_actions_share_their_start_and_end_pose():
  for action in actions.ACTIONS:
    assert action.keys[0][1] == {} and action.keys[-1][1] == {}, action.name


def test_group_members_visit_the_same_poses_for_the_same_time():
  # Sorted angles over a fine grid of phases = how long each angle is held: equal within a
  # group, so a model that sees only which poses occur and for how long is at chance in it.
  u = np.linspace(0, 1, 20001)
  for group in _groups():
    occupancy = [np.sort(_angles(a, u), axis=0) for a in group]
    for a, occ in zip(group[1:], occupancy[1:], strict=True):
      np.testing.assert_allclose(occ, occupancy[0], atol=2e-3, err_msg=a.name)
    # ... while the motions themselves differ.
    for a in group[1:]:
      assert np.abs(_angles(a, u) - _angles(group[0], u)).max() > np.deg2rad(30), a.name


def test_bow_then_squat_order_shows_in_the_data(built):
  _, data = built
  first, second = ssb.LABEL_NAMES.index('bow, then squat'), ssb.LABEL_NAMES.index('squat, then bow')
  seen = 0
  for split in data.values():
    for ex in split.values():
      if ex['label'] not in (first, second):
        continue
      skel = ex['skeleton'][:, 0]
      ankles = 0.5 * (skel[:, J('AnkleLeft')] + skel[:, J('AnkleRight')])
      tracked = (skel[:, [J('AnkleLeft'), J('AnkleRight')]] != 0).any(-1).all(-1)
      legs = np.where(tracked, np.linalg.norm(skel[:, J('SpineBase')] - ankles, axis=-1), np.nan)
      height = np.where(tracked, np.linalg.norm(skel[:, J('Head')] - ankles, axis=-1), np.nan)
      # The squat is where the hips are lowest; the bow, where the head is lowest while
      # the legs are straight.
      squat = np.nanargmin(legs)
      bow = np.nanargmin(np.where(legs > np.nanmax(legs) - 0.05, height, np.nan))
      assert np.nanmax(legs) - np.nanmin(legs) > 0.15
      assert (bow < squat) == (ex['label'] == first), ex['file_name']
      seen += 1
  assert seen == 12  # 2 labels x (4 + 2 subjects) in tiny


def test_tracking_loss_holds_or_zeroes_hands_and_feet_only():
  rng = np.random.default_rng(0)
  person = rng.normal(size=(60, 25, 3)) + 5.0
  trunk = [J(n) for n in ('SpineBase', 'SpineMid', 'Neck', 'Head', 'ShoulderLeft', 'HipRight')]
  held = zeroed = 0
  for _ in range(50):
    out = generator.lose_tracking(rng, person)
    changed = np.flatnonzero((out != person).any(axis=(0, 2)))
    assert changed.size and not set(changed) & set(trunk)
    zeroed += int((out == 0).all(axis=-1).any())
    still = (np.diff(out, axis=0) == 0).all(axis=-1) & (out[1:] != 0).any(axis=-1)
    held += int(still.any())
  assert held > 10 and zeroed > 10


def test_built_data_has_lost_joints_but_never_a_lost_trunk(built):
  _, data = built
  clips = [ex['skeleton'][:, 0] for split in data.values() for ex in split.values()]
  missing = [(c == 0).all(axis=-1) for c in clips]  # [T, V] per clip
  assert 0 < sum(m.any() for m in missing) < len(clips)
  assert not any(m[:, J('SpineBase')].any() or m[:, J('SpineMid')].any() for m in missing)
  clean = generator.synthesize(0, 1, 0, 1, 1, generator.Sensor(drop=0.0))[:, 0]
  assert (clean != 0).any(axis=-1).all()


def test_views_and_noise_come_from_the_config():
  one_view = ssb.SyntheticSkeletonConfig(name='x', views=1)
  assert {ssb.camera_for(s, a, 1, one_view.views) for s in range(3) for a in range(14)} == {1}
  quiet = generator.synthesize(0, 1, 0, 1, 1, generator.Sensor(noise=(0.0, 0.0), drop=0.0))
  body = quiet[:, 0]
  bone = np.linalg.norm(body[:, J('ElbowRight')] - body[:, J('ShoulderRight')], axis=-1)
  np.testing.assert_allclose(bone, bone[0], atol=1e-5)  # no noise: exact bone lengths


@pytest.mark.parametrize(
  'fields,message',
  [
    ({'train_subjects': 0}, 'train_subjects must be an integer >= 1'),
    ({'test_subjects': 2.5}, 'test_subjects must be an integer >= 1'),
    ({'replications': -1}, 'replications must be an integer >= 1'),
    ({'views': 4}, 'views must be 1-3'),
    ({'noise': (0.01, 0.003)}, 'noise must be'),
    ({'noise': (0.0, 0.2)}, 'noise must be'),
    ({'drop': 1.5}, 'drop must be a fraction'),
    ({'seed': -1}, 'seed must be an integer >= 0'),
  ],
)
def test_bad_config_fields_raise_one_line_errors(fields, message):
  with pytest.raises(ValueError, match=message) as e:
    ssb.SyntheticSkeletonConfig(name='x', **fields)
  assert '\n' not in str(e.value) and str(e.value).startswith('synthetic_skeleton: ')


def test_stale_older_version_is_prepared_again(tmp_path, capsys):
  cfg = config_lib.base_config().data
  cfg.update(name='synthetic_skeleton', config='tiny', data_dir=str(tmp_path))
  current = data_lib.prepare(cfg)
  assert str(current.version) == str(ssb.SyntheticSkeleton.VERSION)
  # The same folder as an older version wrote it: prepared data under version 1.0.0.
  old = tmp_path / 'synthetic_skeleton' / 'tiny' / '1.0.0'
  shutil.move(current.data_dir, old)
  info = json.loads((old / 'dataset_info.json').read_text())
  (old / 'dataset_info.json').write_text(json.dumps({**info, 'version': '1.0.0'}))
  capsys.readouterr()
  again = data_lib.prepare(cfg)
  assert 'Preparing synthetic_skeleton/tiny' in capsys.readouterr().out
  assert again.data_dir.endswith(str(ssb.SyntheticSkeleton.VERSION)) and old.exists()
  assert again.info.features['label'].names == ssb.LABEL_NAMES


def test_label_file_matches_actions():
  assert ssb.LABEL_NAMES == [a.name for a in actions.ACTIONS]
  for forward, backward in actions.REVERSE_PAIRS:
    assert forward in ssb.LABEL_NAMES and backward in ssb.LABEL_NAMES


def test_bad_inputs_raise_one_line_errors():
  with pytest.raises(ValueError, match='camera must be in'):
    generator.synthesize(0, 1, 0, 1, camera=4)
  with pytest.raises(ValueError, match='label must be in'):
    generator.synthesize(0, 1, 14, 1, camera=1)
  with pytest.raises(ValueError, match='noise must be'):
    generator.Sensor(noise=(0.02, 0.01))
  with pytest.raises(ValueError, match='unknown degree of freedom'):
    actions.pose({'elbow_twist_r': 10})
  with pytest.raises(ValueError, match='angles must be'):
    kinematics.forward_kinematics(np.zeros((5, 20, 3)), np.ones(25))
  with pytest.raises(ValueError, match='key times must rise'):
    actions.Action('x', ((0.0, {}), (0.5, {})), seconds=1.0)
  with pytest.raises(ValueError, match='unknown action'):
    actions.by_name('juggling')
  with pytest.raises(ValueError, match='unknown NTU joint'):
    kinematics.joint('Tail')


def test_difficulty_script_scores_and_runs_on_tiny(capsys):
  from tfds_builders.synthetic_skeleton import difficulty

  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(3), 10)
  separable = np.eye(3)[y] * 5 + rng.normal(0, 0.1, (30, 3))
  assert difficulty.scores((separable, y), (separable, y)) == (100.0, 100.0)
  shuffled = rng.permutation(y)  # labels unrelated to the features: near chance
  assert difficulty.scores((separable, y), (separable, shuffled))[0] < 60
  difficulty.main('tiny')
  out = capsys.readouterr().out
  assert 'tiny: 84 clips' in out and out.count('nearest centroid') == 3
