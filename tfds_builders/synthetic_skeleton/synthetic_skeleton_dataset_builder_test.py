"""Builds the tiny config into a temporary data_dir and checks what comes back.

Plain pytest, not tfds.testing.DatasetBuilderTestCase, which imports TensorFlow.
"""

import re
import sys

import numpy as np
import pytest

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
    # Kinect depth range, and a person the right way up in every frame.
    assert 1.0 < first[..., 2].min() and first[..., 2].max() < 5.5
    assert (first[:, J('Head'), 1] > first[:, J('SpineBase'), 1]).all()
    assert (first[:, J('SpineBase'), 1] > first[:, J('AnkleLeft'), 1]).all()


def test_second_person_only_in_interactions(built):
  _, data = built
  two_person = {i for i, a in enumerate(actions.ACTIONS) if a.two_person}
  assert two_person
  for ex in data['train'].values():
    second = ex['skeleton'][:, 1]
    if ex['label'] in two_person:
      assert np.abs(second).min(axis=-1).max() > 0.1
      # The right hands meet (within a few cm plus noise) somewhere in the clip.
      gap = np.linalg.norm(
        ex['skeleton'][:, 0, J('HandRight')] - second[:, J('HandRight')], axis=-1
      )
      assert gap.min() < 0.08
    else:
      assert not second.any()


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
    for j, p in trunk:
      length = np.linalg.norm(skel[:, j] - skel[:, p], axis=-1)
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


@pytest.mark.parametrize('forward,backward', actions.REVERSE_PAIRS)
def test_reverse_pairs_are_time_reverses(forward, backward):
  a, b = actions.by_name(forward), actions.by_name(backward)
  u = np.linspace(0, 1, 41)

  def angles(action, phase):
    times = np.array([t for t, _ in action.keys])
    return actions.key_angles(times, np.stack([actions.pose(p) for _, p in action.keys]), phase)

  np.testing.assert_allclose(angles(b, u), angles(a, 1 - u), atol=1e-12)
  assert np.abs(angles(a, u[:1]) - angles(a, u[-1:])).max() > np.deg2rad(30)


def test_sit_down_lowers_the_hips_and_stand_up_raises_them(built):
  _, data = built
  sit, stand = ssb.LABEL_NAMES.index('sit down'), ssb.LABEL_NAMES.index('stand up')
  raise_, lower = ssb.LABEL_NAMES.index('raise hand'), ssb.LABEL_NAMES.index('lower hand')
  for split in data.values():
    for ex in split.values():
      skel = ex['skeleton'][:, 0]
      hips = skel[:, J('SpineBase'), 1] - 0.5 * (
        skel[:, J('AnkleLeft'), 1] + skel[:, J('AnkleRight'), 1]
      )
      hands = np.maximum(skel[:, J('HandLeft'), 1], skel[:, J('HandRight'), 1])
      hands = hands - skel[:, J('Head'), 1]
      if ex['label'] == sit:
        assert hips[-1] < hips[0] - 0.08
      elif ex['label'] == stand:
        assert hips[-1] > hips[0] + 0.08
      elif ex['label'] == raise_:
        assert hands[-1] > hands[0] + 0.4
      elif ex['label'] == lower:
        assert hands[-1] < hands[0] - 0.4


def test_label_file_matches_actions():
  assert ssb.LABEL_NAMES == [a.name for a in actions.ACTIONS]
  for forward, backward in actions.REVERSE_PAIRS:
    assert forward in ssb.LABEL_NAMES and backward in ssb.LABEL_NAMES


def test_bad_inputs_raise_one_line_errors():
  with pytest.raises(ValueError, match='camera must be in'):
    generator.synthesize(0, 1, 0, 1, camera=4)
  with pytest.raises(ValueError, match='label must be in'):
    generator.synthesize(0, 1, 14, 1, camera=1)
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
