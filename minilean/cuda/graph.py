"""CUDA graphs: capture the kernel launches of one call once, then replay them with one launch.

A small model's training step on a GPU is bound by the host, not the GPU: each of its roughly
thousand kernels does microseconds of work, and Python and CuPy spend about as long launching
it. Stream capture records every launch of one call into a graph, which the driver then
replays from a single launch (``cudaGraphLaunch``).

What a captured function must do (the rules of stream capture, and how this class meets them):

* Read its inputs from device buffers that stay put. ``CapturedCall`` owns those buffers; each
  call copies the new values in, then replays.
* Copy nothing between host and device, and read no host value that changes from call to
  call: capture records a kernel with its arguments, so a Python number is baked into the
  graph as it was when captured. (A timestep array on the host would be too; hence the device
  timesteps of ``minilean.models.diffusion``.)
* Return arrays: the ones written while capturing. Every replay writes the same arrays again,
  so ``outputs`` are the same objects after each call, with new contents.
* Call no cuBLAS: CuPy refuses to while a stream is captured. The engine's products all go
  through ``backend.matmul``, which this class points at minilean's own kernel
  (``minilean.cuda.matmul``) for the warm-up and the capture.
* Allocate from a memory pool of its own. Temporaries it freed while capturing are still
  written by every replay; in CuPy's shared pool they could be handed to other arrays.
* Be called once before the capture (the warm-up): nothing executes while capturing, and
  nothing may compile or upload either, so an ordinary first call compiles the kernels, fills
  the caches of device tables and grows the private pool.
"""
import numpy

from minilean import backend
from minilean.backend import DeviceError
from minilean.cuda import matmul


class GraphCaptureError(DeviceError):
    """A function could not be captured (it copied to or from the host, synchronised, or
    called a library that CuPy does not capture)."""


class CapturedCall:
    """``function(*inputs) -> array or tuple of arrays``, captured as one CUDA graph.

    ``example_inputs`` (host or device arrays) fix the shapes and dtypes; the warm-up and the
    capture both run on them. Each call ``captured(*inputs)`` then copies ``inputs`` into the
    graph's input buffers, replays the graph on the current stream and returns ``outputs``.
    """

    def __init__(self, function, example_inputs):
        import cupy
        self._pool = cupy.cuda.MemoryPool()  # private: see the module docstring
        self._stream = cupy.cuda.Stream(non_blocking=True)  # capture needs a stream of its own
        self.inputs = tuple(cupy.array(example) for example in example_inputs)
        cupy.cuda.get_current_stream().synchronize()  # the side stream sees finished inputs
        with cupy.cuda.using_allocator(self._pool.malloc), self._stream, \
                backend.graph_recording(matmul.matmul):
            function(*self.inputs)
            self._stream.begin_capture()
            try:
                self.outputs = function(*self.inputs)
                self._graph = self._stream.end_capture()
            except Exception as error:
                self._end_failed_capture()
                raise GraphCaptureError(f"cannot capture {_name(function)} as a CUDA graph: "
                                        f"{_first_line(error)}") from error
        self._stream.synchronize()

    def _end_failed_capture(self):
        """End a capture that an error interrupted, if it is still open (CUDA refuses the
        graph of a failed capture, or says there is no capture: either way, ignore it)."""
        try:
            self._stream.end_capture()
        except Exception:  # noqa: BLE001  the cause is raised by the caller
            pass

    def __call__(self, *inputs):
        import cupy
        if len(inputs) != len(self.inputs):
            raise ValueError(f"captured call takes {len(self.inputs)} inputs, got {len(inputs)}")
        for index, (buffer, value) in enumerate(zip(self.inputs, inputs)):
            if value.shape != buffer.shape or value.dtype != buffer.dtype:
                raise ValueError(f"captured call input {index}: expected {buffer.dtype} of shape "
                                 f"{buffer.shape} (as captured), got {value.dtype} {value.shape}")
            if isinstance(value, cupy.ndarray):
                cupy.copyto(buffer, value)
            else:  # on the stream: a copy without one would first wait for the GPU to be idle
                buffer.set(numpy.ascontiguousarray(value), stream=cupy.cuda.get_current_stream())
        self._graph.launch()
        return self.outputs


def _name(function):
    return getattr(function, "__qualname__", type(function).__name__)


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
