"""Each tutorial that runs on a synthetic sample executes from start to end (one test per notebook)."""

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def _executed_at_build(path: Path) -> bool:
    # notebooks on real data ("mystnb": {"execution_mode": "off"}) keep the outputs they were saved with
    metadata = json.loads(path.read_text())["metadata"]
    return metadata.get("mystnb", {}).get("execution_mode") != "off"


NOTEBOOKS = sorted(p for p in TUTORIALS.glob("*.ipynb") if _executed_at_build(p))
EXPECTED = {  # an output each notebook prints when it ran
    "visium_hd": r"GeoDataFrame shape",
    "spots_to_cells": r"median \d\.\d\d, range",
}


def _text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


# a notebook trains and predicts: minutes on 2 idle cores, several times that when the machine is loaded
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorial_runs(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    if path.stem in EXPECTED:
        assert re.search(EXPECTED[path.stem], _text(notebook)), path.stem


def test_every_synthetic_tutorial_is_tested():
    assert {p.stem for p in NOTEBOOKS} >= set(EXPECTED)
    assert len(NOTEBOOKS) >= 3
