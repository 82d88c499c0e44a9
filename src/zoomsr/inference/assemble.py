"""Turning blended rows of windows into finished uint8 output rows, mostly in parallel.

A row of windows ``r`` covers LR rows ``[y_r, y_r + h)``. Of these, the first ``c`` rows were
also covered by earlier window rows (their sums are *carried*), rows up to ``n`` (the next
row's start) are final once ``r`` is added, and the rest is carried on. Two ways to put rows
together, with the same bytes as accumulating whole rows (float addition is commutative, and
each output value gets the same terms in the same order):

- locally (:class:`RowChain`), each row's thread adds the carry into its row where the row was
  blended (on a GPU: there), in row order, then finishes rows ``[0, n)`` (divide by the blend
  weights, uint8, mask) and brings back only those and the new carry;
- from Ray workers, which do not have the carry, :func:`prepare_row` finishes rows ``[c, n)``
  (they depend on row ``r`` alone) in the worker, and :class:`RowAssembler` adds the carry to
  the first ``c`` rows, finishes those and keeps the tail, in order.
"""

from __future__ import annotations

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
    stay there (:meth:`RowChain.finish` and :func:`prepare_row` bring the uint8 rows back).
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


def final_rows(windows: WindowGrid, r: int) -> int:
    """LR rows at the top of window row ``r`` that no later window row covers."""
    return windows.final_until(r) - windows.ys[r]


@dataclass
class ReadyRow:
    """A row of windows with its own final rows already finished.

    ``edge_*``: sums ``[C, c*s, W]`` / weights of the carried rows; ``interior``: finished
    rows ``[c, n)`` as ``[(n - c)*s, W, C + 1]`` uint8; ``tail_*``: rows from ``max(c, n)`` on,
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


def prepare_row(res, windows: WindowGrid, scale: int, with_lr: bool) -> ReadyRow:  # noqa: ANN001
    """Finish what row ``res`` (a :class:`~zoomsr.inference.rows.RowResult`) decides alone.

    From a GPU, everything the row hands on comes back in one transfer (:func:`to_host`).
    """
    s = scale
    c = carried_rows(windows, res.row)
    n = final_rows(windows, res.row)
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
        # (host arrays; a RowChain's on the rows' device once a row blended there is linked)
        self.sums: Array = (
            np.zeros((channels, 0, hr_width), np.float32) if sums is None else sums)
        self.weights: Array = (
            np.zeros((0, hr_width), np.float32) if weights is None else weights)


@dataclass
class DoneRow:
    """A row of windows whose output rows are written (:class:`RowChain`): what the consumer
    still needs. ``carry_*``: the sums ``[C, m, W]`` and weights ``[m, W]`` carried to the next
    row (host copies: the resume state)."""

    row: int
    carry_sums: np.ndarray
    carry_weights: np.ndarray
    few_frames: int
    windows: int


class RowChain(Carry):
    """The carry between consecutive rows of windows, kept where rows are blended.

    :meth:`link` (called in row order, e.g. from several row threads in turn) adds the carry
    into a row's own sums and keeps the row's tail as the next carry; :meth:`finish` (any
    order) then finishes the row's final rows there. From a GPU, only uint8 rows and the new
    carry come back, in one transfer; the carried rows were brought back as floats twice (as
    the row's edge and as the previous row's tail) and finished on the host.
    """

    def link(self, res) -> None:  # noqa: ANN001  (a rows.RowResult: rows imports this module)
        """Add the carry into row ``res`` (in place) and take its tail as the next carry."""
        s, win = self.scale, self.windows
        c = carried_rows(win, res.row) * s
        n = final_rows(win, res.row) * s
        if self.weights.shape[0] != c:
            raise RuntimeError(f"row {res.row}: carry of {self.weights.shape[0]} HR rows, "
                               f"expected {c}")
        if c:
            if isinstance(res.sums, torch.Tensor) and not isinstance(self.sums, torch.Tensor):
                # a carry a resumed run restored (host arrays): async, like every upload
                self.sums = to_tensor(self.sums, res.sums.device)
                self.weights = to_tensor(self.weights, res.sums.device)
            res.sums[:, :c] += self.sums  # own + carry: the order RowAssembler adds them in
            res.weights[:c] += self.weights
        # a copy: the row's own arrays are released once it is finished
        self.sums = _copy(res.sums[:, n:])
        self.weights = _copy(res.weights[n:])

    def finish(self, res, with_lr: bool  # noqa: ANN001
               ) -> tuple[np.ndarray, np.ndarray | None, int, np.ndarray, np.ndarray]:
        """Row ``res``, once linked: (uint8 output rows ``[n*s, W, C + 1]`` from its top, LR
        mosaic rows ``[n, W_lr, 4]`` or None, windows with too few frames, carried sums and
        weights), on the host, from one transfer: :meth:`bring_back` of :meth:`finished`."""
        return self.bring_back(self.finished(res, with_lr))

    def finished(self, res, with_lr: bool) -> tuple:  # noqa: ANN001
        """What :meth:`finish` returns, where the row was blended (on a GPU: kernels queued,
        nothing waited for)."""
        s, win = self.scale, self.windows
        n = final_rows(win, res.row)
        block = finish(res.sums[:, : n * s], res.weights[: n * s], res.valid[:n], s)
        lr = with_mask(res.mosaic[:n], res.valid[:n]) if with_lr else None
        return block, lr, res.few_frames, res.sums[:, n * s :], res.weights[n * s :]

    @staticmethod
    def bring_back(row: tuple
                   ) -> tuple[np.ndarray, np.ndarray | None, int, np.ndarray, np.ndarray]:
        """:meth:`finished`'s arrays on the host, in one transfer."""
        block, lr, few, sums, weights = to_host(*row)
        return block, lr if row[1] is not None else None, int(few), sums, weights


def _copy(x: Array) -> Array:
    return x.clone() if isinstance(x, torch.Tensor) else x.copy()


class RowAssembler(Carry):
    """Adds :class:`ReadyRow` s in order and returns each one's finished output rows."""

    def add(self, ready: ReadyRow) -> tuple[int, np.ndarray]:
        """Add window row ``ready``; return (first HR row, uint8 rows ``[n, W, C + 1]``)."""
        s, win = self.scale, self.windows
        c = carried_rows(win, ready.row)
        n = final_rows(win, ready.row)
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
