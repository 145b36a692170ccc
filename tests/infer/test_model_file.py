"""The exported model file: tensors and JSON only; a pickle is refused unread; versions are read or refused clearly."""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lofi.infer.model_file import (FORMAT_VERSION, ModelFileError, ModelSpec, WindowSpec, read_model_file,
                                   read_model_spec, write_model_file)


def _spec(**changes) -> ModelSpec:
    spec = ModelSpec(classes=["a", "b"], encoder="tsm_resnet18", encoder_options={"width": 0.5}, head="gtad",
                     head_options={"hidden_dim": 32}, feature_dim=256, num_snippets=16, frame_size_px=64,
                     frames_per_snippet=2, frame_stride=1,
                     postprocess={"method": "nms", "iou_threshold": 0.5, "sigma": 0.5, "min_score": 0.0,
                                  "max_detections": 100},
                     windows=WindowSpec(snippets_per_sec=4.0, stride_snippets=8))
    return replace(spec, **changes)


def _states() -> tuple[dict, dict]:
    torch.manual_seed(0)
    encoder = {"conv1.weight": torch.randn(4, 3, 3, 3), "bn1.num_batches_tracked": torch.tensor(7)}
    head = {"fc.weight": torch.randn(2, 4), "fc.bias": torch.zeros(2, dtype=torch.float16)}
    return encoder, head


def test_round_trip(tmp_path):
    encoder, head = _states()
    path = write_model_file(tmp_path / "m.lofi", _spec(), encoder_state=encoder, head_state=head)
    spec, encoder_back, head_back = read_model_file(path)
    assert spec == _spec() and read_model_spec(path) == spec
    assert spec.windows == WindowSpec(snippets_per_sec=4.0, stride_snippets=8) and spec.format_version == FORMAT_VERSION
    for original, back in ((encoder, encoder_back), (head, head_back)):
        assert set(original) == set(back)
        for key in original:
            assert back[key].dtype == original[key].dtype and torch.equal(back[key], original[key]), key
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file, renamed


def test_tied_weights_are_written_as_copies(tmp_path):
    shared = torch.randn(3, 3)
    write_model_file(tmp_path / "m.lofi", _spec(), encoder_state={"a": shared, "b": shared},
                     head_state={"c": torch.ones(1)})
    _, encoder, _ = read_model_file(tmp_path / "m.lofi")
    assert torch.equal(encoder["a"], shared) and torch.equal(encoder["b"], shared)


class _RunsCode:
    """Unpickling this calls ``Path.touch`` on a marker file: what a malicious model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_crafted_pickle_is_refused_without_being_run(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.lofi"
    path.write_bytes(pickle.dumps(_RunsCode(marker), protocol=protocol))
    for read in (read_model_file, read_model_spec):
        with pytest.raises(ModelFileError, match=r"evil.lofi: a pickle \(torch.save\) file, refused: loading it "
                                                 r"could run code"):
            read(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the file does run code when unpickled: the refusal is what saved us
    assert marker.exists()


def test_a_torch_save_file_is_refused(tmp_path):
    path = tmp_path / "encoder.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelFileError, match="a pickle"):
        read_model_file(path)


def _rewrite_spec(path: Path, change) -> None:
    """Rewrite the JSON spec in a model file's header (the header's length may change)."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    spec = json.loads(header["__metadata__"]["lofi"])
    change(spec)
    header["__metadata__"]["lofi"] = json.dumps(spec)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + size:])


def test_versions_newer_are_refused_and_the_current_one_is_read(tmp_path):
    encoder, head = _states()
    path = write_model_file(tmp_path / "m.lofi", _spec(), encoder_state=encoder, head_state=head)
    _rewrite_spec(path, lambda s: s.update(lofi_version="0.1.0.dev0"))
    assert read_model_spec(path).classes == ["a", "b"]  # an untouched rewrite reads back
    _rewrite_spec(path, lambda s: s.update(format_version=FORMAT_VERSION + 1, lofi_version="9.0"))
    with pytest.raises(ModelFileError, match=rf"written by lofi 9.0 in model format {FORMAT_VERSION + 1}; this lofi "
                                             rf".* reads formats up to {FORMAT_VERSION}: upgrade lofi"):
        read_model_file(path)
    _rewrite_spec(path, lambda s: s.update(format_version=0))
    with pytest.raises(ModelFileError, match="model format 0 .* is no longer read"):
        read_model_spec(path)
    _rewrite_spec(path, lambda s: s.update(format_version=FORMAT_VERSION, new_field=1))
    with pytest.raises(ModelFileError, match=r"unknown fields \['new_field'\]"):
        read_model_spec(path)


def test_other_files_are_named(tmp_path):
    cases = {"empty.lofi": b"", "text.lofi": b"hello, this is text and not a model\n", "short.lofi": b"\x01\x02"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelFileError, match=rf"{name}: not a lofi model file"):
            read_model_file(tmp_path / name)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelFileError, match="a safetensors file without a lofi model spec"):
        read_model_file(tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="no such model file"):
        read_model_file(tmp_path / "absent.lofi")
    with pytest.raises(ModelFileError, match="is a folder"):
        read_model_file(tmp_path)
    encoder, head = _states()
    path = write_model_file(tmp_path / "cut.lofi", _spec(), encoder_state=encoder, head_state=head)
    path.write_bytes(path.read_bytes()[:-8])  # a download cut short
    with pytest.raises(ModelFileError, match="damaged model file"):
        read_model_file(path)
