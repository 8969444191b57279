"""An opt-in cache of computed dense-map chunks, shared by every read of one map.

A lazy map runs the model each time a chunk is read: a plot of three genes, an aggregation and a second plot
of the same region would run it three times. With a :class:`MapCache` each chunk is computed once and then
read back, from memory (least recently used chunks dropped beyond ``max_bytes``) or from ``.npy`` files in a
scratch folder (one subfolder per map, named by a fingerprint of the model's weights and the map's settings,
so a retrained model or other tiles never read stale chunks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["MapCache"]


class MapCache:
    """Computed chunks of a dense map, kept for the next read.

    Parameters
    ----------
    path
        Scratch folder for chunks on disk (created if needed; delete it when done). ``None``: in memory.
    max_bytes
        In memory: the most bytes of chunks kept (least recently used first out). Ignored on disk.

    Examples
    --------
    With ``sdata`` and ``model`` as after predict's example:

    >>> import pixnet
    >>> cache = pixnet.tl.MapCache(max_bytes=2**30)
    >>> pixnet.tl.predict(sdata, shapes="bins_8um", model=model, key_added="cached", cache=cache, progress=False)
    >>> ax = pixnet.pl.dense_map(sdata, model.genes[0], "cached_map")  # reads the chunks computed above

    """

    def __init__(self, path: str | Path | None = None, max_bytes: int = 2**31) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}.")
        self.path = None if path is None else Path(path)
        self.max_bytes = int(max_bytes)
        self._chunks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else f"memory, {self._bytes / 2**20:.0f} of"
        return f"MapCache({where} {self.max_bytes / 2**20:.0f} MB, {self.hits} hits, {self.misses} misses)"

    def __getstate__(self) -> dict:  # a dask.distributed worker gets the settings, not the chunks or the lock
        return {"path": self.path, "max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["max_bytes"])

    def get(self, key: tuple) -> np.ndarray | None:
        """The chunk stored under ``key`` (``(fingerprint, y0, x0)``), or ``None``."""
        if self.path is not None:
            file = self._file(key)
            found = np.load(file) if file.is_file() else None
        else:
            with self._lock:
                found = self._chunks.get(key)
                if found is not None:
                    self._chunks.move_to_end(key)
        with self._lock:
            self.hits, self.misses = self.hits + (found is not None), self.misses + (found is None)
        return found

    def put(self, key: tuple, chunk: np.ndarray) -> None:
        """Keep ``chunk`` under ``key``."""
        if self.path is not None:
            file = self._file(key)
            file.parent.mkdir(parents=True, exist_ok=True)
            partial = file.with_name(f".{file.name}.{os.getpid()}.{threading.get_ident()}.part")
            with open(partial, "wb") as out:
                np.save(out, chunk)
            partial.replace(file)  # a reader sees a whole chunk or none
            return
        if chunk.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._chunks:
                return
            self._chunks[key] = chunk
            self._bytes += chunk.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._chunks.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        """Forget the chunks in memory (files on disk stay until the folder is deleted)."""
        with self._lock:
            self._chunks.clear()
            self._bytes = 0

    def _file(self, key: tuple) -> Path:
        fingerprint, y0, x0 = key
        return self.path / fingerprint / f"{y0}_{x0}.npy"


def map_fingerprint(model, settings: dict) -> str:
    """A digest of the model's weights and config and of the map's settings (image, tiles, dtype)."""
    digest = hashlib.sha256()
    tensors = dict(model.network.state_dict())
    for name in ("bank_embeddings", "bank_density"):  # Image2Gene predicts from its training spots too
        if hasattr(model, name):
            tensors[name] = getattr(model, name)
    for name, tensor in tensors.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    config = {k: v for k, v in vars(model.config).items() if k != "training"}
    digest.update(json.dumps({"config": config, **settings}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]
