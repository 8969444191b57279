"""Replacing a folder so that a kill at any moment leaves the old folder or the new one, never neither.

A new version of ``path`` is staged beside it (same filesystem, so renames are atomic) as ``.{name}.new``.
Before the two renames that swap it in (old aside as ``.{name}.old``, new into place), a journal
``.{name}.swap`` is written; it is removed once the new folder is in place. Whoever finds a journal next
(a writer, or a reader that finds ``path`` missing) completes the swap; staging left without a journal is an
interrupted write and is removed. Writers hold ``.{name}.lock`` (created exclusively, holding the writer's
pid) for the whole sequence, so two writers of one path cannot both succeed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["folder_lock", "needs_recovery", "recover_folder", "replace_folder", "resolve_target", "staging_folder"]


def resolve_target(path: str | Path) -> Path:
    """``path`` with symlinks resolved: staging must sit beside the real folder, on its filesystem."""
    path = Path(path).expanduser()
    return path.resolve() if path.is_symlink() else path.parent.resolve() / path.name


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{suffix}")


def staging_folder(path: Path) -> Path:
    """The empty folder in which the new version of ``path`` is written."""
    staged = _sibling(path, "new")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    return staged


STALE_EMPTY_LOCK_S = 60.0
"""A lock file still without its writer's pid after this many seconds was left by a killed writer."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextlib.contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive write lock of ``path``; a lock left by a dead process is taken over."""
    lock = _sibling(path, "lock")
    existing = next(p for p in [path.parent, *path.parent.parents] if p.exists())
    if not os.access(existing, os.W_OK):
        raise PermissionError(f"Cannot write {path}: {existing} is not writable.")
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = int(lock.read_text() or "0")
                age = time.time() - lock.stat().st_mtime
            except (OSError, ValueError):
                owner, age = 0, 0.0
            # an empty lock is one being taken right now (created, pid not yet written): only an old one is stale
            if (owner and _alive(owner)) or (not owner and age < STALE_EMPTY_LOCK_S):
                raise BlockingIOError(
                    f"{path} is being written by process {owner or 'starting now'} (lock {lock}); wait for it, or "
                    "remove the lock file if that process is not pixnet."
                ) from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise BlockingIOError(f"Could not take the write lock {lock} of {path}.")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def replace_folder(staged: Path, path: Path) -> None:
    """Swap the complete folder ``staged`` in as ``path`` (call with :func:`folder_lock` held)."""
    journal = _sibling(path, "swap")
    tmp = _sibling(path, "swap-tmp")
    tmp.write_text(staged.name)
    os.replace(tmp, journal)
    _complete_swap(path)


def _complete_swap(path: Path) -> None:
    staged, old, journal = _sibling(path, "new"), _sibling(path, "old"), _sibling(path, "swap")
    if staged.exists():
        if path.exists() or path.is_symlink():
            if old.exists():  # cannot happen in one sequence; keep the folder in place, drop the stale copy
                shutil.rmtree(old)
            path.rename(old)
        staged.rename(path)
    journal.unlink(missing_ok=True)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(path: Path) -> None:
    """Finish a swap that was interrupted, or remove the staging of a write that was (hold the lock)."""
    if _sibling(path, "swap").exists():
        _complete_swap(path)
        return
    for suffix in ("new", "old", "swap-tmp"):
        leftover = _sibling(path, suffix)
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        elif leftover.exists():
            leftover.unlink()


def needs_recovery(path: Path) -> bool:
    """Whether a swap of ``path`` was interrupted (readers then call :func:`recover_folder`)."""
    return _sibling(path, "swap").exists()
