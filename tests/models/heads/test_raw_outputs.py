"""Typed raw outputs (lofi.core.raw_outputs): each head returns the type that names its decoder; the types read as
the old dicts, flatten as pytrees, pass through DistributedDataParallel, and decode as the dicts did."""

from __future__ import annotations

import types

import pytest
import torch
import torch.distributed as dist
import torch.utils._pytree as pytree
from torch.nn.parallel.distributed import _find_tensors

import lofi
from lofi.config import load_config
from lofi.core.raw_outputs import (RAW_OUTPUT_TYPES, DurationStartMapOutputs, PointOutputs, RawOutputs,
                                   StartEndMapOutputs)
from lofi.core.targets import SegmentTargets
from lofi.models import create_head, list_models
from lofi.postprocess.decode import DECODERS, decode_outputs, decode_raw
from lofi.models.options import encoder_kwargs, head_kwargs
from lofi.runtime.builders import build_detector, build_encoder

HEADS = [entry.name for entry in list_models("head")]
EXPECTED = {"gtad": StartEndMapOutputs, "bmn": DurationStartMapOutputs, "actionformer": PointOutputs}


def _outputs(head: str, **options) -> tuple[torch.nn.Module, RawOutputs]:
    torch.manual_seed(0)
    model = create_head(head, in_dim=16, num_classes=3, num_snippets=16, **options).eval()
    with torch.no_grad():
        return model, model(torch.randn(2, 16, 16))


def test_every_registered_head_has_a_type_and_decoder():
    assert set(HEADS) == set(EXPECTED) == set(RAW_OUTPUT_TYPES) == set(DECODERS)


@pytest.mark.parametrize("head", HEADS)
def test_heads_return_the_type_naming_their_decoder_and_decode_as_the_dict_did(head):
    _, outputs = _outputs(head)
    assert type(outputs) is EXPECTED[head] and outputs.decoder == head
    typed = decode_raw(outputs, top_k=50)
    option = "top_k_per_window" if head == "actionformer" else "top_k"
    plain = decode_outputs(head, {k: v.clone() for k, v in outputs.items()}, **{option: 50})
    assert len(typed) == len(plain) == 2
    for a, b in zip(typed, plain):
        assert torch.equal(a.segments, b.segments) and torch.equal(a.scores, b.scores)
        assert (a.labels is None) == (b.labels is None) and (a.labels is None or torch.equal(a.labels, b.labels))


def test_outputs_read_as_a_mapping_of_present_tensors():
    _, snippet = _outputs("gtad")
    _, video = _outputs("bmn", proposal_labels="video")
    assert list(snippet) == ["start", "end", "confidence", "snippet_logits"] and len(snippet) == 4
    assert list(video) == ["start", "end", "confidence", "video_logits"]
    assert "video_logits" not in snippet and snippet.get("video_logits") is None and snippet.video_logits is None
    with pytest.raises(KeyError):
        snippet["video_logits"]
    with pytest.raises(KeyError, match="no output 'logits'"):
        snippet["logits"] = torch.zeros(1)
    snippet["start"] = snippet["start"] + 1
    assert torch.equal(snippet.start, snippet["start"])
    doubled = snippet.map(lambda v: v.double())
    assert type(doubled) is StartEndMapOutputs and all(v.dtype == torch.float64 for v in doubled.values())
    assert "StartEndMapOutputs(start=[2, 16]" in repr(snippet)
    with pytest.raises(TypeError, match="decode_outputs"):
        decode_raw(dict(snippet))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decoded by 'gtad'"):
        decode_outputs("bmn", snippet)


@pytest.mark.parametrize("head", HEADS)
def test_outputs_flatten_as_pytrees_and_ddp_finds_their_tensors(head):
    _, outputs = _outputs(head)
    leaves, spec = pytree.tree_flatten(outputs)
    tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
    assert len(tensors) == len(outputs)
    rebuilt = pytree.tree_unflatten(leaves, spec)
    assert type(rebuilt) is type(outputs) and all(torch.equal(rebuilt[k], outputs[k]) for k in outputs)
    assert len(list(_find_tensors(outputs))) == len(outputs)


def test_ddp_with_unused_parameter_detection_trains_on_typed_outputs(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        head = create_head("gtad", in_dim=8, num_classes=2, num_snippets=8, hidden_dim=16, align_dim=16, map_dim=8,
                           num_samples=4, groups=4, width_per_group=2, stem_groups=2, class_hidden_dim=8)
        ddp = torch.nn.parallel.DistributedDataParallel(head, find_unused_parameters=True)
        outputs = ddp(torch.randn(2, 8, 8))
        assert type(outputs) is StartEndMapOutputs
        targets = SegmentTargets(segments=[torch.tensor([[0.25, 0.5]]), torch.tensor([[0.5, 1.0]])],
                                 labels=[torch.tensor([0]), torch.tensor([1])])
        head.loss(outputs, targets)["loss"].backward()
        assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
    finally:
        dist.destroy_process_group()


def test_training_builds_the_model_users_build_with_create_model():
    config = load_config("synthetic", ["model.encoder=tsm_resnet18_slim", "model.head=actionformer"])
    context = types.SimpleNamespace(config=config, classes=("a", "b"))
    torch.manual_seed(0)
    built = build_detector(context, None)  # type: ignore[arg-type]
    torch.manual_seed(0)
    frozen_bn = {"frozen_bn": True} if config.train.frozen_bn else {}
    public = lofi.create_model(encoder="tsm_resnet18_slim", head="actionformer", num_classes=2,
                               num_snippets=config.fidelity.num_snippets,
                               encoder_options={**encoder_kwargs(config.model), **frozen_bn},
                               head_options=head_kwargs(config.model))
    assert type(built) is type(public)
    mine, theirs = built.state_dict(), public.state_dict()
    assert list(mine) == list(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    torch.manual_seed(0)
    encoder = build_encoder(context, None)  # type: ignore[arg-type]
    assert type(encoder) is type(built.encoder)
