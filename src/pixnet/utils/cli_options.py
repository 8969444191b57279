"""Command-line options made from typed option sets: names, types, checks and help from the dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Sequence

from .options import Options, literal_choices

__all__ = ["add_options"]


def attribute_help(cls) -> dict[str, str]:
    """The first sentence of each attribute's description in the numpy-style docstrings of ``cls`` and its bases."""
    found = {}
    for klass in reversed(cls.__mro__):
        lines = inspect.cleandoc(klass.__doc__ or "").splitlines()
        start = lines.index("Attributes") + 2 if "Attributes" in lines else len(lines)
        described, names = {}, []
        for line in lines[start:]:
            if line and not line.startswith(" "):
                if line in ("Examples", "Notes", "See Also"):
                    break
                names = [n.strip() for n in line.split(",")]
            elif line.strip():
                for name in names:
                    described[name] = (described.get(name, "") + " " + line.strip()).strip()
        found |= {name: text for name, text in described.items() if not text.startswith("See :class:")}
    plain = {
        name: re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"\1", text).replace("``", "") for name, text in found.items()
    }
    return {name: text.split(". ")[0].rstrip(".") for name, text in plain.items()}


def literal_value(choices: tuple):
    """An argparse type that turns text into one of ``choices`` (``none`` for ``None``)."""
    by_text = {str(c).lower(): c for c in choices}

    def convert(text: str):
        if text.lower() not in by_text:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(by_text)}, got {text!r}")
        return by_text[text.lower()]

    return convert


def checked_by(cls, name: str, convert):
    """An argparse type: ``convert(text)``, checked as option ``name`` of ``cls`` is (before anything runs)."""

    def checked(text: str):
        try:
            value = convert(text)
            cls(**{name: value})
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error).rstrip(".")) from None
        return value

    return checked


def add_options(
    parser: argparse.ArgumentParser,
    title: str,
    classes: Sequence[type[Options]],
    preset_fields: set[str],
    seen: set[str],
) -> None:
    """One option per field of ``classes`` (each name once; ``seen`` collects them), in the group ``title``.

    bool fields become ``--x/--no-x``, ``Literal`` fields choices, others are converted and checked as the dataclass
    checks them; the help is the first sentence of the field's docstring attribute. Options not given stay absent
    from the namespace. Fields in ``preset_fields`` default to "the preset's".
    """
    group = parser.add_argument_group(title)
    for cls in classes:
        hints, docs = typing.get_type_hints(cls), attribute_help(cls)
        only = "" if len(classes) == 1 else f" ({cls.method} only)"
        for field in dataclasses.fields(cls):
            name = field.name
            if name in seen:
                continue
            seen.add(name)
            shared = all(name in other.field_names() for other in classes)
            hint, default = hints[name], field.default
            args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
            base = next(a for a in args if a is not type(None))
            from_preset = default is None and name in preset_fields
            when = "; default: the preset's" if from_preset else "" if default is None else f"; default: {default}"
            help_text = f"{docs.get(name, name)}{'' if shared else only}{when}".replace("%", "%%")
            options = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
            choices = literal_choices(hint)
            if base is bool:
                options["action"] = argparse.BooleanOptionalAction
            elif choices is not None:
                allowed = (*choices, *([None] if type(None) in args and not from_preset else []))
                options |= {"type": literal_value(allowed), "metavar": "{" + ",".join(map(str, allowed)).lower() + "}"}
            elif typing.get_origin(base) is tuple:
                options |= {"nargs": "+", "type": str}
            else:
                options["type"] = checked_by(cls, name, base)
            group.add_argument("--" + name.replace("_", "-"), **options)
