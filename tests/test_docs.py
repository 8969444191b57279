"""The docs site builds with warnings as errors, executing the tutorials on synthetic samples."""

import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings_and_tutorials_run(tmp_path):
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-5000:]
    for page in ("method", "units", "scale", "tutorials/visium_hd", "tutorials/spots_to_cells", "api"):
        assert (tmp_path / f"{page}.html").is_file(), page
    # outputs, not sources: the notebooks ran
    assert "GeoDataFrame shape" in (tmp_path / "tutorials" / "visium_hd.html").read_text()
    assert re.search(r"median \d\.\d\d, range", (tmp_path / "tutorials" / "spots_to_cells.html").read_text())
