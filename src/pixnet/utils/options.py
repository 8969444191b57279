"""Typed option sets: frozen dataclasses whose ``Literal`` fields check themselves, merged from mappings."""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Self

__all__ = ["Options", "literal_choices"]


def literal_choices(hint) -> tuple | None:
    """The values a ``Literal[...]`` (or ``Literal[...] | None``) hint allows, else ``None``."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    for arg in typing.get_args(hint):
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return None


class Options:
    """Base of pixnet's option dataclasses (decorate subclasses with ``@dataclass(frozen=True)``).

    A field left at ``None`` means "the preset's value" where the preset has one. ``Literal`` fields are
    checked on creation; subclasses check ranges in ``_check``.
    """

    def __post_init__(self) -> None:
        for name, hint in typing.get_type_hints(type(self)).items():
            choices = literal_choices(hint)
            value = getattr(self, name, None)
            if choices is not None and value is not None and value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
            integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            if _is_int_hint(hint) and value is not None and not integer:
                raise ValueError(f"{name} must be an integer, got {value!r}.")
        self._check()

    def _check(self) -> None:
        """Check value ranges (subclasses)."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The options' names."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def merged(self, values: Mapping[str, Any] | None) -> Self:
        """A copy with ``values`` set; names that are not options are refused."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.field_names()))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no option {', '.join(unknown)}; its options are {self.field_names()}."
            )
        return dataclasses.replace(self, **values)

    def resolved(self, *defaults: Any) -> Self:
        """A copy whose ``None`` fields take the value of the first of ``defaults`` (objects or mappings) having one."""

        def default(name: str):
            for source in defaults:
                value = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
                if value is not None:
                    return value
            return None

        return dataclasses.replace(
            self, **{name: default(name) for name in self.field_names() if getattr(self, name) is None}
        )

    def to_dict(self) -> dict:
        """The options as a dict."""
        return dataclasses.asdict(self)


def _is_int_hint(hint) -> bool:
    """``int`` or ``int | None``."""
    return hint is int or (typing.get_origin(hint) in (typing.Union, types.UnionType) and int in typing.get_args(hint))


def check_positive(options: Options, *names: str, allow_zero: bool = False) -> None:
    """Refuse fields (when set) that are not finite numbers > 0 (or >= 0 with ``allow_zero``)."""
    for name in names:
        value = getattr(options, name)
        if value is None:
            continue
        valid = isinstance(value, numbers.Real) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
        if not valid:
            raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}.")
