"""Sequential (call modules in order), ModuleList (hold modules, you call them) and ModuleDict
(the same, by name)."""
import operator
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from minilean.nn.module import Module


def _check_module(container, module):
    if not isinstance(module, Module):
        raise TypeError(f"{type(container).__name__} holds Modules, got {type(module).__name__}")


def _slice_of(container, named_modules, given):
    """A container of ``container``'s own class holding ``named_modules`` (name, module), a
    slice of it, built as PyTorch builds it: ``type(container)(given)``, ``given`` the modules
    as the class's ``__init__`` takes them. A subclass's slice was a plain Sequential or
    ModuleList, which left out the subclass's own ``forward``; a subclass whose ``__init__``
    takes other arguments fails there in PyTorch's words from deep inside (or builds other
    layers), here in one line."""
    kind = type(container).__name__
    try:
        sliced = type(container)(given)
    except Exception as error:
        raise TypeError(f"a slice of {kind} is built as {kind}({type(given).__name__} of its "
                        f"modules), as in PyTorch, which {kind}.__init__ does not take "
                        f"({type(error).__name__}: {error})") from error
    if [(name, id(module)) for name, module in sliced._modules.items()] != \
            [(name, id(module)) for name, module in named_modules]:
        raise TypeError(f"a slice of {kind} is built as {kind}({type(given).__name__} of its "
                        f"modules), as in PyTorch, and {kind}.__init__ made other modules of "
                        f"them")
    return sliced


class ModuleList(Module):
    """A list of modules whose parameters the parent sees (a plain list would hide them)."""

    def __init__(self, modules=None):  # None: empty, as PyTorch's ModuleList(None)
        super().__init__()
        self.extend(() if modules is None else modules)

    def append(self, module):
        """``module`` added last, under the name of its position. A slice of a Sequential
        keeps its layers' names ("1", "2", "3" for ``model[1:]``), where that name may be
        taken: PyTorch's then replaces the layer of that name, here the next free number is
        taken."""
        _check_module(self, module)
        position = len(self)
        while str(position) in self._modules:
            position += 1
        self.add_module(str(position), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def __iadd__(self, modules):
        return self.extend(modules)

    def insert(self, index, module):
        """``module`` placed before the one at ``index``, the modules from there on moved up
        one name. As ``list.insert``, a negative index counts from the end (PyTorch's takes
        0 to ``len`` only); one beyond either end is refused (a list would clamp it)."""
        _check_module(self, module)
        index = self._position(index, expected="an integer")
        if not -len(self) <= index <= len(self):
            raise IndexError(f"index {index} is out of range for inserting into "
                             f"{type(self).__name__} of length {len(self)}")
        modules = list(self)
        modules.insert(index, module)
        self._register_in_order(modules)

    def __delitem__(self, index):
        """``del layers[i]`` or ``del layers[i:j]``: those modules dropped, their parameters
        with them, and the rest renamed by their new positions, as in PyTorch (so the
        state_dict keys stay "0." to "n-1.")."""
        dropped = (list(self._modules)[index] if isinstance(index, slice)
                   else [self._key(index, expected="an integer or a slice")])
        self._register_in_order([module for name, module in self._modules.items()
                                 if name not in dropped])

    def pop(self, index):
        """The module (or, for a slice, the container of modules) at ``index``, removed as
        ``del layers[index]`` removes it. ``index`` is required, as in PyTorch."""
        popped = self[index]
        del self[index]
        return popped

    def _register_in_order(self, modules):
        """Hold ``modules``, in that order, under their positions "0", "1", ..."""
        for name in list(self._modules):
            delattr(self, name)
        for position, module in enumerate(modules):
            self.add_module(str(position), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, slice):  # named from "0", as PyTorch's
            modules = list(self._modules.values())[index]
            return _slice_of(self, [(str(position), module)
                                    for position, module in enumerate(modules)], modules)
        return self._modules[self._key(index, expected="an integer or a slice")]

    def __setitem__(self, index, module):
        """``layers[i] = module``: the i-th module replaced, its parameters with it."""
        _check_module(self, module)
        self.add_module(self._key(index), module)

    def _position(self, index, expected):
        """``index`` as a Python int (an int of NumPy's, a one-element integer tensor), as a
        list takes it: a float was said to be out of range, and text failed in a comparison's
        words."""
        try:
            return operator.index(index)
        except TypeError:
            raise TypeError(f"{type(self).__name__} index must be {expected}, got "
                            f"{type(index).__name__} {index!r}") from None

    def _key(self, index, expected="an integer"):
        """The name the module at ``index`` is registered under (its position when added)."""
        index = self._position(index, expected)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {type(self).__name__} "
                             f"of length {len(self)}")
        return list(self._modules)[index]


