"""Streaming writers for the 10x Genomics files a Space Ranger output folder holds."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TISSUE_POSITIONS_SCHEMA = pa.schema(
    [
        ("barcode", pa.string()),
        ("in_tissue", pa.int32()),
        ("array_row", pa.int32()),
        ("array_col", pa.int32()),
        ("pxl_row_in_fullres", pa.float64()),
        ("pxl_col_in_fullres", pa.float64()),
    ]
)


class FeatureBarcodeMatrixWriter:
    """Write a Cell Ranger v3 ``feature_bc_matrix.h5`` barcode by barcode, never holding the whole matrix.

    The file stores genes x barcodes in CSC layout, so appending barcodes appends columns.
    """

    def __init__(self, path: str | Path, genes: list[str], genome: str = "synthetic") -> None:
        self._file = h5py.File(path, "w")
        matrix = self._file.create_group("matrix")
        self._data = matrix.create_dataset("data", (0,), dtype="int32", maxshape=(None,), chunks=(1 << 16,))
        self._indices = matrix.create_dataset("indices", (0,), dtype="int64", maxshape=(None,), chunks=(1 << 16,))
        self._barcodes = matrix.create_dataset("barcodes", (0,), dtype="S32", maxshape=(None,), chunks=(1 << 14,))
        features = matrix.create_group("features")
        n = len(genes)
        features.create_dataset("id", data=np.array([f"SYNG{i:08d}" for i in range(n)], dtype="S"))
        features.create_dataset("name", data=np.array(genes, dtype="S"))
        features.create_dataset("feature_type", data=np.array(["Gene Expression"] * n, dtype="S"))
        features.create_dataset("genome", data=np.array([genome] * n, dtype="S"))
        features.create_dataset("_all_tag_keys", data=np.array(["genome"], dtype="S"))
        self._n_genes = n
        self._indptr = [np.zeros(1, dtype=np.int64)]
        self._nnz = 0
        self._n_barcodes = 0

    def append(self, barcodes: np.ndarray, counts: np.ndarray) -> None:
        """Append barcodes with their ``(n_barcodes, n_genes)`` integer counts."""
        rows, cols = np.nonzero(counts)  # row-major: grouped by barcode, genes ascending
        values = counts[rows, cols].astype(np.int32)
        nnz = self._nnz + values.size
        for dataset, new in ((self._data, values), (self._indices, cols.astype(np.int64))):
            dataset.resize((nnz,))
            dataset[self._nnz :] = new
        per_barcode = np.bincount(rows, minlength=counts.shape[0])
        self._indptr.append(self._nnz + np.cumsum(per_barcode, dtype=np.int64))
        n = self._n_barcodes + len(barcodes)
        self._barcodes.resize((n,))
        self._barcodes[self._n_barcodes :] = np.asarray(barcodes, dtype="S32")
        self._nnz, self._n_barcodes = nnz, n

    def close(self) -> None:
        """Write the index pointer and shape, then close the file."""
        matrix = self._file["matrix"]
        matrix.create_dataset("indptr", data=np.concatenate(self._indptr))
        matrix.create_dataset("shape", data=np.array([self._n_genes, self._n_barcodes], dtype=np.int32))
        self._file.close()


class TissuePositionsWriter:
    """Write ``tissue_positions.parquet`` in row groups."""

    def __init__(self, path: str | Path) -> None:
        self._writer = pq.ParquetWriter(path, TISSUE_POSITIONS_SCHEMA)

    def append(self, barcodes, in_tissue, array_row, array_col, pxl_row, pxl_col) -> None:
        """Append bins."""
        columns = [barcodes, in_tissue, array_row, array_col, pxl_row, pxl_col]
        self._writer.write_table(pa.Table.from_arrays([pa.array(c) for c in columns], schema=TISSUE_POSITIONS_SCHEMA))

    def close(self) -> None:
        """Close the file."""
        self._writer.close()
