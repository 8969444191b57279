import inspect
import re
from pathlib import Path

import pixnet

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _autosummary_entries(text: str) -> list[str]:
    """Names listed under ``.. autosummary::`` directives (three-space indented, options skipped)."""
    entries, inside = [], False
    for line in text.splitlines():
        if line.strip() == ".. autosummary::":
            inside = True
        elif inside and re.match(r"^   \S", line):
            if not line.strip().startswith(":"):
                entries.append(line.strip())
        elif inside and line.strip():
            inside = False
    return entries


def test_every_public_function_and_class_in_the_api_docs_has_examples():
    entries = _autosummary_entries(API.read_text())
    assert len(entries) > 20
    missing = []
    for name in entries:
        obj = pixnet
        for part in name.split("."):
            obj = getattr(obj, part)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue  # constants
        if "Examples" not in (inspect.getdoc(obj) or ""):
            missing.append(name)
    assert not missing, f"No Examples section in the docstrings of {missing}"
