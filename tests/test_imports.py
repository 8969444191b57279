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
                private = [a.name for a in node.names if a.name.startswith("_")]
                offending += [f"{path.name}: {name}" for name in private]
    assert not offending, offending


# the package's layers in the order data flows through them (docs/architecture.md); a module imports only its own
# layer and earlier ones
LAYERS = [
    ["constants", "utils", "pp", "metrics"],
    ["data"],
    ["nn"],
    ["training"],
    ["dense"],
    ["models"],
    ["io", "datasets"],
    ["tl"],
    ["pl"],
    ["demo", "cli", "__init__"],
]


def test_imports_run_one_way_along_the_data_flow():
    import ast
    from pathlib import Path

    import pixnet

    root = Path(pixnet.__file__).parent
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    upwards = []
    for path in root.rglob("*.py"):
        layer = path.relative_to(root).with_suffix("").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            package = path.parent.relative_to(root).parts
            base = list(package[: len(package) - (node.level - 1)])
            module = base + (node.module.split(".") if node.module else [])
            targets = [module[0]] if module else [a.name for a in node.names]
            upwards += [f"{path.relative_to(root)} -> {t}" for t in targets if t != layer and rank[t] > rank[layer]]
    assert not upwards, upwards
