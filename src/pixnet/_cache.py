"""Where pixnet keeps downloaded data and weights."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """Folder for downloads: ``$PIXNET_CACHE`` or ``~/.cache/pixnet``."""
    return Path(os.environ.get("PIXNET_CACHE", Path.home() / ".cache" / "pixnet"))
