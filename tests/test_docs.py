"""The docs site builds with warnings as errors (the tutorials execute in test_tutorials.py)."""

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    # executing the notebooks here too would make one test as slow as all of them
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-D", "nb_execution_mode=off"]
    result = subprocess.run([*command, str(DOCS), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-5000:]
    for page in ("method", "units", "scale", "tutorials/visium_hd", "tutorials/spots_to_cells", "api"):
        assert (tmp_path / f"{page}.html").is_file(), page
