"""The options of registered encoders and heads, checked against their builders' signatures before any work.

``model.encoder_options`` and ``model.head_options`` have two forms:

- flat: the selected model's keyword options, ``{hidden_dim: 32}``;
- per model: options kept under registered names, ``{gtad: {hidden_dim: 32}, actionformer: {embed_dim: 64}}``.
  Only the selected model's entry is used (a model without one gets its defaults), so ``-o model.head=bmn``
  switches heads with nothing else to change.

The keys tell the forms apart: per model when every key is a registered name of that kind. A mapping that mixes
names and options is an error. :func:`check_model_options` (run by :func:`lofi.load_config`) checks the
names and every entry, selected or not: each option must be a keyword of the builder (for a builder that takes
``**options``, of the class its return annotation names, less ``ModelEntry.fixed_options``), not one that lofi
passes itself (a head's ``in_dim``, ``num_classes``, ``num_snippets``), and of the annotated type where the type is
a plain one (numbers, booleans, strings, ``Literal``, ``None``). Builders read the selected entry with
:func:`encoder_kwargs` / :func:`head_kwargs`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import typing
from typing import TYPE_CHECKING, Any, Mapping

import yaml

from lofi.config import KeyedCheckError, coerce_value
from lofi.models.registry import Kind, get_entry, list_models

if TYPE_CHECKING:
    from lofi.config import ModelConfig

#: What :func:`~lofi.models.registry.create_head` gives every head itself (from the encoder or the features, the
#: annotations and ``fidelity.num_snippets``): never a head option.
HEAD_INPUTS: tuple[str, ...] = ("in_dim", "num_classes", "num_snippets")
_OPTION_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
#: Options renamed so that their names carry their unit: old name -> new name. A config that still writes the old
#: name stops with a message naming the new one (never a silent alias: the old name reads as seconds).
RENAMED_OPTIONS: dict[str, str] = {"max_duration": "max_duration_snippets"}


class OptionError(KeyedCheckError):
    """A model name or option is wrong; ``key`` is the dotted config key where it was found."""


@functools.cache
def option_parameters(name: str, kind: Kind) -> dict[str, inspect.Parameter] | None:
    """The keyword options of registered model ``name``, with their defaults and (resolved) annotations; None when
    its builder takes ``**options`` whose target cannot be read (then any option passes the check)."""
    entry = get_entry(name, kind)
    builder = entry.builder()
    params = _named_parameters(builder)
    if params is None:  # `def tsm_resnet18(**options) -> TSMResNet`: the options are the class's keywords
        target = typing.get_type_hints(builder).get("return")
        params = _named_parameters(target) if inspect.isclass(target) else None
        if params is None:
            return None
    reserved = set(entry.fixed_options) | (set(HEAD_INPUTS) if kind == "head" else set())
    return {option: p for option, p in params.items() if option not in reserved}


def _named_parameters(function: Any) -> dict[str, inspect.Parameter] | None:
    """Keyword parameters of ``function`` (a class: its ``__init__``) with annotations resolved; None if it takes
    ``**kwargs``."""
    signature = inspect.signature(function)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return None
    hints = typing.get_type_hints(function.__init__ if inspect.isclass(function) else function)
    return {n: p.replace(annotation=hints.get(n, inspect.Parameter.empty))
            for n, p in signature.parameters.items() if p.kind in _OPTION_KINDS}


def selected_options(options: Mapping[str, Any], *, kind: Kind, name: str, key: str = "options") -> dict[str, Any]:
    """The keyword options of model ``name`` from ``options`` in either form (flat, or per model)."""
    entries = _per_model(options, kind=kind, key=key)
    if entries is None:
        return dict(options)
    return dict(entries.get(name) or {})


def encoder_kwargs(model: ModelConfig) -> dict[str, Any]:
    """The keyword options of the selected encoder (``model.encoder_options`` in either form)."""
    return selected_options(model.encoder_options, kind="encoder", name=model.encoder, key="model.encoder_options")


def head_kwargs(model: ModelConfig) -> dict[str, Any]:
    """The keyword options of the selected head (``model.head_options`` in either form)."""
    return selected_options(model.head_options, kind="head", name=model.head, key="model.head_options")


def check_model_options(model: ModelConfig, *, prefix: str = "model.") -> None:
    """Check ``model.encoder`` / ``model.head`` against the registry and every entry of their options against the
    builders' signatures; an :class:`OptionError` naming the dotted key, the model and its valid options."""
    for kind, name, options, field in (("encoder", model.encoder, model.encoder_options, "encoder_options"),
                                       ("head", model.head, model.head_options, "head_options")):
        try:
            get_entry(name, kind)
        except ValueError as exc:
            raise OptionError(f"{prefix}{kind}", str(exc)) from None
        key = f"{prefix}{field}"
        entries = _per_model(options, kind=kind, key=key)
        if entries is None:
            _check_entry(options, kind=kind, name=name, key=key, flat=True)
        else:
            for entry_name, entry_options in entries.items():
                _check_entry(entry_options or {}, kind=kind, name=entry_name, key=f"{key}.{entry_name}", flat=False)


