"""The synthetic dataset's generative rules, checked on its plans and scene tracks (no video files needed)."""

import numpy as np
import pytest

from lofi.data.synthetic import MOTION_PATTERNS, SyntheticConfig, plan_dataset
from lofi.data.synthetic.generate import to_annotations
from lofi.data.synthetic.render import simulate_scene


def _instances(plans):
    return [inst for plan in plans for inst in plan.instances]


def test_same_seed_same_plans_other_seed_other_plans():
    config = SyntheticConfig(num_videos=5, num_classes=4, seed=7)
    assert plan_dataset(config) == plan_dataset(config)
    assert plan_dataset(config) != plan_dataset(SyntheticConfig(num_videos=5, num_classes=4, seed=8))


def test_instances_are_ordered_separated_and_inside_the_video():
    config = SyntheticConfig(num_videos=20, num_classes=6, seed=1)
    min_gap = round(config.gap_sec[0] * config.fps)
    for plan in plan_dataset(config):
        assert len(plan.instances) >= 1
        previous_end = 0
        for inst in plan.instances:
            assert inst.start_frame - previous_end >= min_gap
            assert inst.start_frame < inst.middle_start_frame < inst.middle_end_frame < inst.end_frame
            previous_end = inst.end_frame
        assert plan.num_frames - previous_end >= min_gap


def test_phase_lengths_follow_their_ranges_and_are_independent():
    config = SyntheticConfig(num_videos=60, num_classes=6, seed=2)
    instances = _instances(plan_dataset(config))
    onset = np.array([i.middle_start_frame - i.start_frame for i in instances]) / config.fps
    middle = np.array([i.middle_end_frame - i.middle_start_frame for i in instances]) / config.fps
    offset = np.array([i.end_frame - i.middle_end_frame for i in instances]) / config.fps
    frame = 1.0 / config.fps
    assert onset.min() >= config.onset_sec[0] - frame and onset.max() <= config.onset_sec[1] + frame
    assert offset.min() >= config.offset_sec[0] - frame and offset.max() <= config.offset_sec[1] + frame
    assert middle.min() >= config.middle_sec[0] - frame and middle.max() <= config.middle_sec[1] + frame
    assert middle.min() < 2.0 and middle.max() > 6.0  # short and long instances
    # boundary phases are not a fraction of the instance: no correlation with the middle's length
    assert abs(np.corrcoef(onset, middle)[0, 1]) < 0.25
    assert abs(np.corrcoef(offset, middle)[0, 1]) < 0.25
    # nor with the class
    labels = np.array([i.label for i in instances])
    means = [onset[labels == c].mean() for c in config.class_names]
    assert max(means) - min(means) < 0.3


def test_classes_are_balanced_within_each_subset():
    config = SyntheticConfig(num_videos=12, num_classes=5, seed=3)
    plans = plan_dataset(config)
    for subset in ("training", "validation"):
        labels = [i.label for p in plans if p.subset == subset for i in p.instances]
        counts = [labels.count(c) for c in config.class_names]
        assert len(labels) >= config.num_classes
        assert max(counts) - min(counts) <= 1


def test_annotations_are_exact_frame_times():
    config = SyntheticConfig(num_videos=4, num_classes=3, seed=4, fps=12.5)
    plans = plan_dataset(config)
    annotations = to_annotations(plans, config)
    assert annotations.classes == tuple(sorted(config.class_names))  # label indices follow sorted names
    for plan in plans:
        video = annotations[plan.video_id]
        assert video.duration_sec == pytest.approx(plan.num_frames / 12.5)
        for inst, seg in zip(plan.instances, video.segments):
            assert seg.start_sec * 12.5 == pytest.approx(inst.start_frame, abs=1e-5)
            assert seg.end_sec * 12.5 == pytest.approx(inst.end_frame, abs=1e-5)
            assert seg.label == inst.label


def test_split_has_training_and_validation():
    plans = plan_dataset(SyntheticConfig(num_videos=6, num_classes=4))
    assert [p.subset for p in plans] == ["training"] * 4 + ["validation"] * 2


