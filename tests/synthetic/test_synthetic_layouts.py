"""The generator's layouts (ActivityNet-like, THUMOS-like, mixed) and ``max_instances_per_video``, on plans."""

import numpy as np
import pytest

from lofi.cli import main
from lofi.data.formats import load_annotations
from lofi.data.synthetic import SyntheticConfig, plan_dataset
from lofi.cli import SYNTH_LAYOUTS
from lofi.data.synthetic.config import LAYOUT_DEFAULTS, LAYOUTS
from lofi.data.synthetic.generate import GENERATOR_VERSION


def _plans(layout, **overrides):
    config = SyntheticConfig.for_layout(layout, **{"num_videos": 36, "num_classes": 6, "seed": 4, **overrides})
    return config, plan_dataset(config)


def _lengths_sec(config, plans):
    return np.array([inst.num_frames / config.fps for plan in plans for inst in plan.instances])


def test_for_layout_sets_the_layout_ranges_and_overrides_win():
    config = SyntheticConfig.for_layout("activitynet")
    assert config.layout == "activitynet" and config.max_instances_per_video == 3
    assert config.middle_sec == (2.5, 7.0) and config.onset_sec == config.offset_sec == (0.6, 2.0)
    assert config.gap_sec == (0.8, 3.0) and config.video_duration_sec == (16.0, 24.0)
    thumos = SyntheticConfig.for_layout("thumos", video_duration_sec=(25.0, 35.0), num_classes=3)
    assert thumos.middle_sec == (0.8, 2.5) and thumos.gap_sec == (0.6, 2.5) and thumos.onset_sec == (0.4, 1.0)
    assert thumos.video_duration_sec == (25.0, 35.0) and thumos.num_classes == 3
    assert thumos.max_instances_per_video is None
    assert SyntheticConfig.for_layout("mixed") == SyntheticConfig()
    assert set(LAYOUT_DEFAULTS) == set(LAYOUTS) == set(SYNTH_LAYOUTS) == {"mixed", "activitynet", "thumos",
                                                                          "discrepancy"}


def test_activitynet_layout_one_class_per_video_balanced_over_videos():
    config, plans = _plans("activitynet")
    for plan in plans:
        assert 1 <= len(plan.instances) <= 3
        assert len({inst.label for inst in plan.instances}) == 1
    for subset in ("training", "validation"):
        labels = [plan.instances[0].label for plan in plans if plan.subset == subset]
        counts = [labels.count(c) for c in config.class_names]
        assert max(counts) - min(counts) <= 1
    lengths = _lengths_sec(config, plans)
    assert lengths.min() >= 3.0 + 0.6 + 0.6 - 0.2  # long actions (a frame of rounding per phase)


def test_discrepancy_layout_boundaries_cannot_be_read_from_the_middle():
    config, plans = _plans("discrepancy", num_videos=120)
    assert config.boundary_cue_px == LAYOUT_DEFAULTS["discrepancy"]["boundary_cue_px"]
    for plan in plans:  # one class per video, as activitynet
        assert 1 <= len(plan.instances) <= 3 and len({inst.label for inst in plan.instances}) == 1
    onsets = np.array([(i.middle_start_frame - i.start_frame) / config.fps for p in plans for i in p.instances])
    offsets = np.array([(i.end_frame - i.middle_end_frame) / config.fps for p in plans for i in p.instances])
    middles = np.array([(i.middle_end_frame - i.middle_start_frame) / config.fps for p in plans for i in p.instances])
    # onsets and offsets spread as widely as the middle and are independent of it and of each other
    assert onsets.std() > 0.6 * middles.std() and offsets.std() > 0.6 * middles.std()
    assert abs(np.corrcoef(onsets, middles)[0, 1]) < 0.25 and abs(np.corrcoef(onsets, offsets)[0, 1]) < 0.25
    # so that the middle phase alone leaves most of an instance's extent unknown, unlike activitynet's
    an_config, an_plans = _plans("activitynet", num_videos=120)
    an_onsets = np.array([(i.middle_start_frame - i.start_frame) / an_config.fps for p in an_plans for i in p.instances])
    assert onsets.std() > 2 * an_onsets.std()


def test_activitynet_layout_is_deterministic_and_keeps_the_phases():
    config, plans = _plans("activitynet", num_videos=8)
    assert plan_dataset(config) == plans
    for plan in plans:
        for inst in plan.instances:
            assert inst.start_frame < inst.middle_start_frame < inst.middle_end_frame < inst.end_frame


