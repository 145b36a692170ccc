"""Loading a run config with every check, the model registry's included: what the command line and
:func:`lofi.load_config` use.

``lofi.config`` sits below every layer and checks what it can alone (keys, types, ranges, ``eval.tiou``); the
model names and options bind to the registered builders' signatures (:func:`lofi.models.options.check_model_options`),
so that check is passed in from here, above ``models``.
"""

from __future__ import annotations

import os
from typing import Sequence

from lofi.config import RunConfig, check_run_config, load_config
from lofi.models.options import check_model_options


def check_models(config: RunConfig) -> None:
    """``model.encoder`` and ``model.head`` are registered and every entry of their options binds to its builder."""
    check_model_options(config.model, prefix="model.")


#: The checks beyond ``lofi.config``'s own, in order.
RUN_CHECKS = (check_models,)


def load_run_config(source: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """:func:`lofi.config.load_config` with the model checks: every mistake stops here, before any work, as one
    :class:`~lofi.config.ConfigError` naming where the value was set and its dotted key."""
    return load_config(source, overrides, checks=RUN_CHECKS)


def check_config(config: RunConfig, *, origin: str = "config") -> None:
    """The same checks on a config built in code; ``origin`` starts the messages."""
    check_run_config(config, checks=RUN_CHECKS, origin=origin)


__all__ = ["RUN_CHECKS", "check_config", "check_models", "load_run_config"]
