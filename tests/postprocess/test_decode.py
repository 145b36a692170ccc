"""Raw head outputs -> detections in seconds: every head's decoder via decode_outputs, then window_detections."""

from __future__ import annotations

import pytest
import torch

from lofi.models import create_head
from lofi.postprocess import PostprocessConfig
from lofi.postprocess.candidates import Candidates
from lofi.postprocess.decode import DECODERS, decode_outputs, window_detections

CLASSES = ["jump", "run", "swim"]


@pytest.mark.parametrize("head", sorted(DECODERS))
def test_every_head_decodes_to_detections_in_seconds(head):
    torch.manual_seed(0)
    model = create_head(head, in_dim=16, num_classes=len(CLASSES), num_snippets=16).eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 16, 16))
    candidates = decode_outputs(head, outputs)
    assert len(candidates) == 2
    for b, cand in enumerate(candidates):
        assert len(cand) > 0 and bool(((cand.segments >= 0) & (cand.segments <= 1)).all())
        logits = outputs["video_logits"][b] if cand.labels is None else None
        dets = window_detections(cand, window_start_sec=10.0, window_end_sec=42.0, classes=CLASSES,
                                 config=PostprocessConfig(max_detections=5), video_logits=logits)
        assert 0 < len(dets) <= 5
        assert all(10.0 <= d.start_sec <= d.end_sec <= 42.0 and d.label in CLASSES for d in dets)
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)


def test_class_agnostic_candidates_take_the_top_video_classes():
    cand = Candidates(segments=torch.tensor([[0.25, 0.5], [0.0, 1.0]]), scores=torch.tensor([0.8, 0.2]))
    logits = torch.logit(torch.tensor([0.1, 0.9, 0.5]))  # run 0.9, swim 0.5, jump 0.1
    dets = window_detections(cand, window_start_sec=0.0, window_end_sec=8.0, classes=CLASSES,
                             config=PostprocessConfig(method="none", min_score=0.0), video_logits=logits,
                             video_top_k=2)
    assert [(d.label, d.start_sec, d.end_sec, round(d.score, 6)) for d in dets] == [
        ("run", 2.0, 4.0, 0.72), ("swim", 2.0, 4.0, 0.4), ("run", 0.0, 8.0, 0.18), ("swim", 0.0, 8.0, 0.1)]
    with pytest.raises(ValueError, match="need the window's video_logits"):
        window_detections(cand, window_start_sec=0.0, window_end_sec=8.0, classes=CLASSES,
                          config=PostprocessConfig())


def test_perfect_gtad_output_recovers_the_segment_and_class():
    # outputs as a perfect model would give them for "swim from 25% to 50% of the window"
    head = create_head("gtad", in_dim=8, num_classes=len(CLASSES), num_snippets=8)
    t = 8
    start, end = torch.full((1, t), 0.01), torch.full((1, t), 0.01)
    start[0, 2], end[0, 3] = 0.99, 0.99  # snippet 2 starts at 2/8, snippet 3 ends at 4/8
    confidence = torch.full((1, 2, t, t), 0.01)
    confidence[0, :, 2, 3] = 0.99
    outputs = {"start": start, "end": end, "confidence": confidence * head.valid_mask,
               "video_logits": torch.tensor([[-5.0, -5.0, 5.0]])}
    cand = decode_outputs("gtad", outputs)[0]
    dets = window_detections(cand, window_start_sec=100.0, window_end_sec=116.0, classes=CLASSES,
                             config=PostprocessConfig(max_detections=1), video_logits=outputs["video_logits"][0])
    assert (dets[0].label, dets[0].start_sec, dets[0].end_sec) == ("swim", 104.0, 108.0)


def test_unknown_head_and_bad_window():
    with pytest.raises(ValueError, match="decoders exist for"):
        decode_outputs("tsm_resnet18", {})
    cand = Candidates(segments=torch.zeros(0, 2), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="after its start"):
        window_detections(cand, window_start_sec=5.0, window_end_sec=5.0, classes=CLASSES, config=PostprocessConfig())
