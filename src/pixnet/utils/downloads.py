"""Where pixnet keeps downloaded data and weights."""

import hashlib
import logging
import os
from pathlib import Path

from .settings import settings

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Folder for downloads: ``pixnet.settings.cache_dir``, else ``$PIXNET_CACHE``, else ``~/.cache/pixnet``."""
    if settings.cache_dir is not None:
        return settings.cache_dir
    return Path(os.environ.get("PIXNET_CACHE", Path.home() / ".cache" / "pixnet"))


def sha256sum(path: Path) -> str:
    """SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


RETRIES = 3
"""Attempts after a failed download (a dropped connection, a server error) before giving up."""


def download(url: str, target: Path, sha256: str | None = None, progress: bool | None = None) -> Path:
    """Download ``url`` once to ``target`` (with :mod:`pooch`: retries, a progress bar) and check its SHA-256.

    With ``sha256=None`` (no hash published for the file) the hash of the first download is recorded beside the
    file (``.sha256``) and every later use is checked against it, so a corrupted or swapped cache file is
    caught. ``progress``: show a progress bar; ``None``: ``pixnet.settings.progress``.
    """
    import pooch

    target = Path(target)
    recorded = target.with_name(target.name + ".sha256")
    if not target.exists():
        logger.info("Downloading %s to %s", url, target)
        fetcher = pooch.create(
            path=target.parent,
            base_url="",
            registry={target.name: None if sha256 is None else f"sha256:{sha256}"},
            urls={target.name: url},
            retry_if_failed=RETRIES,
        )
        try:
            fetcher.fetch(target.name, progressbar=settings.progress_for(progress))
        except ValueError as error:
            if "hash" not in str(error):
                raise
            raise ValueError(f"Checksum mismatch for {url}: {error}") from error  # pooch removed the download
        recorded.write_text(sha256sum(target))
    expected = sha256 or (recorded.read_text().strip() if recorded.exists() else None)
    if expected is not None and sha256sum(target) != expected:
        raise ValueError(f"Cached {target} does not match its checksum {expected}; delete it to download again.")
    return target
