"""Metrics as a study names them: a registry name, or ``{name, args}`` with the metric's constructor options.

``args`` are validated when the study is loaded, against the metric class's constructor (its type hints and
defaults), without building the metric: an unknown option or a bad value is an error naming the key. A metric that
takes shared settings (:attr:`~divtrace.score.metrics.Metric.settings_type`: the study's NLI model, EAD's
vocabulary) receives them from the scorer as its ``settings`` argument, and its ``args`` may override the fields
of those settings.
"""

from __future__ import annotations

import inspect
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

if TYPE_CHECKING:
    from divtrace.score.metrics import Metric

#: The constructor parameter through which a metric receives its shared settings object.
SETTINGS_PARAMETER = "settings"


class MetricSpec(BaseModel):
    """A metric with options: ``name`` (``divtrace metrics``) and ``args`` (its constructor's keywords)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)


#: How a study names a metric: its registry name, or a :class:`MetricSpec`.
MetricChoice = str | MetricSpec


def as_spec(choice: MetricChoice) -> MetricSpec:
    """``choice`` as a :class:`MetricSpec` (a bare name has no args)."""
    return choice if isinstance(choice, MetricSpec) else MetricSpec(name=choice)


def _options_model(cls: type[Metric]) -> type[BaseModel]:
    """A pydantic model of the keywords ``cls`` accepts: its constructor's named parameters (but ``settings``) and,
    when it takes ``**options`` and shared settings, the fields of those settings."""
    init = cls.__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # a hint only importable under TYPE_CHECKING: validate that parameter as Any
        hints = {}
    fields: dict[str, Any] = {}
    open_keywords = False
    for name, parameter in inspect.signature(init).parameters.items():
        if name == "self" or name == SETTINGS_PARAMETER or parameter.kind is parameter.VAR_POSITIONAL:
            continue
        if parameter.kind is parameter.VAR_KEYWORD:
            open_keywords = True
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[name] = (hints.get(name, Any), default)
    if open_keywords and cls.settings_type is not None:
        for name, info in cls.settings_type.model_fields.items():
            fields.setdefault(name, (info.annotation, None))
    return create_model(f"{cls.__name__}Args", __config__=ConfigDict(extra="forbid"), **fields)


def validated_args(cls: type[Metric], args: dict[str, Any], where: str = "args") -> dict[str, Any]:
    """``args`` checked against ``cls``'s options (:func:`_options_model`) and converted to their declared types;
    only the keys given are returned.

    Raises:
        ValueError: an unknown option or a bad value; the message names ``<where>.<option>``.
    """
    model = _options_model(cls)
    try:
        checked = model.model_validate(args)
    except ValidationError as err:
        problems = [
            f"{'.'.join([where, *(str(part) for part in error['loc'])])}: {error['msg']}" for error in err.errors()
        ]
        raise ValueError("; ".join(problems)) from None
    return {name: getattr(checked, name) for name in args}
