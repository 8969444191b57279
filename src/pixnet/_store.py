"""Writing new elements into a SpatialData zarr store without ever leaving it broken.

Each element is first written under a temporary name; only when that succeeded is it swapped in with two
directory renames (the old element moves aside, the new one takes its name) and the store's consolidated
metadata rewritten. A failure while writing removes the temporary element and leaves the old one untouched.
"""

from __future__ import annotations

import logging
import shutil
import uuid
import warnings
from pathlib import Path

import anndata as ad
import dask.array as da
from spatialdata import SpatialData, read_zarr

logger = logging.getLogger(__name__)

_KINDS = {"images": "images", "tables": "tables"}


def check_writable(sdata: SpatialData, names: list[str], overwrite: bool) -> Path:
    """The store's path; refuses unbacked objects and existing names unless ``overwrite``."""
    if not sdata.is_backed():
        raise ValueError("write=True needs a SpatialData object backed by a zarr store: sdata.write(path) first.")
    store = Path(sdata.path)
    taken = [n for n in names if any((store / kind / n).exists() for kind in _KINDS)]
    if taken and not overwrite:
        raise ValueError(f"Elements {taken} exist in {store}; pass overwrite=True to replace them.")
    return store


def write_element(sdata: SpatialData, kind: str, name: str, element) -> None:
    """Write ``element`` as ``name`` into the store of ``sdata``, replacing an existing one atomically."""
    store = Path(sdata.path)
    container = getattr(sdata, kind)
    # written beside the store, not inside: after a failure, tasks still running cannot touch the store
    scratch = store.parent / f".{store.name}.pixnet-{uuid.uuid4().hex[:8]}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a lone table's region is absent from the scratch store
            SpatialData(**{kind: {name: element}}).write(scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    target, trash = store / kind / name, scratch.with_name(scratch.name + "-old")
    if not (store / kind / "zarr.json").exists():  # the store had no element of this kind yet
        (store / kind).mkdir(exist_ok=True)
        shutil.copy2(scratch / kind / "zarr.json", store / kind / "zarr.json")
    if target.exists():
        target.rename(trash)
    (scratch / kind / name).rename(target)
    sdata.write_consolidated_metadata()
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    if name in container:
        del container[name]
    container[name] = _reread(store, kind, name, element)
    logger.info("Wrote %s/%s to %s", kind, name, store)


def _reread(store: Path, kind: str, name: str, element):
    """The element backed by its files on disk (lazy), so that memory holds no second copy."""
    if kind == "images":
        return read_zarr(store, selection=("images",)).images[name]
    table = element if isinstance(element, ad.AnnData) else None
    x = da.from_zarr(str(store / kind / name / "X"))
    backed = ad.AnnData(X=x, obs=table.obs, var=table.var, obsm=dict(table.obsm), uns=dict(table.uns))
    return backed
