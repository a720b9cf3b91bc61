"""Optimizer: what SGD and Adam share (the parameter list, its one parameter group of
hyperparameters, per-parameter state, saving).

How a step runs, and the hook for fused CUDA kernels
----------------------------------------------------
Each optimizer writes its update maths ONCE, as a plain function over lists of arrays that
changes the parameter (and state) arrays in place, e.g.

    adam_update(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps,
                weight_decay, decoupled)

and names it in a class attribute: ``Adam.update = staticmethod(adam_update)``. ``step()``
collects the arrays of the parameters that have a gradient and calls that function under
``no_grad``. A second slot, ``fast_update``, is ``None`` here; ``minilean.cuda`` may set it
(its registry installs ``Adam.fast_update = fused_adam_update``, from
``minilean/cuda/adam.py``) to a function with the *same signature* that updates all
parameters in one kernel launch. It is filled only while fast kernels are switched on, and
used only on "cuda" arrays that the kernel covers (``fused_or_plain``), exactly like
``Function.fast`` for ops; otherwise the NumPy/CuPy function runs, so every device has the
reference maths, and switching the kernels on never changes what trains.
"""
import functools
import numbers

from minilean import backend
from minilean.autograd import writes
from minilean.autograd.grad_mode import no_grad
from minilean.autograd.tensor import Tensor, is_int
from minilean.cuda.fast_function import NotCovered
from minilean.nn.module import copy_all_into, zero_grads


def fused_or_plain(fast, plain, *args, **kwargs):
    """``fast(*args, **kwargs)``, the fused kernel of an update (a slot: None while fast kernels
    are off), where its first argument, the arrays it writes in place (parameters, EMA
    averages, gradients to clip), is a non-empty list on "cuda"; ``plain(*args, **kwargs)``
    otherwise, or where the fused function refuses the arrays (``NotCovered``, raised before
    it changes any: ``minilean.cuda.multi_tensor.check_arrays``). float16 parameters, float32
    ones beside float64 ones and a parameter made as a transposed view take the plain update
    so, as an op that a fast Function does not cover runs the op it replaces. The fused
    function alone says what its kernels cover, so the rule is written (and checked) once."""
    written = args[0]
    if fast is not None and written and backend.device_of(written[0]) == "cuda":
        try:
            return fast(*args, **kwargs)
        except NotCovered:
            pass
    return plain(*args, **kwargs)


def on_device_and_dtype_of(array, param_array):
    """``array`` itself where it lies on ``param_array``'s device in its dtype, else a copy
    there, cast to it. Optimizer state and EMA averages are made beside their parameters;
    ``model.to("cuda")`` (or ``model.to(float64)``) afterwards moves only the parameters, and a
    host moment in a device update stopped it with a TypeError from deep inside CuPy. As
    PyTorch's optimizers do (state made lazily at the first step, and cast to each
    parameter's device and dtype when loaded), the state follows its parameter."""
    if backend.device_of(array) == backend.device_of(param_array) and \
            array.dtype == param_array.dtype:
        return array
    return backend.to_device(array, backend.device_of(param_array)).astype(param_array.dtype,
                                                                           copy=False)


def moved(placed, arrays):
    """Whether the parameters' ``arrays`` are not all the ones in ``placed`` (those their state
    was last put beside): ``model.to`` gives a parameter a new array, while a step writes into
    the one it has, so while nothing moves a step pays only these identity tests."""
    return placed is None or len(placed) != len(arrays) or any(
        array is not before for array, before in zip(arrays, placed))


