"""The pre-trained start of a run: the checkpoint its encoder starts from, checked before any work.

A config with ``model.require_pretrained: true`` (the ActivityNet, HACS and THUMOS14 presets) never trains its
encoder from random weights by accident: a stage that would start from ``model.encoder_weights`` (stage 1; stage 2
or extraction without an earlier stage's encoder; ``lofi experiment``'s ACP encoder) stops first when that is null
or names no file, with a message that names the file and the two ways on (the checkpoint, or an explicit start
from random weights). A weights path that is given but missing stops the same way whatever the flag says.

    check_encoder_start(config, config.model.encoder_weights)   # raises MissingWeightsError, or returns
"""

from __future__ import annotations

import os
from pathlib import Path

from lofi.config import RunConfig
from lofi.errors import UserError

#: How to train from random weights on a config that requires a pre-trained start: both keys, said explicitly.
FROM_SCRATCH = "-o model.encoder_weights=null -o model.require_pretrained=false"
_WHAT = ("a checkpoint lofi loads: the TSM release's layout (e.g. a Kinetics "
         "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment8_e50.pth), torchvision's, or a lofi encoder.pt; "
         "nothing is downloaded")


class MissingWeightsError(UserError, ValueError):
    """The encoder would start from random weights, or from a weights file that is not there."""


def check_encoder_start(config: RunConfig, weights: str | os.PathLike | None, *,
                        key: str = "model.encoder_weights") -> None:
    """Raise :class:`MissingWeightsError` when the encoder would start from ``weights`` (the value of config key
    ``key``) and that is not a file, or is None while ``config.model.require_pretrained`` holds."""
    required = config.model.require_pretrained
    if weights is None:
        if required:
            raise MissingWeightsError(
                f"{key}: null, but model.require_pretrained is true: this config starts the encoder from a "
                f"pre-trained checkpoint, never from random weights. Give the checkpoint with -o {key}=PATH "
                f"({_WHAT}), or train the encoder from random weights with {FROM_SCRATCH}")
        return
    path = Path(weights)
    if path.is_file():
        return
    problem = "is a folder, not a weights file" if path.is_dir() else "not found"
    if required:
        raise MissingWeightsError(
            f"{key}: {path}: {problem}; this config starts the encoder from that checkpoint "
            f"(model.require_pretrained: true). Put the file there, or point -o {key}=PATH at yours ({_WHAT}); "
            f"to train the encoder from random weights instead: {FROM_SCRATCH}")
    raise MissingWeightsError(f"{key}: {path}: {problem}; check the path, or start the encoder from random weights "
                              f"with -o {key}=null")


__all__ = ["FROM_SCRATCH", "MissingWeightsError", "check_encoder_start"]
