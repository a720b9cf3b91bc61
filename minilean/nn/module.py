"""Module and Parameter: the containers that hold a network's weights and find them again.

A ``Parameter`` is a tensor that a module owns and an optimizer updates. Assigning a Parameter
or a Module to an attribute of a Module registers it (``__setattr__``), which is how
``parameters()``, ``state_dict()``, ``to()`` and ``train()/eval()`` find every weight in a
tree of modules without the author listing them. Buffers (``register_buffer``) are saved and
moved like parameters but never trained (a non-persistent one is moved but not saved). A
registered name keeps its kind: assigning a new tensor to a buffer's name updates the buffer,
a parameter's name accepts only a Parameter or None, and a submodule's only a Module or None
(anything else there is a TypeError rather than weights that silently stop being trained and
saved).
"""
import threading
from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import numpy

from minilean import backend
from minilean.autograd import writes
from minilean.autograd.tensor import (Tensor, ToShorthands, device_and_dtype, is_bool,
                                      is_int)
from minilean.errors import StateDictError


class Parameter(Tensor):
    """A tensor that is a learnable weight of a module: ``requires_grad`` is on by default."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def check_sizes(**sizes):
    """A layer's sizes (name=value: features, channels), each an int >= 1, checked where the
    layer is built: a 0 makes a weight with no elements, whose init divides by its fan-in of
    0, and a float or a negative size would fail in NumPy's words."""
    for name, size in sizes.items():
        if not is_int(size) or size < 1:
            raise ValueError(f"{name} must be an int >= 1, got {size!r}")


def empty_parameter(*shape):
    """An uninitialised float32 CPU parameter; layers fill it with their init right away."""
    return Parameter(backend.xp_for("cpu").empty(shape, dtype="float32"))


# Counts the changes to any module's registries, so that a module may keep the list of its
# tree's parameters (or buffers) while the count holds still: an optimizer, gradient clipping
# and an EMA each walk the whole tree on every training step, and a change anywhere below a
# module (a submodule's new weight) changes that module's list.
_registry_changes = 0


def _registries_changed():
    global _registry_changes
    _registry_changes += 1


