"""Edge helpers shared by the radius-graph builders (:mod:`~robustprune.selection.core.graph`, blocked; and
:mod:`~robustprune.selection.core.faiss_backend`): the similarity rescaling, the edge budget and the one chunked
buffer of edges (:class:`ChunkedColumns`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["rescale", "too_many", "ChunkedColumns"]


def rescale(cos: torch.Tensor) -> torch.Tensor:
    """``0.5 + 0.5 * cos`` in float32, rounded exactly as the released per-pick column computes it."""
    return cos.mul_(0.5).add_(0.5)


def too_many(count: int, max_edges: int | None) -> None:
    if max_edges is not None and count > max_edges:
        raise ValueError(
            f"the similarity graph would exceed max_edges={max_edges} edges; raise tau (fewer neighbours), "
            "set max_neighbors, raise max_edges, or use engine='dense' (no graph, slower)"
        )


class ChunkedColumns:
    """Parallel 1-D columns gathered batch by batch into large fixed-size chunks: a graph build's edges (rows,
    columns and weights, :meth:`mirrored` packs them) or the faiss approximate build's pair keys (one column).

    Chunks are big enough (:data:`CHUNK_BYTES` of the widest column) that the C allocator maps them directly:
    appending a tile's few edges never pins the top of the heap above that tile's large temporaries, which
    otherwise fragments the heap and grows resident memory by several times the graph's size on big inputs.
    """

    CHUNK_BYTES = 1 << 26

    def __init__(self, *dtypes: type) -> None:
        self.dtypes = tuple(np.dtype(dt) for dt in dtypes)
        self.chunk = self.CHUNK_BYTES // max(dt.itemsize for dt in self.dtypes)
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.fill = self.chunk
        self.count = 0

    def add(self, *columns: np.ndarray) -> None:
        """Append one batch: a 1-D array per column, all of the same length."""
        i, m = 0, columns[0].shape[0]
        while i < m:
            if self.fill == self.chunk:
                self.parts.append(tuple(np.empty(self.chunk, dt) for dt in self.dtypes))
                self.fill = 0
            take = min(self.chunk - self.fill, m - i)
            into = slice(self.fill, self.fill + take)
            for part, column in zip(self.parts[-1], columns, strict=True):
                part[into] = column[i : i + take]
            self.fill += take
            i += take
        self.count += m

    def _drain(self) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
        """(position, the filled part of each column) chunk by chunk; each chunk is released once copied."""
        pos = 0
        while self.parts:
            part = self.parts.pop(0)
            m = min(self.chunk, self.count - pos)
            yield pos, tuple(column[:m] for column in part)
            pos += m
        self.fill, self.count = self.chunk, 0

    def arrays(self) -> tuple[np.ndarray, ...]:
        """Every column as one array; the chunks are released as they are copied."""
        out = tuple(np.empty(self.count, dt) for dt in self.dtypes)
        for pos, columns in self._drain():
            for whole, column in zip(out, columns, strict=True):
                whole[pos : pos + column.shape[0]] = column
        return out

    def mirrored(self, n_diag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Of edge columns (i, j, s): all edges (i, j), their twins (j, i) and ``n_diag`` self-pairs of weight
        1, as COO arrays; the chunks are released as they are copied."""
        idt, _, wdt = self.dtypes
        e = self.count
        total = 2 * e + n_diag
        r, c, w = np.empty(total, idt), np.empty(total, idt), np.empty(total, wdt)
        for pos, (pr, pc, pv) in self._drain():
            m = pr.shape[0]
            r[pos : pos + m], c[pos : pos + m], w[pos : pos + m] = pr, pc, pv
            r[e + pos : e + pos + m], c[e + pos : e + pos + m], w[e + pos : e + pos + m] = pc, pr, pv
        r[2 * e :] = np.arange(n_diag, dtype=idt)
        c[2 * e :] = r[2 * e :]
        w[2 * e :] = 1.0
        return r, c, w
