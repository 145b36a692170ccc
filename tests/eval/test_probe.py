"""The three-phase linear probe: snippet labels by hand, and scores on features that do or do not carry the phase."""

import json

import pytest
import torch

from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.features import feature_path, write_features
from lofi.eval.probe import BACKGROUND, BOUNDARY, MIDDLE, probe_boundaries, snippet_phases, synthetic_phases


def _video(video_id: str, subset: str, segments, duration_sec: float = 10.0) -> VideoAnnotation:
    return VideoAnnotation(video_id=video_id, subset=subset, duration_sec=duration_sec,
                           segments=tuple(Segment(s, e, "a") for s, e in segments))


def test_snippet_phases_from_known_phases_and_from_the_fraction_rule():
    video = _video("v", "training", [(2.0, 8.0)])
    # 10 snippets of 1 s, centres 0.5 ... 9.5; onset 2-3 s, middle 3-6.5 s, offset 6.5-8 s
    exact = snippet_phases(video, 10, duration_sec=10.0, phases={"v": [(2.0, 3.0, 6.5, 8.0)]})
    assert exact.tolist() == [BACKGROUND, BACKGROUND, BOUNDARY, MIDDLE, MIDDLE, MIDDLE, BOUNDARY, BOUNDARY,
                              BACKGROUND, BACKGROUND]
    # without phases: the first and last 30% of the 6 s instance (1.8 s each side): 2-3.8 and 6.2-8
    by_fraction = snippet_phases(video, 10, duration_sec=10.0, boundary_frac=0.3)
    assert by_fraction.tolist() == [BACKGROUND, BACKGROUND, BOUNDARY, BOUNDARY, MIDDLE, MIDDLE, BOUNDARY, BOUNDARY,
                                    BACKGROUND, BACKGROUND]


def test_synthetic_phases_read_frames_as_seconds(tmp_path):
    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps({"videos": {"v": {"fps": 10.0, "instances": [
        {"start_frame": 20, "middle_start_frame": 30, "middle_end_frame": 65, "end_frame": 80}]}}}))
    assert synthetic_phases(path) == {"v": [(2.0, 3.0, 6.5, 8.0)]}


def _write_set(tmp_path, *, informative: bool, inside_only: bool = False, seed: int = 0
               ) -> tuple[AnnotationSet, dict]:
    generator = torch.Generator().manual_seed(seed)
    videos, phases = [], {}
    for index in range(24):
        subset = "training" if index < 16 else "validation"
        start = 1.0 + float(torch.rand(1, generator=generator)) * 3
        onset, middle, offset = 1.0, 2.0 + float(torch.rand(1, generator=generator)) * 3, 1.0
        end = start + onset + middle + offset
        video = _video(f"v{index}", subset, [(start, end)], duration_sec=12.0)
        videos.append(video)
        phases[video.video_id] = [(start, start + onset, start + onset + middle, end)]
        labels = snippet_phases(video, 48, duration_sec=12.0, phases=phases)  # [T]
        features = torch.randn(8, 48, generator=generator)  # [D, T]
        if inside_only:  # one channel says "inside an instance", nothing tells the onset from the middle
            features[0] += 3.0 * (labels != BACKGROUND)
        elif informative:  # two channels carry the phase
            features[0] += 3.0 * (labels == BOUNDARY)
            features[1] += 3.0 * (labels == MIDDLE)
        write_features(feature_path(tmp_path, video.video_id), features, video_id=video.video_id,
                       meta={"duration_sec": 12.0})
    return AnnotationSet.from_videos(videos), phases


@pytest.mark.parametrize("informative", [True, False])
def test_the_probe_finds_the_boundary_phase_only_where_the_features_carry_it(tmp_path, informative):
    annotations, phases = _write_set(tmp_path, informative=informative)
    result = probe_boundaries(tmp_path, annotations, train_subset="training", val_subset="validation",
                              phases=phases)
    assert sum(result.val_counts) == result.num_val_snippets == 8 * 48
    assert result.num_train_snippets == 16 * 48
    if informative:
        assert result.boundary_accuracy > 0.9 and result.balanced_accuracy > 0.9
    else:  # noise: about chance (1/3) on held-out snippets, whatever the training fit
        assert result.balanced_accuracy < 0.5
        assert result.inside_accuracy < 0.65  # chance is 1/2
    assert all(sum(row) == pytest.approx(1.0) for row in result.confusion)
    assert [row[k] for k, row in enumerate(result.confusion)] == pytest.approx(
        [result.background_accuracy, result.boundary_accuracy, result.middle_accuracy])


def test_inside_accuracy_sees_the_extent_where_the_phases_are_confused(tmp_path):
    annotations, phases = _write_set(tmp_path, informative=False, inside_only=True)
    result = probe_boundaries(tmp_path, annotations, train_subset="training", val_subset="validation",
                              phases=phases)
    assert result.inside_accuracy > 0.9  # background vs the rest is plain
    assert result.confusion[0][0] > 0.9
    onset_taken_for_inside = result.confusion[1][1] + result.confusion[1][2]
    assert onset_taken_for_inside > 0.9 and result.boundary_accuracy < 0.8  # but which inside phase is a guess


def test_a_missing_feature_file_is_named(tmp_path):
    annotations = AnnotationSet.from_videos([_video("lost", "training", [(1.0, 3.0)]),
                                             _video("v", "validation", [(1.0, 3.0)])])
    with pytest.raises(FileNotFoundError, match="lost"):
        probe_boundaries(tmp_path, annotations, train_subset="training", val_subset="validation")
