"""The detector's torch threads on a CPU: the cores the decoder leaves, set only while it runs."""

from __future__ import annotations

import pytest
import torch

from lofi.infer.detector import Detector
from lofi.infer.model_file import ModelSpec
from lofi.models import create_encoder, create_head


def _detector(**kwargs) -> Detector:
    encoder = create_encoder("tsm_resnet18_slim")
    head = create_head("actionformer", in_dim=encoder.feature_dim, num_classes=2, num_snippets=8)
    spec = ModelSpec(classes=["a", "b"], encoder="tsm_resnet18_slim", encoder_options={}, head="actionformer",
                     head_options={}, feature_dim=encoder.feature_dim, num_snippets=8, frame_size_px=32,
                     frames_per_snippet=1, frame_stride=1, postprocess={"method": "nms"})
    return Detector(spec=spec, encoder=encoder, head=head, **kwargs)


def test_model_threads_leave_the_decoder_its_cores_and_are_restored(monkeypatch) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
        assert _detector(decode_threads=1).model_threads() == 3
        assert _detector(decode_threads=0).model_threads() == 3  # FFmpeg chooses: counted as one
        assert _detector(decode_threads=4).model_threads() == 1  # at least one
        assert _detector(torch_threads=2).model_threads() == 2
        torch.set_num_threads(2)
        assert _detector(decode_threads=1).model_threads() == 2  # never more than torch's own setting
        detector = _detector(decode_threads=1)
        assert list(detector.detect_many([])) == [] and torch.get_num_threads() == 2  # restored after the run
        with pytest.raises(ValueError, match="torch_threads"):
            _detector(torch_threads=0)
    finally:
        torch.set_num_threads(before)