class Optimizer:
    update = None  # the update maths over lists of arrays (set by each subclass)
    fast_update = None  # a fused CUDA version with the same signature, set by minilean.cuda

    def __init__(self, params, hyperparameters, state_names):
        if isinstance(params, Tensor):  # list() would split it into rows that get no gradient
            raise TypeError(f"{type(self).__name__} takes an iterable of parameters (e.g. "
                            f"model.parameters() or [tensor]), got a single Tensor")
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        first_index = {}
        for index, param in enumerate(self.params):
            if isinstance(param, dict):
                raise TypeError(f"{type(self).__name__} takes one list of parameters, got a "
                                f"parameter group (dict) at {index}: groups with their own "
                                f"hyperparameters are not supported (make one optimizer per "
                                f"group)")
            # a frozen weight (requires_grad off) is taken, as in PyTorch, and left alone
            # while it gets no gradient: Adam(model.parameters()) with part of a model frozen
            if not isinstance(param, Tensor) or param.dtype.kind != "f":
                got = f"a tensor of {param.dtype}" if isinstance(param, Tensor) else \
                    type(param).__name__
                raise TypeError(f"{type(self).__name__}: parameter {index} is {got}; expected "
                                f"a floating-point tensor")
            if param.grad_fn is not None:
                raise ValueError(f"{type(self).__name__}: parameter {index} is the result of "
                                 f"an op, whose gradient is not kept; expected a leaf tensor "
                                 f"(a Parameter, or a tensor made with requires_grad=True)")
            # one parameter twice would take two updates a step (on a GPU, two threads of a
            # fused kernel writing the same memory at once)
            if id(param) in first_index:
                raise ValueError(f"{type(self).__name__}: parameter {index} is parameter "
                                 f"{first_index[id(param)]} again; expected each parameter once")
            first_index[id(param)] = index
        self.hyperparameter_names = tuple(hyperparameters)
        # PyTorch's param_groups, with its one group: the hyperparameters are kept there alone
        # and ``optimizer.lr`` reads and writes them (__getattr__, __setattr__), so that
        # ``group["lr"] = x``, ``optimizer.lr = x`` and LambdaLR change the one setting
        self.param_groups = [{"params": self.params, **hyperparameters}]
        # per-parameter state arrays (momentum, moments), one list per name, aligned with params
        self.state = {name: self.zeros_beside_params() for name in state_names}
        self.step_count = 0  # calls of step()
        # each parameter's own count of the steps it took (PyTorch's state[p]["step"]): a
        # weight frozen, or unused, on the first steps starts Adam's bias corrections at 1
        # when it first trains, not at the optimizer's count, whose corrections near 1 over
        # moments still near 0 made its first updates up to 1/sqrt(1 - beta2) times too large
        self.param_steps = [0] * len(self.params)
        self.placed = None  # the parameters' arrays the state was last put beside (``moved``)

    def __getattr__(self, name):  # only called when normal lookup fails
        groups = self.__dict__.get("param_groups")
        if groups and name in self.hyperparameter_names:
            return groups[0][name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in self.__dict__.get("hyperparameter_names", ()):
            self.param_groups[0][name] = value
        else:
            object.__setattr__(self, name, value)

    @staticmethod
    def checked(**hyperparameters):
        """The hyperparameters, each checked as the subclass's constructor takes them (and
        put in its form, e.g. betas as a tuple): used at construction and by
        ``load_state_dict``, so a loaded state meets the same rules as a built one."""
        return hyperparameters

    def zero_grad(self, set_to_none=True):
        zero_grads(self.params, set_to_none)

    def step(self):
        """One update of every parameter that has a gradient (others are left alone, their
        step counts too, as PyTorch's)."""
        with no_grad():
            self._place_state()  # state made before a model.to(...) follows it
            self.step_count += 1
            live = [i for i, param in enumerate(self.params) if param.grad is not None]
            for i in live:
                self.param_steps[i] += 1
            params = [self.params[i].data for i in live]
            grads = [self.params[i].grad.data for i in live]
            state = {name: [arrays[i] for i in live] for name, arrays in self.state.items()}
            self._step(functools.partial(fused_or_plain, self.fast_update, self.update), params,
                       grads, state, [self.param_steps[i] for i in live])
        writes.wrote(self.params[i] for i in live)

    def zeros_beside_params(self):
        """One state array per parameter: zeros of its shape, dtype and device."""
        return [param.xp.zeros_like(param.data) for param in self.params]

    def _place_state(self):
        """Put the state arrays beside their parameters' arrays (``on_device_and_dtype_of``)
        where these have moved since the state was last put there."""
        arrays = [param.data for param in self.params]
        if moved(self.placed, arrays):
            for state in self.state.values():
                state[:] = [on_device_and_dtype_of(value, array)
                            for value, array in zip(state, arrays)]
            self.placed = arrays

    def _step(self, update, params, grads, state, steps):
        """Call ``update`` with this optimizer's state lists and hyperparameters; ``steps``
        holds each parameter's step count, this step included."""
        raise NotImplementedError

    # --- saving and loading ----------------------------------------------------------------
    def state_dict(self):
        """Hyperparameters, the step counts and the state arrays (shared, not copied)."""
        return {"step": self.step_count, "param_steps": list(self.param_steps),
                "hyperparameters": {name: getattr(self, name) for name in self.hyperparameter_names},
                "state": {name: list(arrays) for name, arrays in self.state.items()}}

    def load_state_dict(self, state_dict):
        """Restore from ``state_dict()`` output, copying arrays in place; a mismatch in names,
        parameter count or shapes is an error naming the key (and both shapes)."""
        for key in ("step", "hyperparameters", "state"):
            if key not in state_dict:
                raise ValueError(f"optimizer state_dict is missing key {key!r}")
        saved = state_dict["state"]
        if set(saved) != set(self.state):
            raise ValueError(f"optimizer state has keys {sorted(saved)}, "
                             f"{type(self).__name__} expects {sorted(self.state)}")
        for name, arrays in self.state.items():
            if len(saved[name]) != len(arrays):
                raise ValueError(f"optimizer state {name!r} holds {len(saved[name])} arrays "
                                 f"but this optimizer has {len(arrays)} parameters")
        for name in state_dict["hyperparameters"]:
            if name not in self.hyperparameter_names:
                raise ValueError(f"unknown optimizer hyperparameter {name!r}")
        hyperparameters = self.checked(**{**{name: getattr(self, name)
                                             for name in self.hyperparameter_names},
                                          **state_dict["hyperparameters"]})
        step = int(state_dict["step"])
        # a state saved before the counts were kept per parameter: each had the one count
        param_steps = state_dict.get("param_steps", [step] * len(self.params))
        # each count as it is, not int() of it: 1.5 became 1 and "3" 3 without a word, and
        # None or a lone number failed in Python's words ("'int' object is not iterable")
        if not isinstance(param_steps, (list, tuple)) or len(param_steps) != len(self.params) \
                or not all(is_int(count) and count >= 0 for count in param_steps):
            raise ValueError(f"optimizer state 'param_steps' must hold a count >= 0 for each "
                             f"of the {len(self.params)} parameters, got {param_steps!r}")
        param_steps = [int(count) for count in param_steps]
        # the state beside the parameters first, as PyTorch casts loaded state to each
        # parameter's dtype: made before a model.to(float64), its float32 arrays rounded the
        # loaded float64 moments before the next step cast them (a refused state is then
        # left where the next step would have put it, its values as they were)
        self._place_state()
        # everything is checked before anything is copied: a refused state changes nothing
        copy_all_into((target, value, f"{name}/{index}") for name, arrays in self.state.items()
                      for index, (target, value) in enumerate(zip(arrays, saved[name])))
        for name, value in hyperparameters.items():
            setattr(self, name, value)
        self.step_count = step
        self.param_steps = param_steps

    def __repr__(self):
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.hyperparameter_names)
        return f"{type(self).__name__}({settings})"


def minimize(optimizer, loss):
    """One optimizer step on ``loss``: clear the gradients, backpropagate, update; the loss,
    detached and left on its device (the training loop reads it back when it logs)."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def is_number(value):
    """A real number, not a bool: a text ("0.1", read from a config file) would fail later in
    a comparison's words, and lr=True, an int to Python, is a slip."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_non_negative(name, value):
    if not is_number(value):
        raise TypeError(f"{name} must be a number >= 0, got {value!r}")
    if not value >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
