import os

import pytest

from pixnet.utils.atomic import STALE_EMPTY_LOCK_S, folder_lock


def _lock_of(path):
    return path.with_name(f".{path.name}.lock")


def test_a_lock_being_taken_is_not_taken_over(tmp_path):
    # another writer has created the lock file but not yet written its pid into it
    path = tmp_path / "store.zarr"
    _lock_of(path).touch()
    with pytest.raises(BlockingIOError, match="being written"), folder_lock(path):
        pass
    assert _lock_of(path).exists()


def test_an_old_empty_lock_is_taken_over_and_released(tmp_path):
    path = tmp_path / "store.zarr"
    lock = _lock_of(path)
    lock.touch()
    old = lock.stat().st_mtime - 2 * STALE_EMPTY_LOCK_S
    os.utime(lock, (old, old))
    with folder_lock(path):
        assert lock.read_text() == str(os.getpid())
    assert not lock.exists()


def test_a_lock_held_by_this_process_refuses_a_second_writer(tmp_path):
    path = tmp_path / "store.zarr"
    with folder_lock(path), pytest.raises(BlockingIOError, match=f"process {os.getpid()}"), folder_lock(path):
        pass
