"""CUDA graphs of a model's forward: one launch a call instead of one per kernel.

Why: full-size ESRGAN launches about 1500 kernels a forward, each launched from Python while
the launching thread holds the interpreter lock, which the pipeline's other threads (the
row threads preparing the next windows, the GeoTIFF writer between its GDAL calls) wait
for. A captured graph replays the whole forward from one call, so a model call holds the lock
for well under a millisecond, and the GPU runs the kernels back to back.

A shape (with its dtype, strides and device) is captured the second time it is seen: the
first call runs eagerly (the warm-up a capture needs: cuDNN's and cuBLAS's lazy set-up), and a
shape met once (a scene's last, partial batch) costs no capture. At most :data:`MAX_GRAPHS`
shapes are kept: each graph holds the memory of its own activations. The graph's input and
output are its own buffers: a call copies its input in, replays, and returns a copy of the
output, all under one lock, so threads sharing the model never see each other's values. A
capture that fails (a model that waits for the device inside its forward) turns graphs off
for this model with a warning; its calls then run eagerly.

A capture made while other threads used the GPU failed (an H200, 2026-11-28: the scene's
row threads uploading and preparing their windows): a scene run captures the batch shapes its
rows will use with :meth:`GraphedForward.prepare` before its row threads start, and no shape
after; its graphs are dropped when it ends. The interpreter's garbage collector is held
during a capture (an object freed then, a pinned host buffer, would record its CUDA events
from the capturing thread).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: Shapes captured at most per model (each graph keeps its activations' memory).
MAX_GRAPHS = 2


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: torch.Tensor
    output: torch.Tensor


class GraphedForward:
    """``run`` (an eager forward of a CUDA tensor) replayed from CUDA graphs where it can be.

    ``run`` must compute its output from its input tensor alone, without waiting for the
    device (no ``.item()``, no copies to the host) and without randomness; it is called
    under the caller's ``torch.inference_mode()``. Calls return float32 tensors the caller
    owns. A graph reads the weights where they were at its capture: after moving the module
    or replacing its tensors, make a new ``GraphedForward`` (``InferenceModel`` drops its
    graphs at the end of each scene).
    """

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], limit: int = MAX_GRAPHS
                 ) -> None:
        self._run = run
        self.limit = limit
        self._graphs: dict[tuple, _Graph] = {}
        self._seen: set[tuple] = set()
        self._lock = threading.Lock()
        #: why graphs were turned off for this model (a failed capture), else None
        self.disabled: str | None = None
        #: whether a shape's second call captures it (False after :meth:`prepare`)
        self.capture_on_call = True
        #: calls answered by a replay
        self.replays = 0

    @property
    def captured(self) -> int:
        """How many shapes have a graph."""
        return len(self._graphs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The forward of ``x`` (on a CUDA device), as float32."""
        key = _key(x)
        with self._lock:
            graph = self._graphs.get(key)
            if (graph is None and self.disabled is None and self.capture_on_call
                    and key in self._seen and len(self._graphs) < self.limit):
                graph = self._capture(x)
            if graph is not None:
                graph.inputs.copy_(x)
                graph.graph.replay()
                self.replays += 1
                # a copy: the next replay (another thread's call) overwrites the output buffer
                return graph.output.to(torch.float32, copy=True)
        out = self._run(x).float()
        self._seen.add(key)  # only a call that worked warms a shape up
        return out

    def prepare(self, *inputs: torch.Tensor) -> int:
        """Capture the shapes of ``inputs`` now (each after an eager call of it, unless one
        ran before), in that order and up to :attr:`limit`, while no other thread uses the
        GPU; later calls capture no other shape. Returns how many of them have a graph. A
        warm-up or capture that fails (out of memory...) turns graphs off, with a warning."""
        with self._lock:
            self.capture_on_call = False
            for x in inputs:
                key = _key(x)
                if key in self._graphs:
                    continue
                if self.disabled is not None or len(self._graphs) >= self.limit:
                    break
                if key not in self._seen:
                    try:
                        self._run(x)  # the warm-up a capture needs
                    except Exception as exc:  # noqa: BLE001  (e.g. out of GPU memory)
                        self._turn_off(exc)
                        break
                    self._seen.add(key)
                self._capture(x)
            return sum(_key(x) in self._graphs for x in inputs)

    def _turn_off(self, exc: BaseException) -> None:
        self.disabled = f"{type(exc).__name__}: {exc}".splitlines()[0]
        warnings.warn(f"CUDA graph capture failed, the model runs without graphs: "
                      f"{self.disabled}", RuntimeWarning, stacklevel=4)

    def _capture(self, x: torch.Tensor) -> _Graph | None:
        """A graph of ``run`` on a buffer holding ``x``'s values, kept for ``x``'s shape; or
        None, graphs then off for this model."""
        device = x.device
        with _CAPTURING:  # one capture at a time in the process (the collector is shared)
            collecting = gc.isenabled()
            gc.disable()
            stream = None
            try:
                # Work queued before the capture (other threads' too) finished first, as
                # torch.cuda.graph does: the private memory pool starts from a quiet device
                torch.cuda.synchronize(device)
                inputs = x.clone()  # same strides (channels_last stays channels_last)
                graph = torch.cuda.CUDAGraph()
                stream = torch.cuda.Stream(device)  # a capture cannot use the default stream
                stream.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(stream):
                    # "thread_local": other threads' CUDA calls are not part of the capture
                    graph.capture_begin(capture_error_mode="thread_local")
                    try:
                        output = self._run(inputs)
                    except BaseException:
                        # ended for its own sake: its error ("operation failed due to a
                        # previous error during capture") would hide the one that matters
                        with contextlib.suppress(Exception):
                            graph.capture_end()
                        raise
                    graph.capture_end()
            except Exception as exc:  # noqa: BLE001  (torch.AcceleratorError, RuntimeError)
                self._turn_off(exc)
                return None
            finally:
                if stream is not None:
                    torch.cuda.current_stream(device).wait_stream(stream)
                if collecting:
                    gc.enable()
        self._graphs[_key(x)] = _Graph(graph, inputs, output)
        return self._graphs[_key(x)]


#: Held during a capture: captures from two models' threads never overlap (each turns the
#: process's garbage collector off and back on).
_CAPTURING = threading.Lock()


def _key(x: torch.Tensor) -> tuple:
    return (tuple(x.shape), x.dtype, x.stride(), x.device)
