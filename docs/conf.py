"""Sphinx configuration."""

import shutil
from importlib.metadata import version as _version
from pathlib import Path

project = "pixnet"
author = "The pixnet developers"
copyright = "2026, the pixnet developers"
release = _version("pixnet")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_autodoc_typehints",
]
autosummary_generate = True
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
typehints_defaults = "braces"
always_document_param_types = False
myst_enable_extensions = ["colon_fence", "dollarmath"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# The notebooks live in tutorials/ at the top of the repository; Sphinx only reads files under docs/.
_TUTORIALS = Path(__file__).parent / "tutorials"
shutil.rmtree(_TUTORIALS, ignore_errors=True)
shutil.copytree(Path(__file__).parents[1] / "tutorials", _TUTORIALS, ignore=shutil.ignore_patterns(".*", "*_files"))

# Tutorials run on small synthetic samples at every build; those on real data (metadata
# "mystnb": {"execution_mode": "off"}) keep the outputs they were saved with.
nb_execution_mode = "force"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
html_theme = "sphinx_book_theme"
html_title = "pixnet"
# no intersphinx: the docs must build offline (CI has no network)
