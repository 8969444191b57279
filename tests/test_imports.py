"""``import pixnet`` stays light: plotting and the baselines' estimators load where they are used."""

import subprocess
import sys


def test_import_pixnet_loads_neither_pyplot_nor_scikit_learn():
    code = "import sys, pixnet; print(sorted(m for m in ('matplotlib.pyplot', 'sklearn') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_no_module_imports_another_modules_private_names():
    import ast
    from pathlib import Path

    import pixnet

    offending = []
    for path in Path(pixnet.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                offending += [f"{path.name}: {name}" for name in private]
    assert not offending, offending