@pytest.mark.parametrize("name", list(MOTION_PATTERNS))
def test_motion_patterns_start_at_rest(name):
    offsets = MOTION_PATTERNS[name].fn(np.array([0.0]))
    assert offsets.dx[0] == pytest.approx(0.0, abs=1e-9) and offsets.dy[0] == pytest.approx(0.0, abs=1e-9)
    assert offsets.radius_scale[0] == pytest.approx(1.0) and offsets.spin_rad[0] == pytest.approx(0.0)


@pytest.mark.parametrize("name", list(MOTION_PATTERNS))
def test_motion_patterns_move_within_a_cycle(name):
    u = np.linspace(0, 1, 25)
    o = MOTION_PATTERNS[name].fn(u)
    change = np.ptp(o.dx) + np.ptp(o.dy) + np.ptp(o.radius_scale) + np.ptp(o.spin_rad)
    assert change > 0.5
    assert np.all(np.abs(o.dx) <= 2.0) and np.all(np.abs(o.dy) <= 2.0)


def test_opposite_circles_differ_only_in_frame_order():
    u = np.arange(24) / 24
    cw, ccw = MOTION_PATTERNS["circle_cw"].fn(u), MOTION_PATTERNS["circle_ccw"].fn(u)
    cw_points = sorted(zip(np.round(cw.dx, 9), np.round(cw.dy, 9)))
    ccw_points = sorted(zip(np.round(ccw.dx, 9), np.round(ccw.dy, 9)))
    assert cw_points == ccw_points  # one frame cannot tell them apart
    assert not np.allclose(cw.dx, ccw.dx)


def _second_difference_px(xy):
    return np.linalg.norm(xy[2:] - 2 * xy[1:-1] + xy[:-2], axis=-1)


def test_actor_jitters_only_in_boundary_phases_and_idles_like_a_distractor():
    config = SyntheticConfig(num_videos=1, num_classes=4, seed=5, boundary_cue_px=2.0)
    plan = plan_dataset(config)[0]
    scene = simulate_scene(np.random.default_rng(0), plan, config)
    actor = scene.actor_index
    accel = _second_difference_px(scene.xy[:, actor])  # [N-2], centred on frames 1..N-2
    in_boundary = np.zeros(plan.num_frames, bool)
    in_action = np.zeros(plan.num_frames, bool)
    for inst in plan.instances:
        in_boundary[inst.start_frame:inst.middle_start_frame] = True
        in_boundary[inst.middle_end_frame:inst.end_frame] = True
        in_action[max(0, inst.start_frame - 2):inst.end_frame + 2] = True
    centre = slice(1, plan.num_frames - 1)
    idle_accel = accel[~in_action[centre]]
    boundary_accel = accel[in_boundary[centre] & np.roll(in_boundary, 1)[centre] & np.roll(in_boundary, -1)[centre]]
    assert boundary_accel.mean() > 5 * idle_accel.mean()
    # outside its actions the actor moves like the distractors do
    distractors = [k for k in range(scene.xy.shape[1]) if k != actor]
    idle_speed = np.linalg.norm(np.diff(scene.xy[:, actor], axis=0), axis=-1)[~in_action[1:]]
    distractor_speeds = [np.linalg.norm(np.diff(scene.xy[:, k], axis=0), axis=-1).mean() for k in distractors]
    low, high = config.object_speed_frac_per_sec
    assert low * 128 / 15 - 0.05 <= idle_speed.mean() <= high * 128 / 15 + 0.05
    assert all(low * 128 / 15 - 0.05 <= s <= high * 128 / 15 + 0.05 for s in distractor_speeds)


def test_no_boundary_cue_means_no_jitter():
    config = SyntheticConfig(num_videos=1, num_classes=4, seed=5, boundary_cue_px=0.0)
    plan = plan_dataset(config)[0]
    scene = simulate_scene(np.random.default_rng(0), plan, config)
    inst = plan.instances[0]
    onset = scene.xy[inst.start_frame:inst.middle_start_frame, scene.actor_index]
    assert _second_difference_px(onset).max() < 0.5


def test_bad_config_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="num_classes must be in 1..12"):
        SyntheticConfig(num_classes=13)
    with pytest.raises(ValueError, match="even"):
        SyntheticConfig(width_px=127)
    with pytest.raises(ValueError, match="cannot hold one action"):
        SyntheticConfig(video_duration_sec=(2.0, 3.0))
    with pytest.raises(ValueError, match="unknown keys"):
        SyntheticConfig.from_dict({"num_vidoes": 3})