class ModuleDict(Module):
    """A mapping of names to modules whose parameters the parent sees, in the order the names
    were first set, as PyTorch's. Keys are checked as attribute names (``add_module``): a
    name with a '.', or that of a method (``"train"``, ``"keys"``), is refused."""

    def __init__(self, modules=None):  # a mapping, or (name, module) pairs
        super().__init__()
        self.update({} if modules is None else modules)

    def update(self, modules):
        """Set each (name, module) of ``modules``: a mapping, another ModuleDict (a Module,
        not a Mapping: iterated, it gives only its names) or an iterable of pairs, each any
        iterable of two items (a deque, a row of an object array), as PyTorch takes them. As
        there, an item that is no pair at all is a TypeError, a pair of another length a
        ValueError; a str, though iterable, is a TypeError (PyTorch's took "ab" for a name
        "a" and a "module" "b")."""
        if isinstance(modules, (Mapping, ModuleDict)):
            modules = modules.items()
        elif not isinstance(modules, Iterable):
            raise TypeError(f"ModuleDict.update takes a mapping or (name, module) pairs, got "
                            f"{type(modules).__name__}")
        for position, pair in enumerate(modules):
            if isinstance(pair, str) or not isinstance(pair, Iterable):
                raise TypeError(f"ModuleDict.update takes (name, module) pairs, got {pair!r} "
                                f"at position {position}")
            items = tuple(pair)
            if len(items) != 2:
                raise ValueError(f"ModuleDict.update takes (name, module) pairs, got {pair!r} "
                                 f"of {len(items)} items at position {position}")
            self[items[0]] = items[1]

    def __getitem__(self, name):
        return self._modules[name]

    def __setitem__(self, name, module):
        _check_module(self, module)
        self.add_module(name, module)

    def __delitem__(self, name):
        if name not in self._modules:  # not a plain attribute of the same name
            raise KeyError(name)
        delattr(self, name)

    def pop(self, name):
        """The module under ``name``, removed (a KeyError if there is none: no default, as in
        PyTorch)."""
        module = self[name]
        del self[name]
        return module

    def clear(self):
        """Remove every module, and their parameters with them."""
        for name in list(self._modules):
            del self[name]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, name):
        return name in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()


class Sequential(ModuleList):
    """``Sequential(a, b, c)(x) == c(b(a(x)))``. ``Sequential(OrderedDict([("conv", a),
    ("act", b)]))`` names the layers (state_dict keys "conv.weight", ...), as PyTorch's; a
    layer is still reached by its position, ``model[0]``."""

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            super().__init__()
            for name, module in modules[0].items():
                _check_module(self, module)
                self.add_module(name, module)
        else:
            super().__init__(modules)

    def __getitem__(self, index):
        """A layer, or for a slice a Sequential of those layers under their names here, as
        PyTorch's (``model[1:].state_dict()`` has the keys "1.weight", ... that the model's
        has for them). A ModuleList's slice, as PyTorch's, names them from "0". The slice of
        a subclass is of that subclass, made by ``type(model)(OrderedDict(...))`` as in
        PyTorch: a subclass whose ``__init__`` takes other arguments cannot be sliced (a
        one-line TypeError; ``nn.Sequential(*model)[1:]`` gives a plain Sequential)."""
        if isinstance(index, slice):
            named_modules = list(self._modules.items())[index]
            return _slice_of(self, named_modules, OrderedDict(named_modules))
        return super().__getitem__(index)

    def forward(self, input):
        for module in self:
            input = module(input)
        return input
