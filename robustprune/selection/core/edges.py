"""Edge helpers shared by the radius-graph builders (:mod:`~robustprune.selection.core.graph`, blocked; and
:mod:`~robustprune.selection.core.faiss_backend`): the similarity rescaling, the edge budget and the chunked edge
buffer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["rescale", "too_many", "EdgeChunks"]


def rescale(cos: torch.Tensor) -> torch.Tensor:
    """``0.5 + 0.5 * cos`` in float32, rounded exactly as the released per-pick column computes it."""
    return cos.mul_(0.5).add_(0.5)


def too_many(count: int, max_edges: int | None) -> None:
    if max_edges is not None and count > max_edges:
        raise ValueError(
            f"the similarity graph would exceed max_edges={max_edges} edges; raise tau (fewer neighbours), "
            "set max_neighbors, raise max_edges, or use engine='dense' (no graph, slower)"
        )


class EdgeChunks:
    """Edges gathered tile by tile into large fixed-size chunks.

    Chunks are big enough (64 MB per array) that the C allocator maps them directly: appending a tile's
    few edges never pins the top of the heap above that tile's large temporaries, which otherwise
    fragments the heap and grows resident memory by several times the graph's size on big inputs.
    """

    CHUNK = 1 << 24

    def __init__(self, index_dtype: type) -> None:
        self.idt = index_dtype
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.fill = self.CHUNK
        self.count = 0

    def add(self, r: np.ndarray, c: np.ndarray, v: np.ndarray) -> None:
        i, m = 0, r.shape[0]
        while i < m:
            if self.fill == self.CHUNK:
                ch = self.CHUNK
                self.parts.append((np.empty(ch, self.idt), np.empty(ch, self.idt), np.empty(ch, np.float32)))
                self.fill = 0
            take = min(self.CHUNK - self.fill, m - i)
            pr, pc, pv = self.parts[-1]
            sl = slice(self.fill, self.fill + take)
            pr[sl], pc[sl], pv[sl] = r[i : i + take], c[i : i + take], v[i : i + take]
            self.fill += take
            i += take
        self.count += m

    def _filled(self):
        for k, (pr, pc, pv) in enumerate(self.parts):
            m = self.fill if k == len(self.parts) - 1 else self.CHUNK
            yield pr[:m], pc[:m], pv[:m]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The edges (i, j, s) as three arrays; the chunks are released."""
        parts = list(self._filled())
        out = tuple(
            np.concatenate([p[k] for p in parts]) if parts else np.empty(0, dt)
            for k, dt in enumerate((self.idt, self.idt, np.float32))
        )
        self.parts.clear()
        return out

    def mirrored(self, n_diag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All edges (i, j), their twins (j, i) and ``n_diag`` self-pairs of weight 1, as COO arrays;
        the chunks are released as they are copied."""
        e = self.count
        total = 2 * e + n_diag
        r, c, w = np.empty(total, self.idt), np.empty(total, self.idt), np.empty(total, np.float32)
        pos = 0
        for pr, pc, pv in self._filled():
            m = pr.shape[0]
            r[pos : pos + m], c[pos : pos + m], w[pos : pos + m] = pr, pc, pv
            r[e + pos : e + pos + m], c[e + pos : e + pos + m], w[e + pos : e + pos + m] = pc, pr, pv
            pos += m
        self.parts.clear()
        r[2 * e :] = np.arange(n_diag, dtype=self.idt)
        c[2 * e :] = r[2 * e :]
        w[2 * e :] = 1.0
        return r, c, w