def _per_model(options: Mapping[str, Any], *, kind: Kind, key: str) -> dict[str, Mapping[str, Any] | None] | None:
    """The per-model entries of ``options``, or None for the flat form."""
    names = [e.name for e in list_models(kind)]
    models = [k for k in options if k in names]
    if not models:
        return None
    others = [str(k) for k in options if k not in names]
    if others:
        raise OptionError(key, f"mixes per-{kind} entries ({', '.join(models)}) with options ({', '.join(others)}): "
                               f"put every option under its {kind}'s name, e.g. "
                               f"{_flow({models[0]: {others[0]: options[others[0]]}})}")
    for model_name in models:
        if options[model_name] is not None and not isinstance(options[model_name], Mapping):
            raise OptionError(f"{key}.{model_name}", f"expected a mapping of {kind} {model_name!r}'s options, got "
                                                     f"{options[model_name]!r}")
    return {k: options[k] for k in models}


def _check_entry(options: Mapping[str, Any], *, kind: Kind, name: str, key: str, flat: bool) -> None:
    params = option_parameters(name, kind)
    if params is None:
        return
    unknown = [str(option) for option in options if option not in params]
    if unknown:
        where = f"{key}.{unknown[0]}" if len(unknown) == 1 else key
        raise OptionError(where, _unknown_message(unknown, options, kind=kind, name=name, key=key, params=params,
                                                  flat=flat))
    for option, value in options.items():
        try:
            coerce_value(value, params[option].annotation)
        except TypeError:  # a type the check does not read (a sequence of pairs, ...): the builder checks it
            continue
        except ValueError as exc:
            raise OptionError(f"{key}.{option}", f"{exc} ({kind} {name!r})") from None


def _unknown_message(unknown: list[str], options: Mapping[str, Any], *, kind: Kind, name: str, key: str,
                     params: Mapping[str, inspect.Parameter], flat: bool) -> str:
    entry = get_entry(name, kind)
    for option in unknown:
        if option in RENAMED_OPTIONS and RENAMED_OPTIONS[option] in params:
            return (f"{option!r} was renamed {RENAMED_OPTIONS[option]!r} (the same value, with its unit in the name); "
                    f"write {key}: {_flow({RENAMED_OPTIONS[option]: options[option]})}")
        if kind == "head" and option in HEAD_INPUTS:
            return (f"{option!r} is not a head option: lofi gives every head in_dim (from the encoder or the "
                    f"features), num_classes (from the annotations) and num_snippets (fidelity.num_snippets)")
        if option in entry.fixed_options:
            return (f"{option!r} is set by {kind} {name!r} itself, not an option; pick another registered {kind} "
                    f"(`lofi models`) to change it")
    what = (f"{unknown[0]!r} is not an option" if len(unknown) == 1
            else f"{', '.join(map(repr, unknown))} are not options")
    owners = [e.name for e in list_models(kind) if e.name != name and _accepts(e.name, kind, unknown)]
    hint = ""
    if len(unknown) == 1 and not owners:
        models = [e.name for e in list_models(kind)]
        close = difflib.get_close_matches(unknown[0], list(params), n=1, cutoff=0.6)
        near_model = difflib.get_close_matches(unknown[0], models, n=1, cutoff=0.6)
        if flat and near_model and isinstance(options[unknown[0]], Mapping):
            hint = f" (did you mean the per-{kind} entry {near_model[0]!r}?)"
        elif close:
            hint = f" (did you mean {close[0]!r}?)"
    text = f"{what} of {kind} {name!r}{hint}; its options: {', '.join(params)}"
    if flat and owners:
        known = {o: v for o, v in options.items() if o not in unknown}
        example = {owners[0]: {o: options[o] for o in unknown}, **({name: known} if known else {})}
        text += (f". They are options of {', '.join(owners)}: to switch {kind}s keep options per {kind}, e.g. "
                 f"{key}: {_flow(example)}")
    return text


def _accepts(name: str, kind: Kind, options: list[str]) -> bool:
    params = option_parameters(name, kind)
    return params is not None and all(o in params for o in options)


def _flow(data: Any) -> str:
    """``data`` as one line of YAML, as it would be written in a config or after ``-o``."""
    return yaml.safe_dump(data, default_flow_style=True, sort_keys=False, width=10 ** 6).strip()