class _Registry(OrderedDict):
    """A module's ``_parameters``, ``_buffers`` or ``_modules``, which counts its own changes
    in ``_registry_changes``: PyTorch code writes them directly (``del
    module._parameters["bias"]``, ``module._modules[name] = converted``), and the lists kept
    of the tree's members (``_listed``) then still held the old ones: ``parameters()`` gave
    the optimizer, and ``state_dict()`` the checkpoint, a removed bias and not the new one.
    OrderedDict's pop, popitem, clear and move_to_end bypass ``__setitem__`` and
    ``__delitem__``, so each is counted too (setdefault, update and ``|=`` call
    ``__setitem__``). Every write is counted here, Module's own registrations included."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        _registries_changed()

    def __delitem__(self, key):
        super().__delitem__(key)
        _registries_changed()

    def _counted(method):
        def counted(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            finally:
                _registries_changed()
        counted.__name__ = method.__name__
        return counted

    pop = _counted(OrderedDict.pop)
    popitem = _counted(OrderedDict.popitem)
    clear = _counted(OrderedDict.clear)
    move_to_end = _counted(OrderedDict.move_to_end)
    del _counted


# .ids: the modules whose train() walk is under way in this thread, below which a walk does
# not enter them again (two with their own train, each holding the other, would call each
# other's without end)
_train_walks = threading.local()


# the attributes that Module.__init__ sets, which no member may take the name of
_MODULE_STATE = ("_parameters", "_buffers", "_modules", "training", "_listed_members",
                 "_non_persistent_buffers")


class Module(ToShorthands):
    """Base class of every layer and model: subclasses set attributes and write ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", _Registry())
        object.__setattr__(self, "_buffers", _Registry())
        object.__setattr__(self, "_modules", _Registry())
        # names of the buffers left out of state_dict; register_buffer sets each buffer's
        # membership, and only a registered buffer's name is looked up here
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "training", True)
        # registry name -> (_registry_changes when listed, [(dotted name, tensor), ...])
        object.__setattr__(self, "_listed_members", {})

    def __getstate__(self):
        """The module without its lists of members: they hold the count of this process's
        ``_registry_changes``, which means nothing in the process that unpickles it."""
        return {**self.__dict__, "_listed_members": {}}

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- registration ----------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before assigning {name!r}")
        if isinstance(value, Parameter):
            self._unregister(name, keeping=self._parameters)
            self._parameters[name] = value
        elif name in self._parameters:
            # a plain tensor here would silently stop being trained and saved, so only a
            # Parameter or None (no such weight, as in a layer without bias) may take the slot
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                f"(Parameter or None expected)")
            self._parameters[name] = None
        elif isinstance(value, Module):
            self._unregister(name, keeping=self._modules)
            self._modules[name] = value
        elif name in self._buffers:
            # a new value for a buffer (e.g. a running statistic) stays a buffer: saved and moved
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} "
                                f"(Tensor or None expected)")
            self._buffers[name] = value
        else:
            if name in self._modules:
                # as for a parameter: anything but None here would silently drop the submodule
                # (and its weights) from parameters() and state_dict()
                if value is not None:
                    raise TypeError(f"cannot assign {type(value).__name__} as child module "
                                    f"{name!r} (Module or None expected)")
                del self._modules[name]
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def _unregister(self, name, keeping):
        """Drop ``name`` from the registries other than ``keeping``: a parameter or module
        replaced by another of its kind keeps its place in parameters() and state_dict(), as
        in PyTorch (``layers[0] = ...`` stays first)."""
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not keeping:
                registry.pop(name, None)

    def __getattr__(self, name):  # only called when normal lookup fails
        for registry in ("_parameters", "_buffers", "_modules"):
            found = self.__dict__.get(registry, {})
            if name in found:
                return found[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, tensor, persistent=True):
        """Keep ``tensor`` with the module (saved, moved by ``to``) without training it. None
        reserves the name for a buffer set later; until then nothing is saved under it. A
        plain attribute of that name gives way to the buffer; a parameter's, a submodule's or
        the class's name is refused (PyTorch's KeyError), as is a name no attribute can have
        in a dotted state_dict key. With ``persistent=False`` the buffer (a value derived
        from the others, a cache) is left out of ``state_dict``, and ``load_state_dict``
        does not expect it, as in PyTorch; it is still moved and listed by ``buffers()``."""
        self._check_new_name("buffer", name, keeping=self._buffers)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"buffer {name!r} must be a Tensor or None, got "
                            f"{type(tensor).__name__}")
        if not is_bool(persistent):  # "false", read as text, is truthy
            raise TypeError(f"persistent must be a bool, got {persistent!r}")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def register_parameter(self, name, param):
        """``self.<name> = param`` for a name held in a string; None reserves the name for a
        weight set later (nothing is trained or saved under it until then), as in PyTorch.
        Names are checked as ``register_buffer`` checks them."""
        self._check_new_name("parameter", name, keeping=self._parameters)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot register {type(param).__name__} as parameter {name!r} "
                            f"(Parameter or None expected)")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def add_module(self, name, module):
        """``self.<name> = module`` for a name held in a string (how ``ModuleList`` and
        ``ModuleDict`` register their modules); a submodule of that name is replaced in its
        place, and None removes it. Names are checked as ``register_buffer`` checks them."""
        self._check_new_name("submodule", name, keeping=self._modules)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"cannot add {type(module).__name__} as submodule {name!r} "
                            f"(Module or None expected)")
        setattr(self, name, module)

    def _check_new_name(self, kind, name, keeping):
        """Refuse ``name`` for a new ``kind`` of member: a name no attribute can have in a
        dotted state_dict key, or one taken by a member of another kind than ``keeping``'s
        or by the class (a method, a property), which the new member would hide or lose to."""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{kind} name must be a non-empty str without '.', got {name!r}")
        taken = [taken_kind for taken_kind, registry in (("parameter", self._parameters),
                                                         ("buffer", self._buffers),
                                                         ("submodule", self._modules))
                 if registry is not keeping and name in registry]
        if hasattr(type(self), name):
            taken.append("class attribute")
        if name in _MODULE_STATE:  # "training" made a buffer that eval() did not reach
            taken.append("Module's own attribute")
        if taken:
            raise KeyError(f"cannot register {kind} {name!r}: {type(self).__name__} has a "
                           f"{taken[0]} of that name")

    # --- walking the tree ------------------------------------------------------------------
    def named_children(self):
        """The modules directly below this one, with their names; one registered under two
        names is listed once, under the first, as ``named_modules`` lists it (and PyTorch)."""
        seen = set()
        for name, module in self._modules.items():
            if id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        return (module for _, module in self.named_children())

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """This module and every module below it, depth first, with dotted names after
        ``prefix``, as PyTorch's. A module reached twice (shared by two parents) is listed
        once, under the first name, unless ``remove_duplicate`` is False; either way a module
        is not entered again below itself (a child that keeps its parent), where PyTorch's
        recursion never ends. The modules in ``memo``, a set, are left out with those below
        them, and with ``remove_duplicate`` those listed are added to it."""
        if memo is None:
            memo = set()
        elif not isinstance(memo, set):  # named_modules("net") meant a prefix
            raise TypeError(f"named_modules' memo must be a set of modules or None, got "
                            f"{type(memo).__name__} {memo!r}")
        _check_walk(prefix, remove_duplicate=remove_duplicate)
        return self._walk_modules(memo, prefix, remove_duplicate)

    def _walk_modules(self, memo, prefix, remove_duplicate):
        stack = [(prefix, self, frozenset())]
        while stack:
            name, module, above = stack.pop()
            if module in memo:
                continue
            if remove_duplicate:
                memo.add(module)
            yield name, module
            above = above | {id(module)}
            below = [(f"{name}.{child}" if name else child, sub, above)
                     for child, sub in module._modules.items() if id(sub) not in above]
            stack.extend(reversed(below))

    def modules(self):
        return (module for _, module in self.named_modules())

    def _listed(self, key, make):
        """``make()``, a list of the tree's members, kept under ``key`` and made again only
        after a registry somewhere has changed (``_registry_changes``)."""
        listed = self._listed_members.get(key)
        if listed is None or listed[0] != _registry_changes:
            listed = (_registry_changes, make())
            self._listed_members[key] = listed
        return listed[1]

    def _named_members(self, registry, prefix="", recurse=True, remove_duplicate=True):
        """An iterator over (dotted name, tensor) of ``registry``, module by module
        (``named_modules`` order), in the whole tree or with ``recurse=False`` in this module
        alone; a tensor reached twice (shared by two layers) is listed once, under the first
        name, unless ``remove_duplicate`` is False. The list of the default walk, which
        every training step asks for, is kept (``_listed``)."""
        _check_walk(prefix, recurse=recurse, remove_duplicate=remove_duplicate)
        if (prefix, recurse, remove_duplicate) == ("", True, True):
            return iter(self._listed(registry, lambda: self._list_members(registry)))
        return iter(self._list_members(registry, prefix, recurse, remove_duplicate))

    def _list_members(self, registry, prefix="", recurse=True, remove_duplicate=True):
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        members, seen = [], set()
        for module_name, module in modules:
            for name, tensor in getattr(module, registry).items():
                # None marks an emptied slot (``layer.bias = None``)
                if tensor is not None and id(tensor) not in seen:
                    if remove_duplicate:
                        seen.add(id(tensor))
                    members.append(((f"{module_name}.{name}" if module_name else name), tensor))
        return members

    # PyTorch's arguments: ``prefix`` before the names, ``recurse=False`` for this module's
    # own members only, ``remove_duplicate=False`` for a shared tensor under each name
    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        return (param for _, param in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        return (buffer for _, buffer in self.named_buffers(recurse=recurse))

    def apply(self, fn):
        """Call ``fn(module)`` once on every module, each after its children (so a custom init
        of a parent sees its children initialised), in PyTorch's order."""
        seen = set()
        stack = [(self, False)]
        while stack:
            module, children_done = stack.pop()
            if children_done:
                fn(module)
            elif id(module) not in seen:
                seen.add(id(module))
                stack.append((module, True))
                stack.extend((child, False) for child in reversed(list(module._modules.values())))
        return self

    # --- modes, devices, gradients ---------------------------------------------------------
    def train(self, mode=True):
        """Training mode (dropout active); ``eval()`` switches it off in the whole tree.
        ``mode`` must be a bool, as in PyTorch: ``train("false")`` (a flag read as text) would
        otherwise leave dropout on."""
        if not is_bool(mode):
            raise ValueError(f"training mode must be a bool, got {mode!r}")
        mode = bool(mode)
        object.__setattr__(self, "training", mode)
        # Below, a module whose class has its own ``train`` is switched by it, its subtree
        # with it, as PyTorch's recursive train() does: a frozen encoder that stays in eval
        # mode whatever its parent asks was switched back to training. The walk is iterative
        # and enters a module once, nor one whose walk, further up, called this one (a module
        # that holds its parent would not end, and the calls of two with their own train that
        # hold each other neither).
        under_way = _train_walks.__dict__.setdefault("ids", set())
        seen, stack = {id(self), *under_way}, list(reversed(self._modules.values()))
        under_way.add(id(self))
        try:
            while stack:
                module = stack.pop()
                if module is None or id(module) in seen:
                    continue
                seen.add(id(module))
                if type(module).train is not Module.train:
                    module.train(mode)
                    continue
                object.__setattr__(module, "training", mode)
                stack.extend(reversed(module._modules.values()))
        finally:
            under_way.discard(id(self))
        return self

    def eval(self):
        return self.train(False)

    def to(self, device=None, dtype=None):
        """Move every parameter and buffer to ``device`` and/or cast the floating-point ones
        to the floating-point ``dtype``, in place (as for a tensor, a dtype alone may come
        first, ``model.to(float64)``, and a tensor stands for its device and dtype); returns
        ``self``. As in PyTorch, integer and boolean buffers (counts, indices, masks) keep
        their dtype.

        The Parameter objects stay the same, only their arrays change; an optimizer's state
        and an ``EMA``'s averages made before the move follow their parameters at their next
        step or update (as PyTorch casts loaded state to each parameter's device and dtype).
        """
        device, dtype = device_and_dtype(device, dtype)
        if device is not None:
            backend.check_device(device)
        if dtype is not None and numpy.dtype(dtype).kind != "f":
            raise TypeError(f"Module.to casts the floating-point parameters and buffers, so "
                            f"dtype must be a floating-point type, got {dtype!r}")
        for tensor in list(self.parameters()) + list(self.buffers()):
            tensor.data = _moved(tensor.data, device, dtype)
            if tensor.grad is not None:
                tensor.grad.data = _moved(tensor.grad.data, device, dtype)
        return self

    def requires_grad_(self, requires_grad=True):
        """Whether autograd records gradients for every parameter (``False`` freezes the
        module: an optimizer then skips its weights, which get no gradient); returns ``self``."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Forget accumulated gradients: ``zero_grads`` of every parameter."""
        zero_grads(self.parameters(), set_to_none)

    # --- saving and loading ----------------------------------------------------------------
    def _named_state(self):
        """(dotted name, tensor) of every parameter and persistent buffer, in PyTorch's
        ``state_dict`` order: module by module, each module's parameters before its buffers
        (a script that pairs the entries of two state dicts by position meets them in the
        same order).

        Unlike ``named_parameters``, a tensor or module shared by two names is listed under
        each, as in PyTorch's ``state_dict``: with tied weights (``out.weight =
        emb.weight``) PyTorch's state has both keys, and the two libraries' states then failed
        to load into each other (an unexpected or a missing key)."""
        return OrderedDict(self._listed("state", self._list_state))

    def _list_state(self):
        """``_named_state``'s list: each module's own parameters and persistent buffers, under
        every name the module has (``named_modules`` without removing duplicates, which
        enters no module below itself)."""
        members = []
        for module_name, module in self.named_modules(remove_duplicate=False):
            prefix = f"{module_name}." if module_name else ""
            saved = [*module._parameters.items(),
                     *((name, buffer) for name, buffer in module._buffers.items()
                       if name not in module._non_persistent_buffers)]
            members.extend((prefix + name, tensor) for name, tensor in saved
                           if tensor is not None)  # None: an emptied slot
        return members

    def state_dict(self, *, prefix="", keep_vars=False):
        """Name -> tensor for every parameter and persistent buffer, each name after ``prefix``
        (PyTorch's arguments). The tensors are detached and share the arrays, like PyTorch's;
        with ``keep_vars`` they are the Parameters and buffers themselves (which
        ``load_state_dict`` reads as well). Keyword-only: PyTorch's first positional argument
        is the old ``destination``, so ``state_dict("net.")`` is refused, not read as a prefix."""
        _check_walk(prefix, keep_vars=keep_vars)
        return OrderedDict((prefix + name, tensor if keep_vars else tensor.detach())
                           for name, tensor in self._named_state().items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into this module's parameters and persistent buffers
        in place (a non-persistent buffer's key is unexpected, as in PyTorch).

        A key whose shape differs is always an error naming the key and both shapes, raised
        before anything is copied (the module is left as it was). With
        ``strict`` (the default) missing and unexpected keys are errors too; otherwise they
        are returned as ``IncompatibleKeys(missing_keys, unexpected_keys)``, PyTorch's pair.
        These errors are ``StateDictError``s: ValueErrors, and RuntimeErrors as PyTorch's.
        """
        # a module or a list of arrays given in its place failed in NumPy's words (PyTorch's
        # TypeError: "Expected state_dict to be dict-like")
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict takes a mapping of names to arrays (a "
                            f"state_dict()), got {type(state_dict).__name__}")
        own = self._named_state()
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own]
        if strict and missing:
            raise StateDictError(f"load_state_dict: missing key(s) {_first_few(missing)} for "
                                 f"{type(self).__name__}")
        if strict and unexpected:
            raise StateDictError(f"load_state_dict: unexpected key(s) "
                                 f"{_first_few(unexpected)} for {type(self).__name__}")
        copy_all_into((tensor.data, state_dict[name], name) for name, tensor in own.items()
                      if name in state_dict)
        writes.wrote(tensor for name, tensor in own.items() if name in state_dict)
        return IncompatibleKeys(missing, unexpected)

    # --- printing --------------------------------------------------------------------------
    def extra_repr(self):
        """The constructor arguments shown by ``repr`` (layers override this)."""
        return ""

    def __repr__(self):
        """PyTorch's layout: ``Name(extra)`` for a one-line ``extra_repr`` and no children,
        else each line of ``extra_repr`` and each child on its own indented line (a module
        with both printed its settings on the first line and its first child below them,
        and the second line of a two-line ``extra_repr`` unindented)."""
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + repr(module).replace("\n", "\n  ")
                       for name, module in self._modules.items()]
        if len(extra_lines) == 1 and not child_lines:
            return f"{type(self).__name__}({extra_lines[0]})"
        if not extra_lines and not child_lines:
            return f"{type(self).__name__}()"
        return (f"{type(self).__name__}(\n  " + "\n  ".join(extra_lines + child_lines)
                + "\n)")


# what a load returns, as PyTorch's: a pair that also names its two lists, so that both
# ``missing, unexpected = model.load_state_dict(...)`` and ``.missing_keys`` work
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def zero_grads(params, set_to_none=True):
    """Forget the gradients of ``params``: ``grad = None`` (PyTorch's default), or with
    ``set_to_none=False`` the gradient there was filled with zeros in place, as PyTorch does
    (a reference held to it sees the zeros; the next backward adds to it; an optimizer then
    still steps such a parameter, with its momentum and decay)."""
    for param in params:
        if set_to_none or param.grad is None:
            param.grad = None
        else:
            param.grad.data[...] = 0


def _check_walk(prefix, **flags):
    """The arguments of a walk over the tree (``named_modules``, ``named_parameters``, ...):
    ``prefix`` a str, each of ``flags`` a bool (a flag read as text, "false", is truthy)."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__} {prefix!r}")
    for name, flag in flags.items():
        if not is_bool(flag):
            raise TypeError(f"{name} must be a bool, got {flag!r}")


def _moved(array, device, dtype):
    array = backend.to_device(array, device) if device is not None else array
    if dtype is None or array.dtype.kind != "f":  # integers and booleans are no weights
        return array
    return array.astype(dtype, copy=False)


def _first_few(keys, shown=5):
    """``keys`` for an error message: all of them, or the first few and how many more (a state
    of another model would otherwise list its every key)."""
    if len(keys) <= shown:
        return str(keys)
    return f"{keys[:shown]} and {len(keys) - shown} more"


def _fitting(target, value, name):
    """``value``'s array, which must have ``target``'s shape (the error names ``name`` and
    both shapes) and hold numbers. Host data of another library (a PyTorch tensor) is read
    here, before the first copy: one that cannot be read (a PyTorch parameter that requires
    grad, a bfloat16 tensor) or text failed in the middle of the copies, the weights before it
    already overwritten."""
    value = value.data if isinstance(value, Tensor) else value
    if not hasattr(value, "shape"):  # a list or a number: no shape to check, and none to copy
        raise TypeError(f"{name!r}: a {type(value).__name__} in the loaded state; expected a "
                        f"Tensor or an array of shape {tuple(target.shape)}")
    if not isinstance(value, numpy.ndarray) and backend.device_of(value) == "cpu":
        try:
            value = numpy.asarray(value)  # no copy where the memory can be shared
        except Exception as error:  # each library fails in its own type
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TypeError(f"{name!r}: the {type(value).__name__} in the loaded state cannot "
                            f"be read as an array ({reason})") from None
    if value.dtype.kind not in "biuf":  # text, objects or complex numbers: no weights
        raise TypeError(f"{name!r}: dtype {value.dtype} in the loaded state; expected a "
                        f"real or integer array")
    if tuple(value.shape) != tuple(target.shape):
        raise StateDictError(f"{name!r}: shape {tuple(value.shape)} in the loaded state "
                             f"but {tuple(target.shape)} here")
    return value


def copy_all_into(pairs):
    """Copy each ``value`` (a Tensor, NumPy or CuPy array, or another library's CPU tensor)
    of the (target, value, name) ``pairs`` into the array ``target`` in place, on its device
    and dtype, every value read and its shape and dtype checked before the first copy: a
    loaded state that does not fit leaves all the targets as they were (a mismatch names
    ``name`` and both shapes)."""
    checked = [(target, _fitting(target, value, name)) for target, value, name in pairs]
    for target, value in checked:
        _assign(target, value)


def _assign(target, array):
    """``array`` (of ``target``'s shape, on any device) written into ``target`` in place."""
    device = backend.device_of(target)
    target[...] = backend.xp_for(device).asarray(backend.to_device(array, device),
                                                 dtype=target.dtype)
