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
* Draw no random numbers on the device (dropout's mask, ``randn(..., device="cuda")``, an
  init): the draw's kernels read the generator's state by its address, so every replay would
  draw from the generator as it was captured (whatever ``manual_seed`` did since, which frees
  that state), and the CPU stand-in of the tests replays the capture's very numbers.
  ``backend.generator`` refuses such a draw while a graph is recorded, at the warm-up or the
  capture, as a ``GraphCaptureError``. Draw them outside, on the host as the diffusion
  command does, and pass them in as inputs.
* Return arrays: the ones written while capturing. Every replay writes the same arrays again,
  so ``outputs`` are the same objects after each call, with new contents.
* Call no cuBLAS: CuPy refuses to while a stream is captured. The engine's products all go
  through ``backend.matmul``, which this class points at minilean's own kernel
  (``minilean.cuda.matmul``) for the warm-up and the capture.
* Allocate from a memory pool of its own. Temporaries it freed while capturing are still
  written by every replay; in CuPy's shared pool they could be handed to other arrays.
* Be called once before the capture (the warm-up): nothing executes while capturing, and
  nothing may compile either, so an ordinary first call compiles the kernels, fills the
  caches of device constants and grows the private pool. The constants it reads are kept
  with the graph (``held``): a cache may drop one while the graph still reads it.
* Allocate nothing that must outlive a replay step, and upload through ``upload``. A device
  table of the addresses of arrays made in the capture (which only then are known) is made
  during the warm-up (``made_at_warm_up``) and only filled during the capture, by an upload
  that waits until the capture has ended. Made during the capture, it could get a block that
  a temporary freed earlier in the capture, which every replay writes before the table is
  read (an H200 stopped with an illegal address on exactly that).
"""
import numpy

from minilean import backend
from minilean.backend import GraphCaptureError
from minilean.cuda import matmul


class _Kept:
    """What a ``CapturedCall`` keeps for its graph's life: the objects its function made during
    the warm-up for the capture to use again, and the uploads the capture left for its end."""

    def __init__(self):
        self.made = []       # (key, object), in the order the warm-up made them
        self.taken = 0       # how many of them the capture has taken back so far
        self.uploads = None  # while capturing: [(device array, host array)]
        self.held = []       # the cached device constants the function read (``held``)


_recording = None  # the _Kept of the CapturedCall that is warming up or capturing


def made_at_warm_up(key, make):
    """``make()``, made during the warm-up of the ``CapturedCall`` being recorded and kept for
    the graph's life; during its capture, the object made at the same point of the warm-up,
    whose ``key`` must be ``key`` (the capture runs what the warm-up ran). Outside a recording,
    just ``make()``."""
    if _recording is None:
        return make()
    if _recording.uploads is None:
        made = make()
        _recording.made.append((key, made))
        return made
    if _recording.taken == len(_recording.made) or _recording.made[_recording.taken][0] != key:
        raise RuntimeError(f"the capture asked for {key!r}, which its warm-up did not make "
                           f"at this point: the two calls took different paths")
    _recording.taken += 1
    return _recording.made[_recording.taken - 1][1]


def held(constant):
    """``constant``, a device array from a cache (a schedule table, a convolution's
    geometry), kept for the graph's life where a ``CapturedCall`` is being recorded: the
    graph reads it at every replay, and a cache that dropped it would let its memory go to
    other arrays."""
    if _recording is not None:
        _recording.held.append(constant)
    return constant


def upload(array, host):
    """Copy the host array ``host`` into the device array ``array``, on the current stream; while
    a ``CapturedCall`` captures, once the capture has ended instead (a copy from the host cannot
    be captured; the graph reads ``array`` only when replayed, by which time it is filled)."""
    import cupy
    if _recording is None or _recording.uploads is None:
        array.set(host, stream=cupy.cuda.get_current_stream())
    else:
        _recording.uploads.append((array, host))


class CapturedCall:
    """``function(*inputs) -> array or tuple of arrays``, captured as one CUDA graph.

    ``example_inputs`` (host or device arrays) fix the shapes and dtypes; the warm-up and the
    capture both run on them. Each call ``captured(*inputs)`` then copies ``inputs`` into the
    graph's input buffers, replays the graph on the current stream and returns ``outputs``.
    """

    def __init__(self, function, example_inputs):
        global _recording
        import cupy
        self._pool = cupy.cuda.MemoryPool()  # private: see the module docstring
        self._stream = cupy.cuda.Stream(non_blocking=True)  # capture needs a stream of its own
        self.inputs = tuple(cupy.array(example) for example in example_inputs)
        cupy.cuda.get_current_stream().synchronize()  # the side stream sees finished inputs
        # kept for the graph's life: it reads what the warm-up made, which must stay allocated
        self._kept = _recording = _Kept()
        try:
            with cupy.cuda.using_allocator(self._pool.malloc), self._stream, \
                    backend.graph_recording(matmul.matmul):
                try:
                    function(*self.inputs)
                except GraphCaptureError as error:  # refused at the warm-up: a random draw
                    raise GraphCaptureError(f"cannot capture {_name(function)} as a CUDA "
                                            f"graph: {_first_line(error)}") from error
                self._kept.uploads = []
                try:  # from the capture's start: a signal may stop it as begin_capture returns
                    self._stream.begin_capture()
                    self.outputs = function(*self.inputs)
                    self._graph = self._stream.end_capture()
                except Exception as error:
                    self._end_failed_capture()
                    raise GraphCaptureError(f"cannot capture {_name(function)} as a CUDA graph: "
                                            f"{_first_line(error)}") from error
                except BaseException:  # Ctrl-C, SIGTERM: stop as asked, leave no stream capturing
                    self._end_failed_capture()
                    raise
        finally:
            _recording = None
        with self._stream:
            for array, host in self._kept.uploads:
                upload(array, host)
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
