"""Writing new elements into a SpatialData zarr store as one transaction.

The elements of one call (a dense map and its tables) are first written, each as a small store, into a staging
folder beside the store (symlinks resolved, so on its filesystem). Only when all are written is a journal
written beside the store, listing the renames that swap them in; then the renames run, the store's
consolidated metadata is rewritten and the journal removed. A kill before the journal leaves the store as it
was (the staging is removed by the next write); a kill after it is rolled forward by the next pixnet open or
write of the store (:func:`recover_store`), so the store ends with all old or all new elements, never a mix.
Writers hold the store's lock (see :mod:`pixnet.utils.atomic`) from the first check to the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import anndata as ad
import dask.array as da
import zarr
from spatialdata import SpatialData, read_zarr

from ..utils.atomic import folder_lock, resolve_target

logger = logging.getLogger(__name__)

_KINDS = ("images", "tables")


def _journal(store: Path) -> Path:
    return store.with_name(f".{store.name}.pixnet-journal.json")


def _staging(store: Path) -> Path:
    return store.with_name(f".{store.name}.pixnet-staging")


def check_writable(sdata: SpatialData, names: list[str], overwrite: bool) -> Path:
    """The store's real path; refuses unbacked objects, unwritable stores and existing names unless ``overwrite``."""
    if not sdata.is_backed():
        raise ValueError("write=True needs a SpatialData object backed by a zarr store: sdata.write(path) first.")
    store = resolve_target(sdata.path)
    if not os.access(store, os.W_OK) or not os.access(store.parent, os.W_OK):
        raise PermissionError(f"Cannot write into {store}: it (or its folder) is not writable.")
    taken = [n for n in names if any((store / kind / n).exists() for kind in _KINDS)]
    if taken and not overwrite:
        raise ValueError(f"Elements {taken} exist in {store}; pass overwrite=True to replace them.")
    return store


class StoreTransaction:
    """Elements staged beside the store of ``sdata`` and swapped in together by :meth:`commit`.

    Use as a context manager: the store's lock is held inside it, and leaving it without :meth:`commit`
    (an exception) removes the staging and leaves the store untouched.
    """

    def __init__(self, sdata: SpatialData, names: list[str], overwrite: bool) -> None:
        self.sdata, self.names, self.overwrite = sdata, names, overwrite
        self.store = check_writable(sdata, names, overwrite)
        self.staged: list[tuple[str, str, object]] = []
        self._lock = None

    def __enter__(self) -> StoreTransaction:
        self._lock = folder_lock(self.store)
        self._lock.__enter__()
        try:
            recover_store(self.store, locked=True)
            check_writable(self.sdata, self.names, self.overwrite)  # another writer may have won meanwhile
            _staging(self.store).mkdir()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if not _journal(self.store).exists():  # with a journal, the staging is what the next open rolls forward
                shutil.rmtree(_staging(self.store), ignore_errors=True)
        finally:
            self._lock.__exit__(*exc)

    @property
    def scratch(self) -> Path:
        """A folder for temporary files of this write, removed with the staging (also after a kill)."""
        return _staging(self.store)

    def stage(self, kind: str, name: str, element):
        """Write ``element`` into the staging; returns it backed by the staged files (lazy, no second copy)."""
        folder = _staging(self.store) / f"{len(self.staged)}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a lone table's region is absent from the staging store
            SpatialData(**{kind: {name: element}}).write(folder)
        self.staged.append((kind, name, element))
        return _reread(folder, kind, name, element)

    def commit(self) -> None:
        """Swap every staged element in, rewrite the consolidated metadata, and update ``sdata``."""
        steps = [
            {"kind": kind, "name": name, "staged": str(_staging(self.store) / f"{i}" / kind / name)}
            for i, (kind, name, _) in enumerate(self.staged)
        ]
        tmp = _staging(self.store) / "journal.tmp"  # removed with the staging if killed before the rename
        tmp.write_text(json.dumps({"store": str(self.store), "steps": steps}))
        os.replace(tmp, _journal(self.store))
        _roll_forward(self.store)
        for kind, name, element in self.staged:
            container = getattr(self.sdata, kind)
            if name in container:
                del container[name]
            container[name] = _reread(self.store, kind, name, element)
            logger.info("Wrote %s/%s to %s", kind, name, self.store)


def _roll_forward(store: Path) -> None:
    """Complete the swaps listed in the store's journal (each step may already be done), then clean up."""
    record = json.loads(_journal(store).read_text())
    trash = store.with_name(f".{store.name}.pixnet-trash")
    trash.mkdir(exist_ok=True)
    for i, step in enumerate(record["steps"]):
        staged, target = Path(step["staged"]), store / step["kind"] / step["name"]
        if not staged.exists():
            continue  # already moved in
        if not (store / step["kind"] / "zarr.json").exists():  # the store had no element of this kind yet
            (store / step["kind"]).mkdir(exist_ok=True)
            shutil.copy2(staged.parent / "zarr.json", store / step["kind"] / "zarr.json")
        if target.exists():
            target.rename(trash / f"{i}")
        staged.rename(target)
    _consolidate(store)
    _journal(store).unlink()
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(_staging(store), ignore_errors=True)


def _consolidate(store: Path) -> None:
    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=zarr.errors.ZarrUserWarning)  # parquet files are not zarr
        zarr.consolidate_metadata(group.store)
    group.store.close()


def recover_store(path: str | Path, locked: bool = False) -> None:
    """Finish a write into the store at ``path`` that was interrupted after its journal, or remove its staging."""
    store = resolve_target(path)
    if not _journal(store).exists() and not _staging(store).exists():
        return
    with contextlib.nullcontext() if locked else folder_lock(store):
        if _journal(store).exists():
            logger.warning("Completing an interrupted pixnet write into %s", store)
            _roll_forward(store)
        shutil.rmtree(_staging(store), ignore_errors=True)
        shutil.rmtree(store.with_name(f".{store.name}.pixnet-trash"), ignore_errors=True)


def _reread(store: Path, kind: str, name: str, element):
    """The element backed by its files on disk (lazy), so that memory holds no second copy."""
    if kind == "images":
        return read_zarr(store, selection=("images",)).images[name]
    table = element if isinstance(element, ad.AnnData) else None
    x = da.from_zarr(str(store / kind / name / "X"))
    backed = ad.AnnData(X=x, obs=table.obs, var=table.var, obsm=dict(table.obsm), uns=dict(table.uns))
    return backed
