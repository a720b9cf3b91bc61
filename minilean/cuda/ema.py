"""The EMA of all parameters in one kernel launch (``ema.cu``).

``fused_ema_update`` has the signature of ``minilean.optim.ema.ema_update`` and is what the
registry installs as ``EMA.fast_update_arrays``. ``reference`` is the NumPy statement.
"""
from minilean.cuda import compile as kernels
from minilean.cuda.multi_tensor import launch_over_all

program = kernels.Program("ema.cu", ["ema_update<float>", "ema_update<double>"])


def reference(average, param, decay):
    """avg <- decay * avg + (1 - decay) * p, on NumPy arrays (returns the new average), with
    1 - decay a Python float (double), rounded once to the arrays' dtype."""
    return average - (1 - decay) * (average - param)


def fused_ema_update(averages, params, decay):
    """In place on CuPy arrays, every average in one launch (a strided parameter is read
    from a contiguous copy)."""
    # 1 - decay from the host in double: in float32, 1 - 0.9999 is off by 1.7e-4 relative
    launch_over_all(program, "ema_update", [list(averages), list(params)], (1 - decay,),
                    copied=(1,))
