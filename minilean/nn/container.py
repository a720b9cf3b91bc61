"""Sequential (call modules in order) and ModuleList (hold modules, you call them)."""
from minilean.nn.module import Module


class ModuleList(Module):
    """A list of modules whose parameters the parent sees (a plain list would hide them)."""

    def __init__(self, modules=None):  # None: empty, as PyTorch's ModuleList(None)
        super().__init__()
        self.extend(() if modules is None else modules)

    def append(self, module):
        self._check_module(module)
        setattr(self, str(len(self)), module)
        return self

    def _check_module(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__} holds Modules, got {type(module).__name__}")

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return self._modules[self._key(index)]

    def __setitem__(self, index, module):
        """``layers[i] = module``: the i-th module replaced, its parameters with it."""
        self._check_module(module)
        setattr(self, self._key(index), module)

    def _key(self, index):
        """The name the module at ``index`` is registered under (its position when added)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {type(self).__name__} "
                             f"of length {len(self)}")
        return list(self._modules)[index]


class Sequential(ModuleList):
    """``Sequential(a, b, c)(x) == c(b(a(x)))``."""

    def __init__(self, *modules):
        super().__init__(modules)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*list(self._modules.values())[index])
        return super().__getitem__(index)

    def forward(self, input):
        for module in self:
            input = module(input)
        return input
