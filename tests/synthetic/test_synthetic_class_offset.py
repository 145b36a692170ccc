"""``class_offset``: class k of a synthetic dataset is motion pattern k + class_offset (a source dataset of other
classes, for the ACP encoder of ``lofi experiment lofi-table``); at 0 the generator writes what it wrote before."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lofi.cli import main
from lofi.data.formats import load_annotations
from lofi.data.synthetic import SyntheticConfig, generate_dataset
from lofi.data.synthetic.generate import plan_dataset
from lofi.data.synthetic.motions import MOTION_PATTERNS

#: Two tiny datasets and the sha256 of the files main's generator (before class_offset existed) wrote for them.
# synthetic.json digests as of generator version 3 (its version field; annotations and frames unchanged)
GOLDEN = {
    "mixed": (SyntheticConfig(num_videos=3, num_classes=3, seed=5, width_px=32, height_px=32,
                              video_duration_sec=(4.0, 5.0), middle_sec=(1.0, 1.5), gap_sec=(0.5, 1.0),
                              num_distractors=(1, 1), class_offset=0),
              {"annotations.json": "bee977b3fd4efd011d8f207f5d75425a16b122363b842caec84c33aa313c78ee",
               "synthetic.json": "1363098094a9b7d57ef89b242ac9504d2ec823b9ba1a46a2570f084a21622ec1"}),
    "activitynet": (SyntheticConfig.for_layout("activitynet", num_videos=3, num_classes=4, seed=7, width_px=32,
                                               height_px=32, video_duration_sec=(8.0, 9.0), shape_cue=True,
                                               num_distractors=(1, 1), class_offset=0),
                    {"annotations.json": "e88cd54df72ec499181d141429d7c38664e81ee28411bff595d5a214da3e464c",
                     "synthetic.json": "77cfec3a8af9f87d2def5a8f45ad977cd67c2bccecf32401b5ba2a5462216c08"}),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_offset_zero_writes_the_bytes_main_wrote(name, tmp_path):
    config, digests = GOLDEN[name]
    generate_dataset(tmp_path, config, workers=1, progress=False)
    for file, digest in digests.items():
        assert hashlib.sha256((tmp_path / file).read_bytes()).hexdigest() == digest, file
    assert "class_offset" not in json.loads((tmp_path / "synthetic.json").read_text())["config"]


def test_an_offset_picks_the_next_patterns_on_the_same_timelines():
    base = SyntheticConfig(num_videos=6, num_classes=4, seed=2)
    source = SyntheticConfig(num_videos=6, num_classes=4, seed=2, class_offset=4)
    patterns = tuple(MOTION_PATTERNS)
    assert source.class_names == patterns[4:8] and not set(source.class_names) & set(base.class_names)
    rename = dict(zip(base.class_names, source.class_names))
    for a, b in zip(plan_dataset(base), plan_dataset(source)):  # same draws, the labels moved by the offset
        assert [(i.start_frame, i.end_frame, rename[i.label]) for i in a.instances] == \
               [(i.start_frame, i.end_frame, i.label) for i in b.instances]
    assert SyntheticConfig.from_dict(source.to_dict()) == source and source.to_dict()["class_offset"] == 4


@pytest.mark.parametrize("offset", [9, -1])
def test_an_offset_past_the_patterns_is_refused(offset):
    with pytest.raises(ValueError, match=r"class_offset \+ num_classes must be at most 12"):
        SyntheticConfig(num_classes=4, class_offset=offset)


def test_cli_synth_class_offset(tmp_path: Path, capsys):
    out = tmp_path / "source"
    assert main(["synth", str(out), "--videos", "2", "--classes", "2", "--class-offset", "3", "--width", "32",
                 "--height", "32", "--min-duration-sec", "4", "--max-duration-sec", "5", "--workers", "1",
                 "-q"]) == 0
    capsys.readouterr()
    classes = set(load_annotations(out / "annotations.json").annotations.classes)
    assert classes and classes <= set(tuple(MOTION_PATTERNS)[3:5])
    assert json.loads((out / "synthetic.json").read_text())["config"]["class_offset"] == 3
    assert main(["synth", str(tmp_path / "bad"), "--classes", "6", "--class-offset", "7", "-q"]) == 2
    assert "class_offset" in capsys.readouterr().err


def test_source_classes_never_share_a_target_pose():
    import numpy as np

    from lofi.data.synthetic.render import shape_axis_rad

    for n in (2, 3, 4, 6):
        target = [shape_axis_rad(k, n) for k in range(n)]
        assert target == pytest.approx([np.pi * k / n for k in range(n)])  # the target's axes are as before
        source = [shape_axis_rad(k, n) for k in range(n, min(2 * n, len(MOTION_PATTERNS)))]
        gaps = [abs(((s - t) + np.pi / 2) % np.pi - np.pi / 2) for s in source for t in target]  # mod 180 degrees
        assert min(gaps) == pytest.approx(np.pi / (2 * n))  # halfway between two target axes
