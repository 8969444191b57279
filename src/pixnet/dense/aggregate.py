"""Streaming aggregation of a (lazy) map into shapes: one task per chunk, each reduced to per-shape sums.

Shapes are row spans in the map's pixel frame. Spans are cut at chunk borders and every piece goes to the one
chunk that holds its pixels, so a shape crossing chunk borders is counted exactly once. A task holds one chunk
and returns only the sums of the shapes it touches; results are folded into the output as batches of tasks
finish, so memory is bounded by a few chunks plus the output. Under a ``dask.distributed`` client the tasks
run on its workers unchanged.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.spans import Spans, span_sums

__all__ = ["aggregate_spans"]


def _clip(spans: Spans, height: int, width: int) -> Spans:
    x0, x1 = np.clip(spans.x0, 0, width), np.clip(spans.x1, 0, width)
    keep = (spans.row >= 0) & (spans.row < height) & (x1 > x0)
    return Spans(spans.shape[keep], spans.row[keep], x0[keep], x1[keep])


def _split_at(spans: Spans, bounds: np.ndarray) -> tuple[Spans, np.ndarray]:
    """Cut spans at the x chunk boundaries; returns the pieces and their chunk column."""
    first = np.searchsorted(bounds, spans.x0, side="right") - 1
    last = np.searchsorted(bounds, spans.x1 - 1, side="right") - 1
    n = last - first + 1
    index = np.repeat(np.arange(len(spans)), n)
    column = np.repeat(first, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    x0 = np.maximum(spans.x0[index], bounds[column])
    x1 = np.minimum(spans.x1[index], bounds[column + 1])
    return Spans(spans.shape[index], spans.row[index], x0, x1), column


def _chunk_sums(block: np.ndarray, row, x0, x1, shape) -> tuple[np.ndarray, np.ndarray]:
    ids, local = np.unique(shape, return_inverse=True)
    tensor = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).unsqueeze(0)
    to = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    sums = span_sums(tensor, torch.zeros(len(row), dtype=torch.long), to(row), to(x0), to(x1), to(local), len(ids))
    return ids, sums.double().numpy()


def aggregate_spans(
    image: da.Array,
    spans: Spans,
    n_shapes: int,
    *,
    agg: str = "sum",
    batch_tasks: int | None = None,
    progress: bool = True,
    out=None,
):
    """Sum (or mean) of a ``(c, y, x)`` dask array over each shape's spans -> ``(n_shapes, c)``.

    Pixels outside the array are ignored; a shape entirely outside gets 0 (``agg="sum"``) or NaN (``"mean"``).
    ``out`` may be a zeroed on-disk zarr array of that shape, for outputs larger than memory (then it is returned,
    filled, and ``agg`` must be ``"sum"``); by default a float64 numpy array is returned.
    """
    if agg not in ("sum", "mean"):
        raise ValueError(f"agg must be 'sum' or 'mean', got {agg!r}.")
    image = image.rechunk({0: -1})
    _, height, width = image.shape
    spans = _clip(spans, height, width)
    n_pixels = np.bincount(spans.shape, weights=spans.x1 - spans.x0, minlength=n_shapes) if agg == "mean" else None
    # int32 and early deletes: for millions of 2 µm bins these arrays, not the map, bound the memory
    x_bounds = np.concatenate([[0], np.cumsum(image.chunks[2])]).astype(np.int32)
    y_bounds = np.concatenate([[0], np.cumsum(image.chunks[1])]).astype(np.int32)
    pieces, column = _split_at(spans, x_bounds)
    del spans
    key = (np.searchsorted(y_bounds, pieces.row, side="right") - 1) * len(image.chunks[2]) + column
    del column
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(key)]
    blocks = image.to_delayed()
    tasks, task_ids = [], []
    for a, b in zip(starts, ends, strict=True):
        cy, cx = divmod(int(key[a]), len(image.chunks[2]))
        sel = order[a:b]
        task_ids.append(pieces.shape[sel])
        tasks.append(
            dask.delayed(_chunk_sums)(
                blocks[0, cy, cx],
                pieces.row[sel] - y_bounds[cy],
                pieces.x0[sel] - x_bounds[cx],
                pieces.x1[sel] - x_bounds[cx],
                task_ids[-1],
            )
        )
    del pieces, order, key
    if out is None:
        sink = np.zeros((n_shapes, image.shape[0]))
    elif agg != "sum":
        raise ValueError("An on-disk output only accumulates sums.")
    else:
        sink = _ChunkedSink(out, task_ids)
    del task_ids
    batch_tasks = batch_tasks or _default_batch()
    done = 0
    for i in tqdm(range(0, len(tasks), batch_tasks), desc="aggregating", disable=not progress, unit="batch"):
        for ids, sums in dask.compute(*tasks[i : i + batch_tasks]):
            if isinstance(sink, np.ndarray):
                sink[ids] += sums
            else:
                sink.add(done, ids, sums)
            done += 1
    if not isinstance(sink, np.ndarray):
        return out
    out = sink
    if agg == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            out = out / n_pixels[:, None]
    return out


class _ChunkedSink:
    """Accumulate into an on-disk zarr array without read-modify-write.

    Row chunks of the output live in memory from their first contribution to their last one (known in advance
    from the tasks' shape ids), are then written once and dropped. Tasks arrive in chunk order, so shapes that
    are near each other in space and in the table (bins in row-major order) keep only a band of chunks in memory.
    """

    def __init__(self, out, task_ids: list[np.ndarray]) -> None:
        self.out, self.rows = out, out.chunks[0]
        self.last_task = {}
        for task, ids in enumerate(task_ids):
            for chunk in np.unique(ids // self.rows):
                self.last_task[int(chunk)] = task
        self.cache: dict[int, np.ndarray] = {}

    def add(self, task: int, ids: np.ndarray, sums: np.ndarray) -> None:
        chunks = ids // self.rows
        for chunk in np.unique(chunks):
            chunk = int(chunk)
            start = chunk * self.rows
            block = self.cache.get(chunk)
            if block is None:
                block = self.cache[chunk] = np.zeros((min(self.rows, self.out.shape[0] - start), self.out.shape[1]))
            here = chunks == chunk
            block[ids[here] - start] += sums[here]
        for chunk in [c for c in self.cache if self.last_task[c] == task]:
            block, start = self.cache.pop(chunk), chunk * self.rows
            self.out[start : start + len(block)] = block


def _default_batch() -> int:
    try:
        from distributed import get_client

        return max(4, 2 * len(get_client().scheduler_info()["workers"]))
    except (ImportError, ValueError):
        import os

        return max(4, 2 * (os.cpu_count() or 1))