def test_thumos_layout_is_dense_short_and_several_classes_per_video():
    an_config, an_plans = _plans("activitynet")
    th_config, th_plans = _plans("thumos")
    classes_per_video = np.mean([len({i.label for i in p.instances}) for p in th_plans])
    assert classes_per_video >= 2.5
    instances_per_video = np.mean([len(p.instances) for p in th_plans])
    assert instances_per_video > 2 * np.mean([len(p.instances) for p in an_plans])
    assert instances_per_video >= 4
    th_lengths, an_lengths = _lengths_sec(th_config, th_plans), _lengths_sec(an_config, an_plans)
    assert th_lengths.max() <= 2.5 + 1.0 + 1.0 + 0.2
    assert np.median(th_lengths) < 0.5 * np.median(an_lengths)
    # labels balanced over the instances of each subset, as in the mixed layout
    for subset in ("training", "validation"):
        labels = [i.label for p in th_plans if p.subset == subset for i in p.instances]
        counts = [labels.count(c) for c in th_config.class_names]
        assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("kwargs", [dict(num_videos=10, num_classes=4, seed=7),
                                    dict(num_videos=5, num_classes=12, seed=2, fps=12.5)])
def test_mixed_layout_plans_are_the_default_configs(kwargs):
    default = SyntheticConfig(**kwargs)
    assert plan_dataset(SyntheticConfig.for_layout("mixed", **kwargs)) == plan_dataset(default)
    assert plan_dataset(SyntheticConfig(layout="mixed", max_instances_per_video=None, **kwargs)) == \
        plan_dataset(default)


def test_max_instances_is_respected_and_only_truncates():
    full = plan_dataset(SyntheticConfig(num_videos=12, num_classes=4, seed=5))
    assert max(len(p.instances) for p in full) > 2
    capped = plan_dataset(SyntheticConfig(num_videos=12, num_classes=4, seed=5, max_instances_per_video=2))
    for a, b in zip(full, capped):
        assert 1 <= len(b.instances) <= 2 and a.num_frames == b.num_frames
        # the same timeline, cut after the cap (labels are re-balanced over the remaining instances)
        assert [i.start_frame for i in b.instances] == [i.start_frame for i in a.instances][:2]
    one = plan_dataset(SyntheticConfig.for_layout("thumos", num_videos=6, max_instances_per_video=1))
    assert all(len(p.instances) == 1 for p in one)


@pytest.mark.parametrize("kwargs, message", [
    (dict(layout="charades"), "layout must be one of mixed, activitynet, thumos"),
    (dict(max_instances_per_video=0), "max_instances_per_video must be None or an integer >= 1"),
    (dict(max_instances_per_video=2.5), "max_instances_per_video must be None or an integer >= 1"),
    (dict(max_instances_per_video=True), "max_instances_per_video must be None or an integer >= 1"),
])
def test_bad_layout_values_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**kwargs)


def test_for_layout_rejects_unknown_or_conflicting_layouts():
    with pytest.raises(ValueError, match="layout must be one of"):
        SyntheticConfig.for_layout("thumos14")
    with pytest.raises(ValueError, match="got layout='thumos'"):
        SyntheticConfig.for_layout("activitynet", layout="thumos")


def test_layout_survives_the_metadata_round_trip():
    config = SyntheticConfig.for_layout("activitynet", num_videos=3)
    assert SyntheticConfig.from_dict(config.to_dict()) == config
    assert GENERATOR_VERSION == 3


def test_cli_synth_layout_renders_a_tiny_activitynet_set(tmp_path):
    out = tmp_path / "an"
    code = main(["synth", str(out), "--layout", "activitynet", "--videos", "2", "--classes", "2", "--width", "32",
                 "--height", "32", "--fps", "5", "--min-duration-sec", "8", "--max-duration-sec", "9",
                 "--workers", "1", "-q"])
    assert code == 0
    annotations = load_annotations(out / "annotations.json").annotations
    for video_id in annotations.videos:
        video = annotations[video_id]
        assert 8.0 - 0.2 <= video.duration_sec <= 9.0 + 0.2  # the flags override the layout's 16-24 s
        assert 1 <= len(video.segments) <= 3 and len({s.label for s in video.segments}) == 1


def test_cli_synth_layout_uses_the_layout_duration_unless_given(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--layout", "activitynet", "--min-duration-sec", "30", "-q"]) == 2
    assert "video_duration_sec" in capsys.readouterr().err  # 30 s > the layout's 24 s maximum
