"""Dask computations of the map on threads that end with the call, so that later training keeps its speed."""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import dask

__all__ = ["releases_threads"]


def _user_chose_scheduler() -> bool:
    if dask.config.get("scheduler", None) is not None or dask.config.get("pool", None) is not None:
        return True
    try:
        from distributed import get_client

        get_client()
    except (ImportError, ValueError):
        return False
    return True


def releases_threads(function):
    """Run ``function``'s dask computations on a thread pool of its own, shut down when it returns.

    Each of dask's persistent pool threads that runs the model keeps an OpenMP team of torch's threads. With more
    OpenMP threads alive than cores, libgomp stops spin-waiting between parallel regions, and every small
    operation of a later training in the same process pays a thread wake-up: training steps after a prediction
    ran 2.5x slower (2.6 s -> 6.6 s for 60 steps on 2 cores) until the process ended. A scheduler or pool the user
    configured (or a ``dask.distributed`` client) is left alone.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if _user_chose_scheduler():
            return function(*args, **kwargs)
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool, dask.config.set(scheduler="threads", pool=pool):
            return function(*args, **kwargs)

    return wrapper
