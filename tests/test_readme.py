"""The README's Python example runs as written, on the built-in sample it creates."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_python_example_runs_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    # a fresh interpreter in an empty folder, as a user pasting it into a notebook would have
    result = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sample_square_008um" in result.stdout and "pcc_m" in result.stdout  # the inputs and the evaluation
    assert (tmp_path / "pixnet_model" / "config.json").is_file()
