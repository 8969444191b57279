"""Where pixnet keeps downloaded data and weights."""

import hashlib
import logging
import urllib.request
from pathlib import Path

from .settings import settings

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Folder for downloads: ``pixnet.settings.cache_dir``, else ``$PIXNET_CACHE``, else ``~/.cache/pixnet``."""
    return settings.downloads_folder()


def sha256sum(path: Path) -> str:
    """SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, target: Path, sha256: str | None = None) -> Path:
    """Download ``url`` once to ``target`` and check its SHA-256.

    With ``sha256=None`` the hash of the first download is recorded beside the file (``.sha256``) and every
    later use is checked against it, so a corrupted or swapped cache file is caught.
    """
    recorded = target.with_name(target.name + ".sha256")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        logger.info("Downloading %s", url)
        with urllib.request.urlopen(url, timeout=120) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        actual = sha256sum(tmp)
        if sha256 is not None and actual != sha256:
            tmp.unlink()
            raise ValueError(f"Checksum mismatch for {url}: expected {sha256}, got {actual}.")
        tmp.replace(target)
        recorded.write_text(actual)
    expected = sha256 or (recorded.read_text().strip() if recorded.exists() else None)
    if expected is not None and sha256sum(target) != expected:
        raise ValueError(f"Cached {target} does not match its checksum {expected}; delete it to download again.")
    return target
