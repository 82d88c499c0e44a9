"""Turning blended rows of windows into finished uint8 output rows, mostly in parallel.

A row of windows ``r`` covers LR rows ``[y_r, y_r + h)``. Of these, the first ``c`` rows were
also covered by earlier window rows (their sums are *carried*), rows up to ``n`` (the next
row's start) are final once ``r`` is added, and the rest is carried on. Rows ``[c, n)``
depend on row ``r`` alone, so :func:`prepare_row` finishes them (divide by the blend weights,
uint8, mask) wherever ``r`` was computed, e.g. in a worker thread; :class:`RowAssembler` then
adds the carry to the first ``c`` rows, finishes those and keeps the tail, in order. The
result is byte-identical to accumulating whole rows (float addition is commutative, and each
output value gets the same terms in the same order).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from zoomsr.inference.arrays import Array, to_host, to_tensor, xp
from zoomsr.inference.windows import WindowGrid


def to_uint8(x: Array, overwrite: bool = False) -> Array:
    """Values in [0, 1] (clipped) to uint8 (NumPy array or torch tensor). ``overwrite``: ``x``
    is a float temporary that may serve as the work array (a row of output is ~100 MB of
    float32: three temporaries of it were the run's peak memory)."""
    m = xp(x)
    y = m.clip(x, 0.0, 1.0, out=x) if overwrite else m.clip(x, 0.0, 1.0)
    y *= 255.0
    m.round(y, out=y)
    return y.to(torch.uint8) if isinstance(y, torch.Tensor) else y.astype(np.uint8)


def upsample_mask(valid_lr: Array, scale: int) -> Array:
    """``[h, w]`` bool -> ``[h*scale, w*scale]`` (nearest), in one pass (NumPy or torch)."""
    rows, cols = valid_lr.shape
    return xp(valid_lr).broadcast_to(
        valid_lr[:, None, :, None], (rows, scale, cols, scale)).reshape(rows * scale, cols * scale)


def finish(sums: np.ndarray | torch.Tensor, weights: np.ndarray | torch.Tensor,
           valid_lr: Array, scale: int) -> Array:
    """``[rows, W, C + 1]`` uint8 output rows (values, then the 0/255 mask) from blended sums
    ``[C, rows, W]``, weights ``[rows, W]`` and LR validity ``[rows / scale, W / scale]``.

    Tensors (rows blended on a GPU) are finished there, with the same float32 operations, and
    stay there (:func:`prepare_row` brings the uint8 rows back).
    """
    if isinstance(sums, torch.Tensor) and not isinstance(valid_lr, torch.Tensor):
        valid_lr = to_tensor(valid_lr, sums.device)  # async: a blocking copy waits for the queue
    m = xp(sums)
    value = sums / m.where(weights > 0, weights, 1.0)
    return with_mask(m.moveaxis(to_uint8(value, overwrite=True), 0, -1),
                     upsample_mask(valid_lr, scale) & (weights > 0))


def with_mask(values: Array, valid: Array) -> Array:
    """``[rows, W, C + 1]`` uint8 output rows: ``values`` ``[rows, W, C]`` (0 where not
    ``valid``), then the 0/255 mask (NumPy or torch)."""
    block = xp(values).concatenate([values, values[:, :, :1]], 2)
    block[:, :, -1] = 255
    block *= valid[:, :, None]
    return block


def carried_rows(windows: WindowGrid, r: int) -> int:
    """LR rows at the top of window row ``r`` that earlier window rows also cover."""
    if r == 0:
        return 0
    return max(0, windows.ys[r - 1] + windows.win_h - windows.ys[r])


@dataclass
class ReadyRow:
    """A row of windows with its own final rows already finished.

    ``edge_*``: sums ``[C, c*s, W]`` / weights of the carried rows; ``interior``: finished
    rows ``[c, n)`` as ``[(n - c)*s, W, C + 1]`` uint8 (empty when the row's thread already
    wrote them to the output, as the local path does); ``tail_*``: rows from ``max(c, n)`` on,
    carried to the next row; ``valid``: LR validity ``[h, W]``; ``lr``: the finished LR mosaic
    rows ``[n, W_lr, 4]`` (only when asked).
    """

    row: int
    edge_sums: np.ndarray
    edge_weights: np.ndarray
    interior: np.ndarray
    tail_sums: np.ndarray
    tail_weights: np.ndarray
    valid: np.ndarray
    lr: np.ndarray | None
    few_frames: int
    windows: int

    def without_interior(self) -> ReadyRow:
        """This row once its interior is written elsewhere, holding none of its memory.

        Arrays that came back from a GPU in one transfer (:func:`to_host`) are views of one
        buffer, and any of them keeps the whole buffer alive: a row waiting for the consumer
        held its finished interior (most of the row: 55 MB at 3856 LR px width) through its
        edges. Those views are copied; arrays that own their memory are kept as they are.
        """
        def own(a: np.ndarray | None) -> np.ndarray | None:
            return a if a is None or a.base is None else a.copy()

        return dataclasses.replace(
            self, interior=np.empty((0, *self.interior.shape[1:]), self.interior.dtype),
            edge_sums=own(self.edge_sums), edge_weights=own(self.edge_weights),
            tail_sums=own(self.tail_sums), tail_weights=own(self.tail_weights),
            valid=own(self.valid), lr=own(self.lr))


def prepare_row(res, windows: WindowGrid, scale: int, with_lr: bool) -> ReadyRow:  # noqa: ANN001
    """Finish what row ``res`` (a :class:`~zoomsr.inference.rows.RowResult`) decides alone.

    From a GPU, everything the row hands on comes back in one transfer (:func:`to_host`).
    """
    s = scale
    c = carried_rows(windows, res.row)
    n = windows.final_until(res.row) - windows.ys[res.row]
    interior = finish(res.sums[:, c * s : n * s], res.weights[c * s : n * s], res.valid[c:n], s)
    k = max(c, n)
    lr = with_mask(res.mosaic[:n], res.valid[:n]) if with_lr else None
    (edge_sums, edge_weights, interior, tail_sums, tail_weights, valid, lr,
     few) = to_host(res.sums[:, : c * s], res.weights[: c * s], interior,
                    res.sums[:, k * s :], res.weights[k * s :], res.valid, lr, res.few_frames)
    return ReadyRow(
        row=res.row, edge_sums=edge_sums, edge_weights=edge_weights, interior=interior,
        tail_sums=tail_sums, tail_weights=tail_weights, valid=valid,
        lr=lr if with_lr else None, few_frames=int(few), windows=res.windows,
    )


class Carry:
    """Blended sums ``[C, m, W_hr]`` and weights ``[m, W_hr]`` of the HR rows that later window
    rows still touch (at most one window of rows), starting at the next row to finish; the
    arrays a resumed run restores."""

    def __init__(self, windows: WindowGrid, scale: int, channels: int, hr_width: int,
                 sums: np.ndarray | None = None, weights: np.ndarray | None = None) -> None:
        self.windows = windows
        self.scale = scale
        self.sums = np.zeros((channels, 0, hr_width), np.float32) if sums is None else sums
        self.weights = np.zeros((0, hr_width), np.float32) if weights is None else weights


class RowAssembler(Carry):
    """Adds :class:`ReadyRow` s in order and returns each one's finished output rows."""

    def add(self, ready: ReadyRow) -> tuple[int, np.ndarray]:
        """Add window row ``ready``; return (first HR row, uint8 rows ``[n, W, C + 1]``)."""
        s, win = self.scale, self.windows
        c = carried_rows(win, ready.row)
        n = win.final_until(ready.row) - win.ys[ready.row]
        if self.weights.shape[0] != c * s:
            raise RuntimeError(f"row {ready.row}: carry of {self.weights.shape[0]} HR rows, "
                               f"expected {c * s}")
        edge_sums = ready.edge_sums + self.sums  # same order of terms as one accumulator
        edge_weights = ready.edge_weights + self.weights
        head = min(c, n)
        top = finish(edge_sums[:, : head * s], edge_weights[: head * s], ready.valid[:head], s)
        self.sums = np.concatenate([edge_sums[:, n * s :], ready.tail_sums], axis=1)
        self.weights = np.concatenate([edge_weights[n * s :], ready.tail_weights])
        block = top if not ready.interior.size else np.concatenate([top, ready.interior])
        return win.ys[ready.row] * s, block
