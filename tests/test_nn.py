"""Module, Parameter and the layers: registration, state dicts, modes, init, and each layer's
forward against PyTorch (float64, weights copied across) when torch is installed."""
import itertools
import math
import re

import numpy
import pytest

import minilean as ml
from minilean import nn
from minilean.autograd import gradcheck


def _double(module):
    return module.to(dtype=numpy.float64)


def _copy_from_torch(ours, theirs):
    """Load a torch module's weights into ours (same names and shapes by design)."""
    ours.load_state_dict({name: value.detach().numpy() for name, value in theirs.state_dict().items()})
    return ours


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.SiLU())
        self.head = nn.Linear(4, 2, bias=False)
        self.register_buffer("scale", ml.ones(2))

    def forward(self, x):
        return self.head(self.body(x)) * self.scale


# --- Module mechanics -----------------------------------------------------------------------

def test_registration_finds_nested_parameters_and_buffers():
    block = Block()
    assert [name for name, _ in block.named_parameters()] == [
        "body.0.weight", "body.0.bias", "head.weight"]
    assert [name for name, _ in block.named_buffers()] == ["scale"]
    # PyTorch's order: the root's own buffer before the weights of its children
    assert list(block.state_dict()) == ["scale", "body.0.weight", "body.0.bias", "head.weight"]
    assert [name for name, _ in block.named_modules()] == ["", "body", "body.0", "body.1", "head"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in block.parameters())


def test_state_dict_orders_its_keys_module_by_module_as_torch():
    """state_dict listed every parameter of the tree before any buffer; PyTorch's goes module
    by module, a module's parameters then its buffers then its children's, so a script that
    pairs a PyTorch state dict with ours entry by entry (to port weights) put a buffer's
    values into a weight of the same shape without a word."""
    torch = pytest.importorskip("torch")

    def build(library):
        class Scaled(library.nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("scale", library.ones(3))
                self.linear = library.nn.Linear(3, 3)
                self.register_buffer("shift", library.zeros(3))

        model = library.nn.Sequential(Scaled(), library.nn.Linear(3, 3), Scaled())
        model[1].register_buffer("mask", library.ones(3, 3))
        return model

    ours, theirs = build(ml), build(torch)
    expected = list(theirs.state_dict())
    assert expected[:5] == ["0.scale", "0.shift", "0.linear.weight", "0.linear.bias",
                            "1.weight"]
    assert list(ours.state_dict()) == expected
    # loading reports the keys it lacks in that order too
    missing, unexpected = ours.load_state_dict({}, strict=False)
    assert missing == expected and unexpected == []
    # the parameters and buffers alone keep their own order
    assert [name for name, _ in ours.named_parameters()] == \
        [name for name, _ in theirs.named_parameters()]
    assert [name for name, _ in ours.named_buffers()] == \
        [name for name, _ in theirs.named_buffers()]


def test_reassigning_an_attribute_replaces_the_registration():
    layer = nn.Linear(2, 2)
    layer.bias = None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    layer.weight = nn.Parameter(ml.zeros(2, 2))
    assert layer.weight.numpy().sum() == 0


def test_the_listed_members_follow_every_change_below_the_module():
    # the tree's parameter and buffer lists are remembered between calls: each change deep
    # in the tree must show in the root's next list
    block = Block()

    def names(members):
        return [name for name, _ in members]

    assert names(block.named_parameters()) == ["body.0.weight", "body.0.bias", "head.weight"]
    assert names(block.named_buffers()) == ["scale"]
    block.body[0].bias = None
    assert names(block.named_parameters()) == ["body.0.weight", "head.weight"]
    new_weight = nn.Parameter(ml.zeros(2, 4))
    block.head.weight = new_weight
    assert list(block.parameters())[-1] is new_weight
    block.body.append(nn.Linear(4, 4))
    assert names(block.named_parameters()) == ["body.0.weight", "body.2.weight", "body.2.bias",
                                               "head.weight"]
    del block.head
    assert names(block.named_parameters()) == ["body.0.weight", "body.2.weight", "body.2.bias"]
    assert names(block.named_buffers()) == ["scale"]
    block.body[2].register_buffer("count", ml.zeros(1))
    assert names(block.named_buffers()) == ["scale", "body.2.count"]
    counted = ml.ones(1)
    block.body[2].count = counted
    assert list(block.buffers())[-1] is counted
    assert len(list(block.parameters())) == 3
    block.body = None
    assert names(block.named_parameters()) == []


def test_the_listed_members_follow_direct_writes_to_the_registries_as_torchs():
    """PyTorch code writes a module's registries directly (``del module._parameters[name]``,
    ``module._modules[name] = converted``); the kept lists of the tree's members missed such
    a write, so ``parameters()`` and ``state_dict()`` still gave a deleted bias and not a new
    weight (silently untrained and unsaved)."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        model = library.nn.Sequential(library.nn.Linear(2, 2), library.nn.Tanh())
        head, extra = library.nn.Linear(2, 1), library.nn.Parameter(library.ones(1))
        changes = [lambda: model[0]._parameters.pop("bias"),
                   lambda: model[0]._parameters.__setitem__("extra", extra),
                   lambda: model[0]._parameters.update(scale=extra),
                   lambda: model._modules.__setitem__("1", head),
                   lambda: model[0]._buffers.setdefault("count", library.zeros(1)),
                   lambda: model[0]._parameters.__delitem__("extra"),
                   lambda: model._modules.popitem(),
                   lambda: model[0]._buffers.clear()]
        states = []
        for change in changes:
            list(model.parameters()), list(model.buffers())  # listed, then written directly
            change()
            states.append((list(model.state_dict()), [name for name, _ in
                                                      model.named_parameters()]))
        seen[library.__name__] = states
    assert seen["minilean"] == seen["torch"]
    assert seen["torch"][3] == (["0.weight", "0.extra", "0.scale", "1.weight", "1.bias"],
                                ["0.weight", "0.extra", "1.weight", "1.bias"])
    # an OrderedDict's own reordering (PyTorch's registries are plain dicts, without it)
    model = nn.Sequential(nn.Linear(2, 2))
    list(model.parameters()), list(model.state_dict())  # listed, then reordered
    model[0]._parameters.move_to_end("weight")
    assert [name for name, _ in model.named_parameters()] == ["0.bias", "0.weight"]
    assert list(model.state_dict()) == ["0.bias", "0.weight"]


def test_assigning_a_tensor_to_a_buffer_name_updates_the_buffer():
    class Running(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("running", ml.zeros(2))

    module = Running()
    module.running = ml.ones(2)
    assert list(module.state_dict()) == ["running"]
    numpy.testing.assert_array_equal(module.state_dict()["running"].numpy(), [1.0, 1.0])
    module.to(dtype=numpy.float64)
    assert module.running.dtype == numpy.float64  # the new tensor is the one that moves
    module.running = None  # as in PyTorch: the slot stays a buffer, holding nothing for now
    assert module.running is None and list(module.state_dict()) == []
    module.running = ml.ones(3)
    assert list(module.state_dict()) == ["running"]
    with pytest.raises(TypeError, match="cannot assign int as buffer 'running' "
                                        "\\(Tensor or None expected\\)"):
        module.running = 3
    assert list(module.state_dict()) == ["running"]


def test_assigning_a_plain_tensor_over_a_parameter_is_a_type_error():
    layer = nn.Linear(2, 2)
    weight = layer.weight
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'weight' "
                                        "\\(Parameter or None expected\\)"):
        layer.weight = ml.zeros(2, 2)
    with pytest.raises(TypeError, match="cannot assign Linear as parameter 'bias'"):
        layer.bias = nn.Linear(1, 1)
    assert layer.weight is weight
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.bias = None  # no bias, as layers built with bias=False
    assert layer.bias is None and list(layer.state_dict()) == ["weight"]
    with pytest.raises(TypeError, match="as parameter 'bias'"):
        layer.bias = ml.zeros(2)  # an emptied slot still takes only a Parameter
    layer.bias = nn.Parameter(ml.zeros(2))
    assert list(layer.state_dict()) == ["weight", "bias"]


def test_assigning_a_non_module_over_a_submodule_is_a_type_error():
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="cannot assign Tensor as child module '0' "
                                        "\\(Module or None expected\\)"):
        setattr(model, "0", ml.zeros(2))
    assert list(model.state_dict()) == ["0.weight", "0.bias"]
    setattr(model, "0", None)  # None empties the slot: no weights under it any more
    assert getattr(model, "0") is None and list(model.state_dict()) == []


def test_a_buffer_registered_as_none_is_saved_once_set():
    module = nn.Module()
    module.register_buffer("running", None)
    assert module.running is None and list(module.state_dict()) == []
    module.running = ml.ones(2)  # the name stays a buffer's
    assert list(module.state_dict()) == ["running"]
    with pytest.raises(TypeError, match="buffer 'mask' must be a Tensor or None, got list"):
        module.register_buffer("mask", [1, 0])


def test_a_buffer_registered_over_a_plain_attribute_replaces_it():
    module = nn.Module()
    module.mean = None  # a plain attribute first
    module.register_buffer("mean", ml.zeros(3))
    assert isinstance(module.mean, ml.Tensor) and list(module.state_dict()) == ["mean"]


def test_a_non_persistent_buffer_is_kept_and_moved_but_not_saved_as_torchs():
    """register_buffer(name, tensor, persistent=False), PyTorch's: left out of state_dict and
    not expected by load_state_dict, but listed by buffers() and moved by to() (there was no
    persistent argument)."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        model = library.nn.Sequential(library.nn.Linear(2, 2))
        model[0].register_buffer("cache", library.zeros(2), persistent=False)
        model.register_buffer("count", library.zeros(1))
        model[0].cache = library.ones(2)  # a new value keeps the buffer non-persistent
        state = model.state_dict()
        loaded = model.load_state_dict(state)
        unexpected = model.load_state_dict({**state, "0.cache": library.ones(2)}, strict=False)
        model.double()
        listed = [(name, str(buffer.dtype)) for name, buffer in model.named_buffers()]
        model[0].register_buffer("cache", library.zeros(2))  # registered again: persistent
        seen[library.__name__] = (list(state), tuple(loaded), tuple(unexpected), listed,
                                  list(model.state_dict()))
    assert seen["minilean"][:3] + seen["minilean"][4:] == seen["torch"][:3] + seen["torch"][4:]
    assert seen["minilean"][3] == [(name, dtype.replace("torch.", ""))
                                   for name, dtype in seen["torch"][3]]
    assert seen["torch"] == (
        ["count", "0.weight", "0.bias"], ([], []), ([], ["0.cache"]),
        [("count", "torch.float64"), ("0.cache", "torch.float64")],
        ["count", "0.weight", "0.bias", "0.cache"])
    model = nn.Sequential(nn.Linear(2, 2))
    model[0].register_buffer("cache", ml.zeros(2), persistent=False)
    with pytest.raises(ValueError, match=re.escape("unexpected key(s) ['0.cache']")):
        model.load_state_dict({**model.state_dict(), "0.cache": ml.ones(2)})
    with pytest.raises(TypeError, match="^persistent must be a bool, got 'false'$"):
        nn.Module().register_buffer("cache", ml.zeros(2), persistent="false")


def test_a_buffer_cannot_take_a_parameters_a_submodules_or_a_methods_name():
    """register_buffer("weight") on a Linear left both registered: the Parameter was trained
    and used, while state_dict saved and loaded the buffer in its place."""
    layer, model = nn.Linear(2, 2), nn.Sequential(nn.Linear(1, 1))
    for module, name, kind in ((layer, "weight", "parameter"), (model, "0", "submodule"),
                               (layer, "forward", "class attribute")):
        with pytest.raises(KeyError, match=re.escape(
                f"cannot register buffer {name!r}: {type(module).__name__} has a {kind} of "
                f"that name")):
            module.register_buffer(name, ml.zeros(3))
    for name in ("", "a.b", None):
        with pytest.raises(KeyError, match=re.escape(
                f"buffer name must be a non-empty str without '.', got {name!r}")):
            layer.register_buffer(name, ml.zeros(3))
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert list(model.state_dict()) == ["0.weight", "0.bias"]


@pytest.mark.parametrize("name", ["training", "_parameters", "_modules"])
def test_no_member_takes_the_name_of_an_attribute_every_module_has(name):
    """As PyTorch's KeyError: register_buffer("training") took the training flag's place, so
    that state_dict saved it and eval() set a flag no layer read; "_parameters" lost them all."""
    for register, kind, member in ((nn.Module.register_buffer, "buffer", ml.ones(1)),
                                   (nn.Module.register_parameter, "parameter", None),
                                   (nn.Module.add_module, "submodule", nn.ReLU())):
        layer = nn.Linear(2, 2)
        with pytest.raises(KeyError, match=re.escape(
                f"cannot register {kind} {name!r}: Linear has a Module's own attribute of "
                f"that name")):
            register(layer, name, member)
        assert list(layer.state_dict()) == ["weight", "bias"] and layer.eval().training is False


def test_register_parameter_and_add_module_register_by_name_as_torch():
    """PyTorch's ways of registering a member whose name is held in a string, None included
    (a weight or a submodule left out), with their names checked as register_buffer's."""
    torch = pytest.importorskip("torch")
    for library in (ml, torch):
        module = library.nn.Module()
        module.register_parameter("scale", library.nn.Parameter(library.ones(2)))
        module.register_parameter("shift", None)
        module.add_module("head", library.nn.Linear(2, 1))
        module.add_module("tail", None)
        assert module.shift is None and module.tail is None
        module.register_parameter("scale", library.nn.Parameter(library.zeros(2)))  # in place
        assert [name for name, _ in module.named_parameters()] == [
            "scale", "head.weight", "head.bias"]
        assert list(module.state_dict()) == ["scale", "head.weight", "head.bias"]
        assert [name for name, _ in module.named_children()] == ["head"]
        assert module.scale.sum().item() == 0
    module = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"^cannot register Tensor as parameter 'p' \(Parameter "
                                        r"or None expected\)$"):
        module.register_parameter("p", ml.ones(1))
    with pytest.raises(TypeError, match=r"^cannot add int as submodule 'm' \(Module or None "
                                        r"expected\)$"):
        module.add_module("m", 3)
    for register, kind, name, taken in (
            (module.register_parameter, "parameter", "forward", "class attribute"),
            (module.add_module, "submodule", "weight", "parameter")):
        with pytest.raises(KeyError, match=re.escape(
                f"cannot register {kind} {name!r}: Linear has a {taken} of that name")):
            register(name, None)
        with pytest.raises(KeyError, match=re.escape(
                f"{kind} name must be a non-empty str without '.', got 'a.b'")):
            register("a.b", None)
    assert list(module.state_dict()) == ["weight", "bias"]


def test_requires_grad_freezes_and_unfreezes_every_parameter_as_torch():
    torch = pytest.importorskip("torch")
    for library in (ml, torch):
        model = library.nn.Sequential(library.nn.Linear(2, 3), library.nn.Linear(3, 1))
        assert model.requires_grad_(False) is model
        assert not any(param.requires_grad for param in model.parameters())
        assert not model(library.ones(1, 2)).requires_grad
        model[1].requires_grad_()
        assert [param.requires_grad for param in model.parameters()] == [
            False, False, True, True]
        model(library.ones(1, 2)).sum().backward()
        assert model[0].weight.grad is None and model[1].weight.grad is not None


def test_a_module_unpickled_in_another_process_lists_its_members_anew(monkeypatch):
    """The list of a module's parameters is kept while this process's count of registry
    changes holds still; unpickled where that count is another, a stale list came back once
    the count reached the saved one (here set back to it: another process's count)."""
    import pickle

    from minilean.nn import module as module_file
    layer = nn.Linear(2, 2)
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    count_when_listed = module_file._registry_changes
    restored = pickle.loads(pickle.dumps(layer))
    restored.bias = None
    monkeypatch.setattr(module_file, "_registry_changes", count_when_listed)
    assert [name for name, _ in restored.named_parameters()] == ["weight"]
    assert list(restored.state_dict()) == ["weight"]


class _SharedTwice(nn.Module):
    """A submodule reached through two attributes and again inside a Sequential."""

    def __init__(self):
        super().__init__()
        shared = nn.Linear(2, 2)
        self.first = nn.Sequential(nn.Linear(2, 2), shared)
        self.again = shared
        self.second = nn.Sequential(shared, nn.Linear(2, 2))


def test_shared_submodule_is_listed_and_applied_once():
    model = _SharedTwice()
    assert [name for name, _ in model.named_modules()] == [
        "", "first", "first.0", "first.1", "second", "second.1"]
    assert len(list(model.modules())) == len({id(module) for module in model.modules()}) == 6
    names = {id(module): name for name, module in model.named_modules()}
    visited = []
    assert model.apply(lambda module: visited.append(names[id(module)])) is model
    # each module once, every module after its children
    assert visited == ["first.0", "first.1", "first", "second.1", "second", ""]
    assert [name for name, _ in model.named_parameters()] == [
        "first.0.weight", "first.0.bias", "first.1.weight", "first.1.bias",
        "second.1.weight", "second.1.bias"]


def test_a_child_registered_under_two_names_is_one_child_as_torch():
    """children() listed a module shared by two attributes twice, while modules() and
    PyTorch's children() list it once: ``list(model.children())[:-1]`` (a network without
    its head) then kept another set of layers than in PyTorch."""
    torch = pytest.importorskip("torch")
    for library in (ml, torch):
        model = library.nn.Module()
        act = library.nn.ReLU()
        model.first, model.act, model.again, model.head = (library.nn.Linear(2, 2), act, act,
                                                           library.nn.Linear(2, 1))
        assert [name for name, _ in model.named_children()] == ["first", "act", "head"]
        assert [type(child).__name__ for child in model.children()] == \
            ["Linear", "ReLU", "Linear"]
        assert list(model.children())[:-1] == [model.first, act]


def test_named_modules_takes_pytorchs_memo_prefix_and_remove_duplicate():
    """named_modules(memo, prefix, remove_duplicate), PyTorch's arguments: prefix was
    keyword-only and the other two did not exist."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        shared = library.nn.Linear(2, 2)
        model = library.nn.Module()
        model.first = library.nn.Sequential(library.nn.Linear(2, 2), shared)
        model.again = shared
        model.last = library.nn.Tanh()
        memo = {model.last}
        seen[library.__name__] = (
            [name for name, _ in model.named_modules()],
            [name for name, _ in model.named_modules(remove_duplicate=False)],
            [name for name, _ in model.named_modules(memo, "net")],
            len(memo), shared in memo,
            [name for name, _ in model.named_modules(set(), "net", False)])
    assert seen["minilean"] == seen["torch"] == (
        ["", "first", "first.0", "first.1", "last"],
        ["", "first", "first.0", "first.1", "again", "last"],
        ["net", "net.first", "net.first.0", "net.first.1"], 5, True,
        ["net", "net.first", "net.first.0", "net.first.1", "net.again", "net.last"])
    model = nn.Sequential(nn.Linear(2, 2))
    model.add_module("back", model)  # below itself: not entered again (PyTorch's never ends)
    assert [name for name, _ in model.named_modules(remove_duplicate=False)] == ["", "0"]
    # two that hold each other: neither entered again below itself (at most 20 read, so that
    # a walk that does not end fails here rather than hangs)
    first, second = nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2))
    first.add_module("next", second)
    second.add_module("back", first)
    assert [name for name, _ in itertools.islice(first.named_modules(remove_duplicate=False),
                                                 20)] == ["", "0", "next", "next.0"]
    for call, message in (
            (lambda: model.named_modules("net"), "named_modules' memo must be a set of modules "
                                                 "or None, got str 'net'"),
            (lambda: model.named_modules(prefix=1), "prefix must be a str, got int 1"),
            (lambda: model.named_modules(remove_duplicate="false"),
             "remove_duplicate must be a bool, got 'false'")):
        with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
            call()


def test_named_modules_order_matches_torch_with_a_shared_submodule():
    torch = pytest.importorskip("torch")

    class TheirSharedTwice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            shared = torch.nn.Linear(2, 2)
            self.first = torch.nn.Sequential(torch.nn.Linear(2, 2), shared)
            self.again = shared
            self.second = torch.nn.Sequential(shared, torch.nn.Linear(2, 2))

    ours, theirs = _SharedTwice(), TheirSharedTwice()
    assert [name for name, _ in ours.named_modules()] == \
        [name for name, _ in theirs.named_modules()]
    assert [name for name, _ in ours.named_parameters()] == \
        [name for name, _ in theirs.named_parameters()]


def test_named_parameters_and_buffers_take_pytorchs_prefix_recurse_and_remove_duplicate():
    """named_parameters(prefix, recurse, remove_duplicate), parameters(recurse) and the same
    of the buffers, as PyTorch's (they took no argument: a ported
    ``model.parameters(recurse=False)`` failed)."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        shared = library.nn.Linear(2, 2)
        model = library.nn.Module()
        model.scale = library.nn.Parameter(library.ones(1))
        model.register_buffer("count", library.zeros(1))
        model.first = library.nn.Sequential(library.nn.Linear(2, 2), shared)
        model.first[0].register_buffer("mean", library.zeros(2))
        model.first[0].bias = model.scale  # a tied weight
        model.again = shared
        walks = {}
        for kind in ("parameters", "buffers"):
            named = getattr(model, "named_" + kind)
            for arguments in ({}, {"prefix": "net"}, {"recurse": False},
                              {"remove_duplicate": False}, {"prefix": "p", "recurse": False}):
                walks[kind, str(arguments)] = [name for name, _ in named(**arguments)]
            walks[kind, "positional"] = [name for name, _ in named("net", True, False)]
            walks[kind, "unnamed"] = [len(list(getattr(model, kind)(recurse)))
                                      for recurse in (True, False)]
        seen[library.__name__] = walks
    assert seen["minilean"] == seen["torch"]
    assert seen["torch"]["parameters", "{'remove_duplicate': False}"] == [
        "scale", "first.0.weight", "first.0.bias", "first.1.weight", "first.1.bias",
        "again.weight", "again.bias"]
    assert seen["torch"]["parameters", "{}"] == [
        "scale", "first.0.weight", "first.1.weight", "first.1.bias"]
    layer = nn.Linear(2, 2)
    assert list(layer.parameters()) == list(layer.parameters(recurse=False))
    for call, message in ((lambda: layer.named_parameters(None), "prefix must be a str, got "
                                                                 "NoneType None"),
                          (lambda: layer.parameters("false"), "recurse must be a bool, got "
                                                              "'false'"),
                          (lambda: layer.named_buffers(remove_duplicate=0),
                           "remove_duplicate must be a bool, got 0")):
        with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
            call()


def test_shared_parameter_is_listed_once():
    layer = nn.Linear(2, 2)
    model = nn.Sequential(layer, layer)
    assert len(list(model.parameters())) == 2


def test_a_parameter_tied_between_two_layers_is_listed_and_trained_once():
    first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    second.weight = first.weight  # tied weights: one tensor, two layers
    model = nn.Sequential(first, second)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    # state_dict names it under both layers, as PyTorch's does
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    start = first.weight.numpy().copy()
    optimizer = ml.optim.SGD(model.parameters(), lr=0.5)
    first.weight.grad = ml.ones(2, 2)
    optimizer.step()  # one update of lr * grad, not two
    numpy.testing.assert_allclose(first.weight.numpy(), start - 0.5)


def test_state_dict_names_tied_weights_and_shared_modules_under_each_name_as_torch():
    """PyTorch's state_dict has a key for every name of a tied weight (``out.weight =
    emb.weight``) or shared module; minilean's listed each tensor once, so a state from
    either library failed to load strictly into the other (unexpected or missing key)."""
    torch = pytest.importorskip("torch")

    def build(library):
        model = library.nn.Module()
        model.emb, model.out = library.nn.Embedding(5, 3), library.nn.Linear(3, 5, bias=False)
        model.out.weight = model.emb.weight
        shared = library.nn.Linear(3, 3)
        model.blocks = library.nn.Sequential(shared, library.nn.ReLU(), shared)
        return model

    ours, theirs = build(ml), build(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [
        "emb.weight", "out.weight", "blocks.0.weight", "blocks.0.bias", "blocks.2.weight",
        "blocks.2.bias"]
    ours.load_state_dict({name: value.numpy() for name, value in theirs.state_dict().items()})
    numpy.testing.assert_array_equal(ours.out.weight.numpy(), theirs.emb.weight.detach().numpy())
    assert ours.out.weight is ours.emb.weight
    theirs.load_state_dict({name: torch.tensor(value.numpy())
                            for name, value in ours.state_dict().items()})


def test_a_parameter_registered_over_a_plain_attribute_replaces_it():
    """As register_buffer (PyTorch's register_parameter refuses the name instead): the plain
    attribute would otherwise hide the parameter from ``module.<name>``."""
    module = nn.Module()
    module.scale = None  # a plain attribute first
    scale = nn.Parameter(ml.ones(2))
    module.register_parameter("scale", scale)
    assert module.scale is scale and list(module.state_dict()) == ["scale"]


def test_a_parameter_or_module_assigned_over_a_plain_attribute_replaces_it():
    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = None          # a plain attribute first (e.g. "no bias yet")
            self.head = None
            self.bias = nn.Parameter(ml.ones(2))
            self.head = nn.Linear(2, 1)

    layer = Layer()
    assert isinstance(layer.bias, nn.Parameter) and isinstance(layer.head, nn.Linear)
    assert [name for name, _ in layer.named_parameters()] == ["bias", "head.weight", "head.bias"]


def test_a_parameter_or_module_assigned_over_a_buffer_or_submodule_replaces_it_as_torch():
    torch = pytest.importorskip("torch")
    for library in (ml, torch):
        layer = library.nn.Linear(2, 1)
        layer.register_buffer("scale", library.ones(2))
        layer.head = library.nn.Linear(2, 3)
        scale, head = library.nn.Parameter(library.ones(2)), library.nn.Parameter(library.ones(3))
        layer.scale, layer.head = scale, head
        assert layer.scale is scale and layer.head is head
        assert list(layer.state_dict()) == ["weight", "bias", "scale", "head"]
        assert [name for name, _ in layer.named_buffers()] == []
        assert [name for name, _ in layer.named_children()] == []
        # and a module assigned over a buffer
        layer.register_buffer("shift", library.ones(2))
        layer.shift = library.nn.Linear(2, 3)
        assert isinstance(layer.shift, library.nn.Linear)
        assert list(layer.state_dict()) == ["weight", "bias", "scale", "head", "shift.weight",
                                            "shift.bias"]
        assert [name for name, _ in layer.named_buffers()] == []


def test_a_parameter_shows_itself_in_its_repr():
    weight = nn.Parameter(ml.zeros(2))
    assert repr(weight) == "Parameter containing:\n" + repr(ml.zeros(2, requires_grad=True))


def test_forgetting_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Broken()


def test_state_dict_round_trip_copies_values_in_place():
    source, target = Block(), Block()
    weight_object = target.head.weight
    target.load_state_dict(source.state_dict())
    assert target.head.weight is weight_object
    x = ml.randn(5, 3)
    numpy.testing.assert_array_equal(source(x).numpy(), target(x).numpy())


def test_load_state_dict_errors_name_the_key_and_shapes():
    model = Block()
    state = {name: value.numpy() for name, value in model.state_dict().items()}
    missing = dict(state)
    del missing["head.weight"]
    with pytest.raises(ValueError, match="missing key.*head.weight"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match="unexpected key.*extra"):
        model.load_state_dict({**state, "extra": numpy.zeros(1)})
    wrong = {**state, "body.0.weight": numpy.zeros((5, 3), numpy.float32)}
    with pytest.raises(ValueError, match=r"'body.0.weight': shape \(5, 3\) .* but \(4, 3\)"):
        model.load_state_dict(wrong)
    # another model's state: the first five keys and a count, not all of them
    other = {f"layer{index}.weight": numpy.zeros(1) for index in range(8)}
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['layer0.weight', .*, "
                                         r"'layer4.weight'\] and 3 more for Block$"):
        model.load_state_dict({**state, **other})
    # five keys are all listed, with no "and 0 more"
    five = {f"layer{index}.weight": numpy.zeros(1) for index in range(5)}
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['layer0.weight', "
                                         r"'layer1.weight', 'layer2.weight', 'layer3.weight', "
                                         r"'layer4.weight'\] for Block$"):
        model.load_state_dict({**state, **five})


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_load_state_dict_errors_are_caught_as_runtime_errors_as_torchs_and_as_value_errors(
        change):
    """PyTorch raises RuntimeError for a missing or unexpected key and a size mismatch; these
    were ValueErrors only, so a ported ``except RuntimeError:`` missed them. They are
    StateDictErrors, both a ValueError and a RuntimeError, and leave the module as it was."""
    from minilean.errors import StateDictError
    model = nn.Linear(2, 3)
    before = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    state = {"weight": numpy.ones((3, 2), numpy.float32), "bias": numpy.ones(3, numpy.float32)}
    if change == "missing":
        del state["bias"]
    elif change == "unexpected":
        state["scale"] = numpy.ones(1, numpy.float32)
    else:
        state["bias"] = numpy.ones(4, numpy.float32)
    for caught in (RuntimeError, ValueError, StateDictError):
        with pytest.raises(caught) as error:
            model.load_state_dict(state)
        assert type(error.value) is StateDictError and "\n" not in str(error.value)
    for name, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value.numpy(), before[name])
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError):
        torch.nn.Linear(2, 3).load_state_dict({name: torch.tensor(value)
                                               for name, value in state.items()})


def test_load_state_dict_refuses_what_is_no_mapping_as_torch():
    """A module or a list of arrays in the place of a state dict failed in NumPy's words (a
    list: "ufunc 'equal' did not contain a loop"), or as "argument of type 'Block' is not
    iterable"; PyTorch refuses anything that is not dict-like, by its type."""
    torch = pytest.importorskip("torch")
    model = Block()
    before = [param.numpy().copy() for param in model.parameters()]
    for bad in (Block(), list(model.state_dict().values()), None):
        with pytest.raises(TypeError, match=f"^load_state_dict takes a mapping of names to "
                                            f"arrays \\(a state_dict\\(\\)\\), got "
                                            f"{type(bad).__name__}$"):
            model.load_state_dict(bad)
        with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
            torch.nn.Linear(2, 2).load_state_dict(bad)
    for param, value in zip(model.parameters(), before):
        numpy.testing.assert_array_equal(param.numpy(), value)


def test_a_load_that_cannot_read_a_value_leaves_the_module_as_it_was():
    """A value that fails only when copied (a PyTorch parameter that requires grad, as
    ``dict(model.named_parameters())`` gives, which PyTorch's load takes; a bfloat16 tensor;
    text) failed in the middle of the copies, in NumPy's or PyTorch's words from inside,
    with the weights before it already overwritten."""
    torch = pytest.importorskip("torch")
    model = nn.Linear(2, 3)
    before = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    theirs = torch.nn.Linear(2, 3)
    ones = numpy.ones((3, 2), numpy.float32)
    for bias, message in (
            (theirs.bias, "the Parameter in the loaded state cannot be read as an array "
                          "(Can't call numpy() on Tensor that requires grad."),
            (theirs.bias.detach().to(torch.bfloat16),
             "the Tensor in the loaded state cannot be read as an array (Got unsupported "
             "ScalarType BFloat16)"),
            (numpy.array(["a", "b", "c"]), "dtype <U1 in the loaded state; expected a real or "
                                           "integer array"),
            (numpy.ones(3) * 1j, "dtype complex128 in the loaded state; expected a real or "
                                 "integer array")):
        with pytest.raises(TypeError, match="^" + re.escape(f"'bias': {message}")):
            model.load_state_dict({"weight": ones, "bias": bias})
        for name, value in model.state_dict().items():
            numpy.testing.assert_array_equal(value.numpy(), before[name])
    model.load_state_dict(theirs.state_dict())  # PyTorch's own state (detached) still loads
    numpy.testing.assert_array_equal(model.bias.numpy(), theirs.bias.detach().numpy())


def test_state_dict_tensors_share_the_weights_but_need_no_grad():
    model = nn.Linear(3, 2)
    state = model.state_dict()
    assert not any(tensor.requires_grad for tensor in state.values())
    assert numpy.shares_memory(state["weight"].data, model.weight.data)
    model.weight.data[...] = 7.0
    assert (state["weight"].numpy() == 7.0).all()


def test_state_dict_prefix_and_keep_vars_as_torch():
    """PyTorch's ``state_dict(prefix=..., keep_vars=...)`` was a TypeError ("unexpected keyword
    argument"): ``prefix`` goes before every key, and ``keep_vars=True`` gives the Parameters
    and buffers themselves (their gradients flow), which load as the detached tensors do."""
    torch = pytest.importorskip("torch")
    ours = Block()
    theirs = torch.nn.Module()
    theirs.body = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.SiLU())
    theirs.head = torch.nn.Linear(4, 2, bias=False)
    theirs.register_buffer("scale", torch.ones(2))
    assert list(ours.state_dict(prefix="net.")) == list(theirs.state_dict(prefix="net.")) == [
        "net.scale", "net.body.0.weight", "net.body.0.bias", "net.head.weight"]
    kept = ours.state_dict(keep_vars=True)
    assert kept["head.weight"] is ours.head.weight and kept["scale"] is ours.scale
    assert kept["head.weight"].requires_grad and isinstance(kept["head.weight"], nn.Parameter)
    assert theirs.state_dict(keep_vars=True)["head.weight"] is theirs.head.weight
    detached = ours.state_dict(prefix="net.", keep_vars=False)["net.head.weight"]
    assert detached is not ours.head.weight and not detached.requires_grad
    other = Block()
    other.load_state_dict(ours.state_dict(keep_vars=True))
    for name, value in other.state_dict().items():
        numpy.testing.assert_array_equal(value.numpy(), kept[name].numpy())


def test_state_dict_arguments_are_keyword_only_and_checked():
    """PyTorch's first positional argument is the old ``destination``: ``state_dict("net.")``
    is refused, not read as a prefix; a prefix that is no str and a keep_vars that is no bool
    (``"false"``, read from a flag, is truthy) are one-line TypeErrors."""
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="takes 1 positional argument but 2 were given"):
        model.state_dict("net.")
    with pytest.raises(TypeError, match="^prefix must be a str, got int 1$"):
        model.state_dict(prefix=1)
    with pytest.raises(TypeError, match="^keep_vars must be a bool, got 'false'$"):
        model.state_dict(keep_vars="false")


def test_non_strict_load_reports_missing_and_unexpected():
    model = Block()
    state = {"head.weight": numpy.ones((2, 4)), "other": numpy.zeros(3)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["scale", "body.0.weight", "body.0.bias"] and unexpected == ["other"]
    assert (model.head.weight.numpy() == 1).all()


def test_non_strict_load_names_its_lists_as_torch():
    """PyTorch returns a named pair: ``result.missing_keys`` failed on minilean's plain tuple
    with "'tuple' object has no attribute 'missing_keys'"."""
    result = Block().load_state_dict({"other": numpy.zeros(3)}, strict=False)
    assert result.missing_keys == ["scale", "body.0.weight", "body.0.bias", "head.weight"]
    assert result.unexpected_keys == ["other"]
    assert Block().load_state_dict(Block().state_dict()) == ([], [])
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Linear(2, 2).load_state_dict({}, strict=False)
    assert theirs._fields == result._fields


def test_train_eval_switch_the_whole_tree_and_dropout():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    assert model.eval() is model  # so that ``model = Model().eval()`` works, as in PyTorch
    assert not any(module.training for module in model.modules())
    x = ml.randn(8, 4)
    numpy.testing.assert_array_equal(model(x).numpy(), model[0](x).numpy())
    assert model.train() is model
    assert all(module.training for module in model.modules())
    assert (model(ml.ones(200, 4)).numpy() == 0).any()


def test_train_lets_a_submodule_with_its_own_train_switch_itself_as_torch():
    """A child whose class overrides ``train`` (an encoder frozen in eval mode, PyTorch's way
    to keep a part's dropout or statistics fixed) was switched by the parent's walk, its
    override never called: its dropout trained on."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        calls = []

        class FrozenEncoder(library.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = library.nn.Sequential(library.nn.Linear(4, 4),
                                                   library.nn.Dropout(0.5))

            def train(self, mode=True):
                calls.append(mode)
                return super().train(False)

        model = library.nn.Sequential(FrozenEncoder(), library.nn.Dropout(0.5))
        assert model.eval() is model and model.train() is model
        seen[library.__name__] = (calls, [module.training for module in model.modules()],
                                  model)
    assert seen["minilean"][:2] == seen["torch"][:2] == (
        [False, True], [True, False, False, False, False, True])
    encoder, x = seen["minilean"][2][0], ml.randn(8, 4)
    numpy.testing.assert_array_equal(encoder.inner(x).numpy(), encoder.inner[0](x).numpy())
    cyclic = nn.Sequential(nn.Dropout(0.5))
    cyclic[0].parent = cyclic  # a module below itself: the walk still ends
    assert not any(module.training for module in cyclic.eval().modules())


def test_train_ends_where_two_modules_with_their_own_train_hold_each_other():
    """Each override's super().train walked into the other, whose override walked back: a
    RecursionError, where the same cycle without overrides ends."""
    class Override(nn.Module):
        def __init__(self):
            super().__init__()
            self.dropout = nn.Dropout(0.5)

        def train(self, mode=True):
            return super().train(mode)

    parent, child = Override(), Override()
    parent.child = child
    child.parent = parent  # a module below itself, with its own train
    assert parent.eval() is parent
    assert not any(module.training for module in (parent, child, parent.dropout, child.dropout))
    assert child.train() is child and parent.training and parent.dropout.training


def test_train_takes_only_a_bool_as_torch():
    """train("false") was train(True): bool() of any non-empty text, so dropout stayed on in
    a model meant for evaluation; PyTorch refuses a mode that is no bool."""
    torch = pytest.importorskip("torch")
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    for mode in ("false", "False", 0, None):
        with pytest.raises(ValueError, match=re.escape(
                f"training mode must be a bool, got {mode!r}")):
            model.train(mode)
        with pytest.raises(ValueError, match="training mode is expected to be boolean"):
            torch.nn.Linear(2, 2).train(mode)
    assert model.train(False) is model and not any(m.training for m in model.modules())
    assert all(m.training for m in model.train(numpy.bool_(True)).modules())
    # a NumPy bool is taken as Python's, which the layers' own checks expect (dropout's)
    model.train(numpy.bool_(False))
    assert all(type(m.training) is bool and not m.training for m in model.modules())
    x = ml.ones(3, 2)
    numpy.testing.assert_array_equal(model(x).numpy(), model[0](x).numpy())


def test_to_dtype_keeps_parameter_objects_and_zero_grad_clears():
    model = Block()
    params = list(model.parameters())
    model.to(dtype=numpy.float64)
    assert all(a is b for a, b in zip(params, model.parameters()))
    assert all(p.dtype == numpy.float64 for p in model.parameters())
    model(ml.randn(2, 3, dtype=numpy.float64)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_to_dtype_casts_existing_gradients_too():
    model = nn.Linear(3, 2)
    model(ml.randn(4, 3)).sum().backward()
    grads = {name: param.grad.numpy().copy() for name, param in model.named_parameters()}
    model.to(dtype=numpy.float64)
    for name, param in model.named_parameters():
        assert param.grad.dtype == numpy.float64, name
        numpy.testing.assert_array_equal(param.grad.numpy(), grads[name].astype(numpy.float64))


def test_to_dtype_casts_floating_tensors_only_as_torch():
    """An index or count buffer stays an integer (and a mask boolean), as in PyTorch: cast to
    float64 it was refused by embedding, and a parameter cast to int32 was not refused."""
    model = Block()
    model.register_buffer("positions", ml.tensor(numpy.arange(3)))
    model.register_buffer("keep", ml.tensor(numpy.array([True, False])))
    model.to(dtype=numpy.float64)
    assert model.positions.dtype == numpy.int64 and model.keep.dtype == numpy.bool_
    assert model.scale.dtype == numpy.float64
    with pytest.raises(TypeError, match="^Module.to casts the floating-point parameters and "
                                        "buffers, so dtype must be a floating-point type, got "
                                        "'int32'$"):
        model.to(dtype="int32")
    assert all(param.dtype == numpy.float64 for param in model.parameters())


@pytest.mark.parametrize("dtype", [ml.float64, numpy.dtype(numpy.float64)])
def test_to_takes_a_dtype_in_the_place_of_the_device_as_a_tensor_does(dtype):
    """``model.to(float64)``, PyTorch's spelling, was read as a device and refused as one."""
    model = nn.Linear(3, 2)
    assert model.to(dtype) is model
    assert all(param.dtype == numpy.float64 and param.device == "cpu"
               for param in model.parameters())
    with pytest.raises(TypeError, match="dtype must be a floating-point type, got "
                                        "<class 'numpy.int64'>$"):
        model.to(ml.int64)


@pytest.mark.parametrize("method", ["float", "double", "half", "cpu"])
def test_dtype_and_device_shorthands_are_to_as_torchs(method):
    """``model.double()`` and its kin, PyTorch's spellings of ``to``: the module itself back,
    the floating-point weights and buffers in the dtype, an integer buffer left as it was."""
    torch = pytest.importorskip("torch")
    for library in (ml, torch):
        model = library.nn.Linear(3, 2).double() if method == "cpu" else library.nn.Linear(3, 2)
        model.register_buffer("steps", library.tensor([1, 2]))
        assert getattr(model, method)() is model
        assert [str(param.dtype).removeprefix("torch.") for param in model.parameters()] == \
            [{"float": "float32", "double": "float64", "half": "float16",
              "cpu": "float64"}[method]] * 2
        assert str(model.steps.dtype).endswith("int64") and str(model.weight.device) == "cpu"


def test_to_cuda_without_a_gpu_is_a_one_line_error():
    if ml.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ml.DeviceError, match="cuda") as error:
        nn.Linear(2, 2).to("cuda")
    assert "\n" not in str(error.value)
    with pytest.raises(ml.DeviceError, match="cuda"):  # also with no weights to move
        nn.ReLU().to("cuda")
    with pytest.raises(ml.DeviceError, match="cuda"):  # PyTorch's shorthand for it
        nn.Linear(2, 2).cuda()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, target", [
    ("CrossEntropyLoss", numpy.array([2, 0, 1, 2])),
    ("MSELoss", numpy.linspace(-1.0, 1.0, 12).reshape(4, 3))])
def test_loss_modules_match_torchs(name, target, reduction):
    """``criterion = nn.CrossEntropyLoss()``, the loss of PyTorch's first training loops."""
    torch = pytest.importorskip("torch")
    logits = numpy.random.default_rng(0).standard_normal((4, 3))
    ours_in, theirs_in = ml.tensor(logits, requires_grad=True), torch.tensor(logits,
                                                                             requires_grad=True)
    ours = getattr(nn, name)(reduction=reduction)(ours_in, ml.tensor(target))
    theirs = getattr(torch.nn, name)(reduction=reduction)(theirs_in, torch.tensor(target))
    numpy.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12)
    ours.sum().backward()
    theirs.sum().backward()
    numpy.testing.assert_allclose(ours_in.grad.numpy(), theirs_in.grad.numpy(), rtol=1e-12)
    assert repr(getattr(nn, name)()) == f"{name}(reduction='mean')"


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "MSELoss"])
def test_loss_modules_refuse_pytorch_positional_weight(name):
    """nn.CrossEntropyLoss(weight) in PyTorch; here it must fail where it is built, not as a
    reduction at the first forward."""
    with pytest.raises(TypeError, match="takes 1 positional argument but 2 were given"):
        getattr(nn, name)(ml.ones(3))


def test_loss_and_gelu_layers_refuse_a_bad_setting_when_built():
    """nn.CrossEntropyLoss(reduction="avg") and nn.GELU("tan") were built, and failed at the
    model's first forward."""
    for name in ("CrossEntropyLoss", "MSELoss"):
        with pytest.raises(ValueError, match=r"^reduction must be one of \('mean', 'sum', "
                                             r"'none'\), got 'avg'$"):
            getattr(nn, name)(reduction="avg")
    with pytest.raises(ValueError, match="^gelu approximate must be 'none' or 'tanh', got 'tan'$"):
        nn.GELU("tan")
    with pytest.raises(TypeError, match="^leaky_relu negative_slope must be a number, got '0.1'$"):
        nn.LeakyReLU("0.1")


@pytest.mark.parametrize("layer", [nn.ReLU, nn.SiLU, nn.Sigmoid, nn.Tanh])
def test_an_activation_refuses_a_setting_its_function_lacks_when_built(layer):
    """PyTorch's nn.ReLU(inplace=True) was accepted, and failed at the model's first forward,
    in the words of relu()."""
    with pytest.raises(TypeError, match=f"^{layer.__name__}: got an unexpected keyword "
                                        f"argument 'inplace'$"):
        layer(inplace=True)
    assert repr(nn.GELU(approximate="tanh")) == "GELU(approximate='tanh')"


def test_layers_with_settings_show_them_in_their_repr():
    """In PyTorch's words, less the flags minilean's layers lack (Dropout's inplace,
    LayerNorm's bias)."""
    assert repr(nn.Dropout(0.3)) == "Dropout(p=0.3)"
    assert repr(nn.LayerNorm(4)) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"
    assert repr(nn.Embedding(5, 3)) == "Embedding(5, 3)"


def test_a_linear_layer_prints_as_torchs():
    torch = pytest.importorskip("torch")
    for bias in (True, False):
        assert repr(nn.Linear(3, 2, bias=bias)) == repr(torch.nn.Linear(3, 2, bias=bias))


def test_a_module_without_forward_says_so_and_plain_attributes_can_be_deleted():
    class Empty(nn.Module):
        pass

    module = Empty()
    with pytest.raises(NotImplementedError, match=r"^Empty does not define forward\(\)$"):
        module(ml.zeros(1))
    module.note = "kept outside the registries"
    del module.note
    assert not hasattr(module, "note")


def test_repr_shows_the_tree():
    text = repr(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.SiLU()))
    assert text.splitlines()[0] == "Sequential("
    assert "(0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)" in text
    assert "(1): GroupNorm(2, 8, eps=1e-05, affine=True)" in text and "(2): SiLU()" in text
    assert repr(nn.GroupNorm(2, 8, activation="silu")) == \
        "GroupNorm(2, 8, eps=1e-05, affine=True, activation='silu')"
    nested = nn.Sequential(nn.Sequential(nn.ReLU()), nn.SiLU())
    assert repr(nested) == ("Sequential(\n  (0): Sequential(\n    (0): ReLU()\n  )\n"
                            "  (1): SiLU()\n)")
    # the layout is part of what a reader must know of an attention layer
    assert repr(nn.MultiheadAttention(4, 2)).splitlines()[:2] == [
        "MultiheadAttention(", "  embed_dim=4, num_heads=2, dropout=0.0, batch_first=False"]


def test_a_module_with_settings_and_children_prints_as_torchs():
    """PyTorch prints the lines of ``extra_repr`` each on its own indented line when there
    are children or more than one line; the settings were printed on the first line, the
    first child below them, and a second line of settings unindented."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        class Scaled(library.nn.Module):
            def __init__(self, lines, child):
                super().__init__()
                self.lines = lines
                if child:
                    self.body = library.nn.Sequential(library.nn.ReLU())

            def extra_repr(self):
                return self.lines

        seen[library.__name__] = [repr(Scaled(lines, child)) for lines in ("", "scale=2",
                                                                            "scale=2,\nshift=1")
                                  for child in (False, True)]
    assert seen["minilean"] == seen["torch"]
    assert seen["torch"][3] == "Scaled(\n  scale=2\n  (body): Sequential(\n    (0): ReLU()\n  )\n)"


def test_module_list_of_none_is_empty_as_torch():
    """``ModuleList(None)`` (PyTorch's default argument, passed on by wrappers) was a TypeError."""
    torch = pytest.importorskip("torch")
    for library in (ml, torch):
        layers = library.nn.ModuleList(None)
        assert len(layers) == 0 and list(layers.parameters()) == []
        layers.append(library.nn.Linear(1, 1))
        assert len(list(layers.parameters())) == 2


def test_module_list_indexing_and_errors():
    layers = nn.ModuleList([nn.Linear(1, 1) for _ in range(3)])
    assert len(layers) == 3 and layers[-1] is list(layers)[2] and len(layers[1:]) == 2
    assert len(list(layers.parameters())) == 6
    with pytest.raises(IndexError, match="index 3 is out of range"):
        layers[3]
    with pytest.raises(TypeError, match="holds Modules"):
        layers.append(lambda x: x)
    assert layers[-3] is list(layers)[0]  # as a list: -len(layers) is the first
    with pytest.raises(IndexError, match="index -4 is out of range"):
        layers[-4]
    more = [nn.Linear(1, 2), nn.ReLU()]
    assert layers.extend(more[:1]) is layers and layers.append(more[1]) is layers
    assert list(layers)[3:] == more and list(layers.children()) == list(layers)
    assert [name for name, _ in layers.named_children()] == ["0", "1", "2", "3", "4"]


def test_module_list_index_that_is_no_integer_is_named_as_torchs_list():
    """A float index was said to be out of range ('index 1.0 is out of range for ModuleList of
    length 2'), and text failed in a comparison's words ("'<=' not supported between ...")."""
    torch = pytest.importorskip("torch")
    layers = nn.Sequential(nn.ReLU(), nn.Tanh())
    assert layers[numpy.int64(1)] is layers[ml.tensor(1)] is layers[1]
    for index, shown in ((1.0, "float 1.0"), ("0", "str '0'"), (None, "NoneType None")):
        with pytest.raises(TypeError, match=f"^Sequential index must be an integer or a slice, "
                                            f"got {re.escape(shown)}$"):
            layers[index]
        for use in (lambda: layers.__setitem__(index, nn.SiLU()),
                    lambda: layers.insert(index, nn.SiLU())):
            with pytest.raises(TypeError, match=f"^Sequential index must be an integer, got "
                                                f"{re.escape(shown)}$"):
                use()
    with pytest.raises(TypeError, match=re.escape("Sequential index must be an integer, got "
                                                  "slice slice(None, 1, None)")):
        layers[:1] = nn.SiLU()  # PyTorch's refuses a slice here too
        with pytest.raises(TypeError, match="cannot be interpreted as an integer"):
            torch.nn.Sequential(torch.nn.ReLU())[index]
    assert [type(layer).__name__ for layer in layers] == ["ReLU", "Tanh"]


def test_module_list_item_assignment_replaces_the_module_in_its_place():
    """``layers[i] = module``, as with PyTorch's ModuleList (there was no __setitem__)."""
    layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 3)])
    layers[1] = nn.Linear(2, 4)
    layers[-2] = nn.Sequential(nn.Linear(2, 5))
    assert [tuple(parameter.shape) for parameter in layers.parameters()] == [
        (5, 2), (5,), (4, 2), (4,)]
    assert [name for name, _ in layers.named_parameters()] == [
        "0.0.weight", "0.0.bias", "1.weight", "1.bias"]
    with pytest.raises(IndexError, match="^index 2 is out of range for ModuleList of length 2$"):
        layers[2] = nn.ReLU()
    with pytest.raises(TypeError, match="^ModuleList holds Modules, got int$"):
        layers[0] = 3
    assert len(layers) == 2
    layer = nn.Linear(2, 2)
    layer.weight = nn.Parameter(ml.zeros(2, 2))  # a replaced weight keeps its place too
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]


def test_module_list_insert_and_plus_equals_as_torchs():
    """insert moves the later modules up one name, += extends in place, as PyTorch's."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        layers = library.nn.ModuleList([library.nn.Linear(1, 2), library.nn.Linear(2, 3)])
        same = layers
        layers += [library.nn.Linear(3, 4)]
        assert layers is same
        layers.insert(1, library.nn.Linear(2, 2))
        layers.insert(0, library.nn.Linear(1, 1))
        layers.insert(len(layers), library.nn.Linear(4, 5))
        seen[library.__name__] = [(name, tuple(param.shape))
                                  for name, param in layers.named_parameters()]
        assert list(layers.state_dict()) == [name for name, _ in seen[library.__name__]]
    assert seen["minilean"] == seen["torch"]
    assert [name for name, _ in seen["torch"][::2]] == [f"{i}.weight" for i in range(6)]
    layers = nn.ModuleList([nn.ReLU(), nn.Tanh()])
    layers.insert(-1, nn.SiLU())  # as list.insert (PyTorch's fails with KeyError: '-1')
    assert [type(layer).__name__ for layer in layers] == ["ReLU", "SiLU", "Tanh"]
    layers.insert(-3, nn.Identity())  # -len: before the first, as list.insert
    assert [type(layer).__name__ for layer in layers] == ["Identity", "ReLU", "SiLU", "Tanh"]
    del layers[0]
    with pytest.raises(IndexError, match="^index 4 is out of range for inserting into "
                                         "ModuleList of length 3$"):
        layers.insert(4, nn.ReLU())
    with pytest.raises(IndexError, match="^index -4 is out of range for inserting into "
                                         "ModuleList of length 3$"):
        layers.insert(-4, nn.ReLU())
    with pytest.raises(TypeError, match="^ModuleList holds Modules, got int$"):
        layers.insert(0, 3)
    assert len(layers) == 3


def test_module_list_and_sequential_del_and_pop_renumber_the_rest_as_torchs():
    """``del layers[i]``, ``del layers[i:j]`` and ``pop`` drop those modules and rename the
    rest by their positions, as PyTorch's (there was no __delitem__ and no pop)."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        for container in ("ModuleList", "Sequential"):
            layers = [library.nn.Linear(1, size) for size in range(1, 7)]
            held = (getattr(library.nn, container)(layers) if container == "ModuleList"
                    else getattr(library.nn, container)(*layers))
            del held[1]
            del held[-1]
            popped = held.pop(0)
            del held[::2]
            popped_slice = held.pop(slice(0, 1))
            assert popped is layers[0] and list(popped_slice) == [layers[3]]
            assert type(popped_slice) is type(held) and list(held) == []
            held.extend([layers[0], layers[1], layers[2]])
            del held[0:2]
            held.append(layers[3])
            seen[library.__name__, container] = [(name, tuple(param.shape)) for name, param
                                                 in held.state_dict().items()]
    assert seen["minilean", "ModuleList"] == seen["minilean", "Sequential"] == \
        seen["torch", "ModuleList"] == seen["torch", "Sequential"] == [
            ("0.weight", (3, 1)), ("0.bias", (3,)), ("1.weight", (4, 1)), ("1.bias", (4,))]
    layers = nn.Sequential(nn.ReLU(), nn.Tanh())
    with pytest.raises(IndexError, match="^index 2 is out of range for Sequential of length 2$"):
        del layers[2]
    with pytest.raises(TypeError, match="^Sequential index must be an integer or a slice, got "
                                        "str '0'$"):
        layers.pop("0")
    assert [type(layer).__name__ for layer in layers] == ["ReLU", "Tanh"]


def test_module_dict_registers_its_modules_by_name_in_order_as_torchs():
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        layers = library.nn.ModuleDict({"encoder": library.nn.Linear(2, 3)})
        layers["decoder"] = library.nn.Linear(3, 2)
        layers.update([("head", library.nn.Linear(2, 1)), ("encoder", library.nn.Linear(2, 4))])
        assert list(layers) == list(layers.keys()) == ["encoder", "decoder", "head"]
        assert list(layers.values()) == [layers[name] for name in layers]
        assert list(layers.items()) == list(zip(layers.keys(), layers.values()))
        assert len(layers) == 3 and "head" in layers and "tail" not in layers
        del layers["decoder"]
        parent = library.nn.Module()
        parent.blocks = layers
        seen[library.__name__] = ([(name, tuple(param.shape))
                                   for name, param in parent.named_parameters()],
                                  list(parent.state_dict()), repr(layers))
    assert seen["minilean"] == seen["torch"]
    assert seen["torch"][:2] == (
        [("blocks.encoder.weight", (4, 2)), ("blocks.encoder.bias", (4,)),
         ("blocks.head.weight", (1, 2)), ("blocks.head.bias", (1,))],
        ["blocks.encoder.weight", "blocks.encoder.bias", "blocks.head.weight",
         "blocks.head.bias"])
    layers = nn.ModuleDict()
    with pytest.raises(TypeError, match="^ModuleDict holds Modules, got int$"):
        layers["a"] = 3
    for name, message in (("train", "cannot register submodule 'train': ModuleDict has a "
                                    "class attribute of that name"),
                          ("a.b", "submodule name must be a non-empty str without '.', got "
                                  "'a.b'")):
        with pytest.raises(KeyError, match=re.escape(message)):
            layers[name] = nn.ReLU()
    with pytest.raises(KeyError, match="'training'"):
        del layers["training"]
    assert len(layers) == 0 and layers.training is True


def test_module_dict_pop_and_clear_as_torchs():
    """``pop(name)`` and ``clear()`` drop the modules and their parameters, as PyTorch's
    (neither existed)."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        head = library.nn.Linear(3, 1)
        layers = library.nn.ModuleDict({"encoder": library.nn.Linear(2, 3), "head": head,
                                        "decoder": library.nn.Linear(3, 2)})
        assert layers.pop("head") is head
        with pytest.raises(KeyError, match="^'head'$"):
            layers.pop("head")
        named = [name for name, _ in layers.named_parameters()]
        layers.clear()
        seen[library.__name__] = (named, len(layers), list(layers.state_dict()),
                                  list(layers.parameters()))
    assert seen["minilean"] == seen["torch"] == (
        ["encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"], 0, [], [])


def test_module_dict_takes_another_module_dict_as_torchs():
    """A ModuleDict is a Module, not a Mapping: ``update(other)`` and ``ModuleDict(other)``
    iterated its names as (name, module) pairs ('ModuleDict holds Modules, got str'), and a
    two-letter name was split into a name and a "module"."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        other = library.nn.ModuleDict({"ab": library.nn.Linear(2, 3),
                                       "head": library.nn.Linear(3, 1)})
        copied = library.nn.ModuleDict(other)
        layers = library.nn.ModuleDict({"head": library.nn.Linear(3, 2)})
        layers.update(other)
        seen[library.__name__] = [list(copied), [(name, tuple(param.shape))
                                                 for name, param in layers.named_parameters()]]
        assert copied["ab"] is other["ab"] and layers["head"] is other["head"]
    assert seen["minilean"] == seen["torch"] == [
        ["ab", "head"], [("head.weight", (1, 3)), ("head.bias", (1,)), ("ab.weight", (3, 2)),
                         ("ab.bias", (3,))]]
    layers = nn.ModuleDict()
    for pairs, error, shown in ((["ab"], TypeError, "'ab'"),
                                ([("a", nn.ReLU(), 3)], ValueError, "('a', ReLU(), 3) of 3 items")):
        with pytest.raises(error, match=re.escape(
                f"ModuleDict.update takes (name, module) pairs, got {shown} at position 0")):
            layers.update(pairs)
    assert len(layers) == 0


def test_module_dict_update_takes_any_iterable_pairs_and_refuses_others_as_torchs():
    """PyTorch's update takes each pair as any iterable of two items (a deque, a row of an
    object array): they were refused here as no (name, module) pair, and an item that is no
    pair at all (a module) was a ValueError, not PyTorch's TypeError."""
    from collections import deque
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        relu, tanh = library.nn.ReLU(), library.nn.Tanh()
        layers = library.nn.ModuleDict()
        layers.update([deque(["act", relu]), numpy.array(["out", tanh], dtype=object)])
        assert layers["act"] is relu and layers["out"] is tanh
        errors = []
        for bad in (5, [library.nn.ReLU()], library.nn.ModuleList([library.nn.ReLU()]),
                    [["a"]]):
            with pytest.raises((TypeError, ValueError)) as caught:
                layers.update(bad)
            errors.append(caught.type)
        seen[library.__name__] = (list(layers), errors)
    assert seen["minilean"] == seen["torch"] == (
        ["act", "out"], [TypeError, TypeError, TypeError, ValueError])
    for bad, message in ((5, "a mapping or (name, module) pairs, got int"),
                         ([nn.ReLU()], "(name, module) pairs, got ReLU() at position 0")):
        with pytest.raises(TypeError, match=re.escape(f"ModuleDict.update takes {message}")):
            nn.ModuleDict().update(bad)


def test_a_slice_of_a_sequential_is_a_sequential_that_runs_those_layers():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    head = model[:2]
    assert type(head) is nn.Sequential and len(head) == 2 and head[0] is model[0]
    x = ml.randn(5, 3)
    numpy.testing.assert_array_equal(head(x).numpy(), model[1](model[0](x)).numpy())
    numpy.testing.assert_array_equal(model[2:](head(x)).numpy(), model(x).numpy())


def test_a_sequential_of_an_ordered_dict_names_its_layers_as_torchs():
    """PyTorch's Sequential(OrderedDict([(name, layer), ...])) names the layers; it was
    refused ('Sequential holds Modules, got OrderedDict'), so a ported model did not build
    and its state_dict keys could not match."""
    from collections import OrderedDict
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        nn = library.nn
        model = nn.Sequential(OrderedDict([("conv", nn.Linear(3, 4)), ("act", nn.ReLU()),
                                           ("head", nn.Linear(4, 2))]))
        model.append(nn.Tanh())
        seen[library.__name__] = (list(model.state_dict()), [name for name, _ in
                                                             model.named_children()],
                                  type(model[0]).__name__, type(model[-1]).__name__,
                                  list(model[1:].state_dict()))
    assert seen["minilean"] == seen["torch"] == (
        ["conv.weight", "conv.bias", "head.weight", "head.bias"], ["conv", "act", "head", "3"],
        "Linear", "Tanh", ["head.weight", "head.bias"])
    model = ml.nn.Sequential(OrderedDict([("scale", ml.nn.Linear(1, 1, bias=False))]))
    model[0].weight.data[...] = 2.0
    assert model(ml.tensor([[3.0]])).item() == 6.0
    with pytest.raises(TypeError, match="^Sequential holds Modules, got int$"):
        ml.nn.Sequential(OrderedDict([("one", 1)]))


def test_a_slice_of_a_sequential_keeps_the_layer_names_and_a_module_lists_does_not_as_torch():
    """``model[1:]`` of a Sequential keeps the names "1", "2", ... (its state_dict loads
    PyTorch's slice's), a ModuleList's slice names from "0", as PyTorch's: the Sequential's
    was renamed from "0" ('0.weight' where PyTorch has '1.weight')."""
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        layers = [library.nn.Linear(1, size) for size in range(1, 5)]
        for held in (library.nn.Sequential(*layers), library.nn.ModuleList(layers)):
            for index in (slice(1, None), slice(None, None, 2), slice(None, None, -1)):
                sliced = held[index]
                assert type(sliced) is type(held) and list(sliced) == layers[index]
                seen[library.__name__, type(held).__name__, str(index)] = list(
                    sliced.state_dict())
    for key in [key for key in seen if key[0] == "minilean"]:
        assert seen[key] == seen[("torch",) + key[1:]], key
    assert seen["torch", "Sequential", "slice(1, None, None)"][::2] == \
        ["1.weight", "2.weight", "3.weight"]
    assert seen["torch", "ModuleList", "slice(1, None, None)"][::2] == \
        ["0.weight", "1.weight", "2.weight"]
    # adding to the slice loses no layer (PyTorch's append replaces its "3", a taken name)
    model = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 2), nn.Linear(2, 3), nn.Linear(3, 4))
    tail = model[1:]
    tail.append(nn.Linear(4, 5))
    assert list(tail) == list(model)[1:] + [tail[3]] and tail[3].out_features == 5
    assert [name for name, _ in tail.named_children()] == ["1", "2", "3", "4"]
    tail.insert(0, nn.Identity())  # insert and del name the layers by their positions
    assert [name for name, _ in tail.named_children()] == ["0", "1", "2", "3", "4"]
    assert [type(layer).__name__ for layer in tail] == ["Identity"] + ["Linear"] * 4
    x = ml.randn(2, 1)
    numpy.testing.assert_array_equal(model[2:](model[:2](x)).numpy(), model(x).numpy())


def test_a_slice_of_a_subclass_is_of_that_subclass_as_torchs():
    """PyTorch slices a Sequential or ModuleList subclass into ``type(model)(...)``, so a
    subclass's own forward runs on its slice; here the slice was a plain Sequential, and
    ``residual[1:](x)`` silently dropped the ``x +``. A subclass whose ``__init__`` takes other
    arguments fails in PyTorch from deep inside; here in one line."""
    from collections import OrderedDict
    torch = pytest.importorskip("torch")
    seen = {}
    for library in (ml, torch):
        class Residual(library.nn.Sequential):
            def forward(self, x):
                return x + super().forward(x)

        class Layers(library.nn.ModuleList):
            pass

        model = Residual(library.nn.Linear(2, 2), library.nn.Tanh(), library.nn.Linear(2, 2))
        layers = Layers([library.nn.ReLU(), library.nn.Tanh()])
        seen[library.__name__] = (type(model[1:]).__name__, list(model[1:].state_dict()),
                                  type(layers[1:]).__name__, type(layers.pop(slice(1))).__name__)
        x = library.randn(3, 2)
        numpy.testing.assert_array_equal(model[2:](x).detach().numpy(),
                                         (x + model[2](x)).detach().numpy())
    assert seen["minilean"] == seen["torch"] == (
        "Residual", ["2.weight", "2.bias"], "Layers", "Layers")

    class Block(nn.Sequential):
        def __init__(self, width):
            super().__init__(nn.Linear(width, width), nn.ReLU())

    with pytest.raises(TypeError, match=re.escape(
            "a slice of Block is built as Block(OrderedDict of its modules), as in PyTorch, "
            "which Block.__init__ does not take (ValueError: in_features must be an int >= 1, "
            "got OrderedDict([('1', ReLU())]))")):
        Block(3)[1:]

    class Pair(nn.Sequential):
        def __init__(self, first, second):
            super().__init__(first, second)

    with pytest.raises(TypeError, match=re.escape(
            "a slice of Pair is built as Pair(OrderedDict of its modules), as in PyTorch, which "
            "Pair.__init__ does not take (TypeError: ") + ".*" + re.escape(
            "Pair.__init__() missing 1 required positional argument: 'second')")):
        Pair(nn.ReLU(), nn.Tanh())[1:]

    class WithHead(nn.Sequential):
        def __init__(self, *layers):
            super().__init__(OrderedDict([*layers[0].items(), ("head", nn.Identity())]))

    with pytest.raises(TypeError, match=re.escape(
            "a slice of WithHead is built as WithHead(OrderedDict of its modules), as in "
            "PyTorch, and WithHead.__init__ made other modules of them")):
        WithHead(OrderedDict([("body", nn.ReLU())]))[:1]


def test_dropout_with_p_one_zeroes_everything_in_training_only():
    layer = nn.Dropout(1.0)
    x = ml.randn(4, 5)
    assert (layer(x).numpy() == 0).all()
    layer.eval()
    numpy.testing.assert_array_equal(layer(x).numpy(), x.numpy())


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Conv2d(2, 3, 0), "kernel_size must be an int >= 1 or a pair of them, got 0"),
    (lambda: nn.Conv2d(2, 3, (3, 3, 3)),
     r"kernel_size must be an int >= 1 or a pair of them, got \(3, 3, 3\)"),
    (lambda: nn.Conv2d(2, 3, 3, stride=0), "stride must be an int >= 1 or a pair of them, got 0"),
    (lambda: nn.Conv2d(2, 3, 3, padding=(1, -1)),
     r"padding must be an int >= 0 or a pair of them, got \(1, -1\)"),
    (lambda: nn.Conv2d(2, 3, 3, dilation=0),
     "dilation must be an int >= 1 or a pair of them, got 0"),
    (lambda: nn.ConvTranspose2d(2, 3, (0, 2)),
     r"kernel_size must be an int >= 1 or a pair of them, got \(0, 2\)"),
    (lambda: nn.ConvTranspose2d(2, 3, 3, output_padding=-1),
     "output_padding must be an int >= 0 or a pair of them, got -1"),
    (lambda: nn.Conv2d(2, 4, 3, groups=0), "groups must be an int >= 1, got 0"),
    (lambda: nn.ConvTranspose2d(2, 4, 3, groups=True), "groups must be an int >= 1, got True"),
    (lambda: nn.Conv2d(2, 4, 3, groups=4), "groups must divide in_channels=2, got 4"),
    (lambda: nn.ConvTranspose2d(4, 2, 3, groups=4), "groups must divide out_channels=2, got 4"),
])
def test_conv_layers_check_their_sizes_at_construction(make, message):
    """Before the first forward, and before a kernel of 0 divides by zero in the init or a
    triple builds a 5-d weight."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        make()


def test_conv_layers_keep_their_sizes_as_pairs():
    conv = nn.ConvTranspose2d(2, 3, (3, 1), stride=2, padding=[1, 0], output_padding=1)
    assert conv.kernel_size == (3, 1) and conv.weight.shape == (2, 3, 3, 1)
    assert nn.Conv2d(4, 6, 3, groups=2).weight.shape == (6, 2, 3, 3)
    assert nn.ConvTranspose2d(4, 6, 3, groups=2).weight.shape == (4, 3, 3, 3)
    assert conv.options == {"stride": (2, 2), "padding": (1, 0), "output_padding": (1, 1),
                            "dilation": (1, 1)}
    assert conv(ml.zeros(1, 2, 4, 4)).shape == (1, 3, 8, 8)  # (4 - 1) 2 - 2 p + (k - 1) + 1 + 1


# --- initialisation -------------------------------------------------------------------------

def test_default_init_is_seeded_and_within_pytorch_bounds():
    ml.manual_seed(3)
    first = nn.Linear(20, 30)
    ml.manual_seed(3)
    second = nn.Linear(20, 30)
    numpy.testing.assert_array_equal(first.weight.numpy(), second.weight.numpy())
    bound = 1 / math.sqrt(20)  # kaiming_uniform(a = sqrt 5) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for values in (first.weight.numpy(), first.bias.numpy()):
        assert numpy.abs(values).max() <= bound and numpy.abs(values).max() > 0.8 * bound
    # conv fan_in = in channels x kernel area; the largest of 216 draws from U(-b, b) is below
    # 0.8 b with probability 0.8^216 ~ 1e-21, so a smaller bound (e.g. the area counted twice:
    # 1/sqrt(4 * 81)) fails the lower check
    conv = nn.Conv2d(4, 6, 3)
    bound = 1 / math.sqrt(4 * 9)
    assert bound * 0.8 < numpy.abs(conv.weight.numpy()).max() <= bound
    transposed = nn.ConvTranspose2d(4, 6, 3)  # weight (4, 6, 3, 3): PyTorch's fan_in is 6 * 9
    assert transposed.weight.shape == (4, 6, 3, 3)
    bound = 1 / math.sqrt(6 * 9)
    assert bound * 0.8 < numpy.abs(transposed.weight.numpy()).max() <= bound
    # Embedding's table is N(0, 1), as PyTorch's: over 4000 draws the mean is within 0.05 of
    # 0 and the std of 1 (3 standard errors are 0.05 and 0.034), and some exceed 3 in size
    # (each with probability 0.0027), which no draw of U(-1, 1) or U(0, 1) does
    table = nn.Embedding(1000, 4).weight.numpy()
    assert abs(table.mean()) < 0.05 and abs(table.std() - 1) < 0.05
    assert numpy.abs(table).max() > 3


def test_constant_init_takes_its_value_as_val_as_torch():
    """PyTorch names the fill value ``val``; minilean's ``value`` made ported calls TypeErrors."""
    torch = pytest.importorskip("torch")
    filled = [library.nn.init.constant_(library.nn.Linear(3, 2).weight, val=0.25).detach().numpy()
              for library in (ml, torch)]
    numpy.testing.assert_array_equal(filled[0], filled[1])
    numpy.testing.assert_array_equal(filled[0], numpy.full((2, 3), 0.25, numpy.float32))


def test_init_statistics_match_their_formulas():
    weight = nn.Parameter(ml.zeros(400, 300))
    nn.init.kaiming_normal_(weight, nonlinearity="relu")
    assert abs(weight.numpy().std() - math.sqrt(2 / 300)) < 0.02 * math.sqrt(2 / 300)
    nn.init.kaiming_normal_(weight, a=1.0)  # leaky_relu of slope 1: gain sqrt(2 / 2) = 1
    assert abs(weight.numpy().std() - math.sqrt(1 / 300)) < 0.02 * math.sqrt(1 / 300)
    nn.init.xavier_uniform_(weight)
    assert abs(weight.numpy().std() - math.sqrt(2 / 700)) < 0.02 * math.sqrt(2 / 700)
    nn.init.xavier_normal_(weight)
    assert abs(weight.numpy().std() - math.sqrt(2 / 700)) < 0.02 * math.sqrt(2 / 700)
    nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")  # fan-out 400
    assert abs(weight.numpy().std() - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400)
    nn.init.kaiming_uniform_(weight, mode="fan_out", nonlinearity="relu")
    assert abs(weight.numpy().std() - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400)
    with pytest.raises(ValueError, match=r"^unknown nonlinearity 'swish'; expected one of "
                                         r"\('linear', .*'leaky_relu', 'selu'\)$"):
        nn.init.calculate_gain("swish")
    with pytest.raises(ValueError, match="^mode must be 'fan_in' or 'fan_out', got 'fan_avg'$"):
        nn.init.kaiming_uniform_(weight, mode="fan_avg")


def test_xavier_initialisers_scale_by_their_gain():
    """gain multiplies the bound of xavier_uniform_ and the std of xavier_normal_ (PyTorch's
    formulas), in the weight's dtype; 120000 draws reach within 1% of the bound but for a
    ~1e-500 chance."""
    ml.manual_seed(0)
    weight = nn.Parameter(ml.zeros(400, 300))
    bound = 2.5 * math.sqrt(6 / 700)
    values = nn.init.xavier_uniform_(weight, gain=2.5).numpy()
    assert values.dtype == numpy.float32  # drawn in float64, filled in the weight's dtype
    assert -bound <= values.min() < -0.99 * bound and 0.99 * bound < values.max() <= bound
    std = nn.init.xavier_normal_(weight, gain=2.5).numpy().std()
    assert abs(std - 2.5 * math.sqrt(2 / 700)) < 0.02 * 2.5 * math.sqrt(2 / 700)


def test_default_init_spans_the_whole_symmetric_range():
    """Linear's weight and bias are U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the extreme draws come
    close to both ends (each end is missed by the weight's 6000 draws with probability
    0.99^6000 ~ 1e-26, by the bias's 300 with 0.9^300 ~ 1e-14)."""
    ml.manual_seed(0)
    layer = nn.Linear(20, 300)
    bound = 1 / math.sqrt(20)
    for values, closeness in ((layer.weight.numpy(), 0.99), (layer.bias.numpy(), 0.9)):
        assert -bound <= values.min() < -closeness * bound
        assert closeness * bound < values.max() <= bound
    bias = nn.Linear(1, 300).bias.numpy()  # fan_in 1: U(-1, 1)
    assert -1 <= bias.min() < -0.9 and 0.9 < bias.max() <= 1


def test_init_defaults_and_means_are_pytorchs():
    """uniform_ defaults to U(0, 1), normal_ to N(0, 1), and the normal initialisers are centred
    (the mean of 120000 draws is within 0.01 std of 0 but for a ~1e-300 chance)."""
    ml.manual_seed(0)
    weight = nn.Parameter(ml.zeros(400, 300))
    values = nn.init.uniform_(weight).numpy()
    assert 0 <= values.min() < 0.001 and 0.999 < values.max() < 1
    assert abs(values.mean() - 0.5) < 0.01
    values = nn.init.normal_(weight).numpy()
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1) < 0.01
    assert (nn.init.ones_(weight).numpy() == 1).all()
    assert (nn.init.zeros_(weight).numpy() == 0).all()
    for fill in (nn.init.kaiming_normal_, nn.init.xavier_normal_):
        values = fill(weight).numpy()
        assert abs(values.mean()) < 0.1 * values.std()


def test_norm_layers_start_as_the_identity_affine_and_dropout_at_half_as_torchs():
    """LayerNorm's and GroupNorm's scale starts at ones and their shift at zeros; Dropout()
    drops half, as PyTorch's."""
    torch = pytest.importorskip("torch")
    for ours, theirs in ((nn.LayerNorm((2, 3)), torch.nn.LayerNorm((2, 3))),
                         (nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4))):
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for name, value in theirs.state_dict().items():
            numpy.testing.assert_array_equal(ours.state_dict()[name].numpy(), value.numpy())
    assert nn.Dropout().p == torch.nn.Dropout().p == 0.5


def test_init_refuses_an_empty_uniform_range_and_a_negative_std():
    """U(2, 1) and N(0, (-1)^2) were filled without a word; PyTorch refuses both. a == b and
    std == 0 are constants, allowed as in PyTorch."""
    weight = nn.Parameter(ml.zeros(3))
    with pytest.raises(ValueError, match="^uniform_ needs a <= b, got a=2, b=1$"):
        nn.init.uniform_(weight, 2, 1)
    with pytest.raises(ValueError, match="^normal_ needs std >= 0, got -1$"):
        nn.init.normal_(weight, std=-1)
    with pytest.raises(ValueError, match="^normal_ needs std >= 0, got nan$"):
        nn.init.normal_(weight, std=math.nan)
    assert (nn.init.uniform_(weight, 2, 2).numpy() == 2).all()
    assert (nn.init.normal_(weight, 3, 0).numpy() == 3).all()


@pytest.mark.parametrize("shape", [(3, 0), (0, 0), (2, 0, 3, 3)])
@pytest.mark.parametrize("fill", ["kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                                  "xavier_normal_"])
def test_a_tensor_with_no_elements_is_left_as_it_is(fill, shape):
    """Nothing to draw; a fan of 0 divided by zero (PyTorch: a no-op, with a warning)."""
    weight = nn.Parameter(ml.zeros(*shape))
    assert getattr(nn.init, fill)(weight) is weight and weight.shape == shape


@pytest.mark.parametrize("p", ["0.5", True, None])
def test_a_dropout_probability_that_is_no_number_is_named(p):
    with pytest.raises(ValueError, match=rf"^dropout probability must be a number in \[0, 1\], "
                                         rf"got {re.escape(repr(p))}$"):
        nn.Dropout(p)


def test_fans_need_two_dims():
    with pytest.raises(ValueError, match=r"at least 2 dims, got shape \(5,\)"):
        nn.init.kaiming_uniform_(nn.Parameter(ml.zeros(5)))


GAIN_CASES = [("linear", None, 1.0), ("conv2d", None, 1.0), ("conv_transpose2d", None, 1.0),
              ("sigmoid", None, 1.0), ("tanh", None, 5.0 / 3), ("relu", None, math.sqrt(2.0)),
              ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01 ** 2))),
              ("leaky_relu", 0.2, math.sqrt(2.0 / (1 + 0.2 ** 2))), ("selu", None, 0.75),
              ("leaky_relu", 0, math.sqrt(2.0)),
              ("conv1d", None, 1.0), ("conv3d", None, 1.0), ("conv_transpose1d", None, 1.0),
              ("conv_transpose3d", None, 1.0)]


@pytest.mark.parametrize("param", ["x", True])
def test_calculate_gain_names_a_leaky_relu_slope_that_is_no_number(param):
    """"x" failed in ``**`` with Python's TypeError; True counted as a slope of 1. PyTorch
    refuses both with a ValueError."""
    with pytest.raises(ValueError, match=rf"^leaky_relu's param \(negative_slope\) must be a "
                                         rf"number, got {re.escape(repr(param))}$"):
        nn.init.calculate_gain("leaky_relu", param)


@pytest.mark.parametrize("nonlinearity, param, documented", GAIN_CASES)
def test_calculate_gain_is_the_documented_value_and_torchs(nonlinearity, param, documented):
    """The recommended gains of PyTorch's init docs: 1 for linear/conv/sigmoid, 5/3 for tanh,
    sqrt 2 for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (slope 0.01 by default), 3/4 for
    selu (selu and the 1-D and 3-D convolutions were an "unknown nonlinearity")."""
    assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(documented, rel=1e-15)
    torch = pytest.importorskip("torch")
    expected = torch.nn.init.calculate_gain(nonlinearity, param)
    assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


def test_layer_constructor_errors():
    with pytest.raises(ValueError, match="num_channels=6 is not divisible by num_groups=4"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="GroupNorm activation must be one of .*, got 'relu'"):
        nn.GroupNorm(2, 6, activation="relu")
    with pytest.raises(TypeError, match="takes from 3 to 5 positional arguments but 6 were given"):
        nn.GroupNorm(2, 6, 1e-5, True, "cpu")  # PyTorch's fifth argument is the device
    with pytest.raises(ValueError, match="groups must divide in_channels=3, got 2"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="embed_dim=6 is not divisible by num_heads=4"):
        nn.MultiheadAttention(6, 4, batch_first=True)
    with pytest.raises(ValueError,
                       match="dropout probability must be a number in \\[0, 1\\], got 1.5"):
        nn.Dropout(1.5)
    # a zero-size weight's init would divide by its fan-in of 0; a float, by NumPy's words
    with pytest.raises(ValueError, match="^in_features must be an int >= 1, got 0$"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="^out_features must be an int >= 1, got 2.5$"):
        nn.Linear(3, 2.5)
    with pytest.raises(ValueError, match="^in_channels must be an int >= 1, got 0$"):
        nn.Conv2d(0, 3, 3)
    with pytest.raises(ValueError, match="^out_channels must be an int >= 1, got -1$"):
        nn.ConvTranspose2d(3, -1, 3)
    # num_groups or num_heads 0 divided by zero; -2 was taken and failed only at the forward
    with pytest.raises(ValueError, match="^num_groups must be an int >= 1, got 0$"):
        nn.GroupNorm(0, 4)
    with pytest.raises(ValueError, match="^num_groups must be an int >= 1, got -2$"):
        nn.GroupNorm(-2, 4)
    with pytest.raises(ValueError, match="^num_heads must be an int >= 1, got 0$"):
        nn.MultiheadAttention(4, 0, batch_first=True)
    with pytest.raises(ValueError, match="^num_heads must be an int >= 1, got -2$"):
        nn.MultiheadAttention(4, -2, batch_first=True)
    with pytest.raises(ValueError, match="^embed_dim must be an int >= 1, got 0$"):
        nn.MultiheadAttention(0, 1, batch_first=True)
    with pytest.raises(ValueError, match="^num_embeddings must be an int >= 1, got -1$"):
        nn.Embedding(-1, 3)
    # LayerNorm(-1) failed in NumPy's words, and without affine only at the first forward
    for shape, affine in ((-1, True), ((4, -2), True), (-1, False), (2.5, True), ((), True)):
        message = (f"normalized_shape must be an int >= 1 or a non-empty tuple of them, "
                   f"got {shape!r}")
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            nn.LayerNorm(shape, elementwise_affine=affine)
    # a bad eps was taken, and refused by the op at the first forward
    with pytest.raises(ValueError, match="^LayerNorm eps must be a finite number >= 0, got -1$"):
        nn.LayerNorm(4, eps=-1)
    with pytest.raises(ValueError, match="^GroupNorm eps must be a finite number >= 0, got None$"):
        nn.GroupNorm(2, 4, eps=None)
    # MultiheadAttention took any dropout and refused it at its first training step
    with pytest.raises(ValueError,
                       match="^dropout probability must be a number in \\[0, 1\\], got 2.0$"):
        nn.MultiheadAttention(4, 2, dropout=2.0, batch_first=True)


# --- gradients of the modules (float64, finite differences) --------------------------------

def _self_attention(module, x):
    output, _ = module(x, x, x)
    return output


@pytest.mark.parametrize("make, shape, call", [
    (lambda: nn.LayerNorm(5), (3, 5), nn.Module.__call__),
    (lambda: nn.GroupNorm(2, 4), (2, 4, 3, 3), nn.Module.__call__),
    (lambda: nn.MultiheadAttention(4, 2, batch_first=True), (2, 3, 4), _self_attention),
])
def test_module_gradients_match_finite_differences(make, shape, call):
    module = _double(make())
    for param in module.parameters():  # non-trivial affine weights
        param.data[...] = numpy.random.default_rng(0).standard_normal(param.shape)
    x = ml.randn(*shape, dtype=numpy.float64, requires_grad=True)
    params = list(module.parameters())

    assert gradcheck(lambda x, *_: call(module, x), [x, *params])


# --- each layer against PyTorch ------------------------------------------------------------

def _torch_pair(name):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class GroupNormSiLU(torch.nn.GroupNorm):  # GroupNorm(activation="silu") of minilean's
        def forward(self, input):
            return torch.nn.functional.silu(super().forward(input))

    pairs = {
        "linear": (nn.Linear(5, 3), torch.nn.Linear(5, 3), (4, 5)),
        "conv": (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
                 torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 7, 7)),
        "conv_transpose": (nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1),
                           torch.nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1), (2, 4, 5, 5)),
        # every option of the layers, each away from its default
        "conv_options": (nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2,
                                   bias=False),
                         torch.nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2,
                                         bias=False), (2, 4, 7, 7)),
        "conv_transpose_options": (
            nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                               dilation=2),
            torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                                     dilation=2), (2, 4, 5, 5)),
        "layer_norm": (nn.LayerNorm((3, 4)), torch.nn.LayerNorm((3, 4)), (2, 3, 4)),
        "group_norm": (nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4), (2, 4, 3, 3)),
        # an eps far from the default, which a layer could drop unnoticed
        "layer_norm_eps": (nn.LayerNorm((3, 4), eps=0.5), torch.nn.LayerNorm((3, 4), eps=0.5),
                           (2, 3, 4)),
        "group_norm_eps": (nn.GroupNorm(2, 4, eps=0.5), torch.nn.GroupNorm(2, 4, eps=0.5),
                           (2, 4, 3, 3)),
        # without the affine scale and shift: no parameters at all
        "layer_norm_plain": (nn.LayerNorm((3, 4), elementwise_affine=False),
                             torch.nn.LayerNorm((3, 4), elementwise_affine=False), (2, 3, 4)),
        "group_norm_plain": (nn.GroupNorm(2, 4, affine=False),
                             torch.nn.GroupNorm(2, 4, affine=False), (2, 4, 3, 3)),
        "group_norm_silu": (nn.GroupNorm(2, 4, activation="silu"), GroupNormSiLU(2, 4),
                            (2, 4, 3, 3)),
        "gelu_tanh": (nn.GELU("tanh"), torch.nn.GELU("tanh"), (3, 4)),
        "leaky_relu": (nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2), (3, 4)),
        "leaky_relu_default": (nn.LeakyReLU(), torch.nn.LeakyReLU(), (3, 4)),
        "softmax": (nn.Softmax(dim=0), torch.nn.Softmax(dim=0), (3, 4)),
        "identity": (nn.Identity(), torch.nn.Identity(), (3, 4)),
        "flatten": (nn.Flatten(), torch.nn.Flatten(), (2, 3, 2, 2)),
        "flatten_leading": (nn.Flatten(0, 1), torch.nn.Flatten(0, 1), (2, 3, 2, 2)),
        "sequential": (nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Sigmoid()),
                       torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
                                           torch.nn.Linear(8, 2), torch.nn.Sigmoid()), (3, 4)),
    }
    ours, theirs, shape = pairs[name]
    for param in theirs.parameters():  # move norm weights away from their 1/0 init
        torch.nn.init.normal_(param)
    return torch, _copy_from_torch(_double(ours), theirs.double()), theirs, shape


@pytest.mark.parametrize("name", ["linear", "conv", "conv_options", "conv_transpose",
                                  "conv_transpose_options", "layer_norm", "group_norm",
                                  "layer_norm_eps", "group_norm_eps", "layer_norm_plain",
                                  "group_norm_plain", "group_norm_silu", "gelu_tanh",
                                  "leaky_relu", "leaky_relu_default", "softmax", "identity",
                                  "flatten", "flatten_leading", "sequential"])
def test_layer_forward_and_backward_match_torch(name):
    torch, ours, theirs, shape = _torch_pair(name)
    x = numpy.random.default_rng(1).standard_normal(shape)
    mine = ml.tensor(x, requires_grad=True)
    reference = torch.tensor(x, requires_grad=True)
    out, expected = ours(mine), theirs(reference)
    numpy.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-6, atol=1e-10)
    out.sum().backward()
    expected.sum().backward()
    numpy.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-6, atol=1e-10)
    assert [name for name, _ in ours.named_parameters()] == \
        [name for name, _ in theirs.named_parameters()]
    for (param_name, param), (_, their_param) in zip(ours.named_parameters(),
                                                     theirs.named_parameters()):
        numpy.testing.assert_allclose(param.grad.numpy(), their_param.grad.numpy(), rtol=1e-6,
                                      atol=1e-10, err_msg=param_name)


@pytest.mark.parametrize("name, args", [("ReLU", ()), ("LeakyReLU", ()), ("LeakyReLU", (0.2,)),
                                        ("GELU", ()), ("Softmax", (1,)), ("Identity", ()),
                                        ("Flatten", ()), ("Flatten", (0, 2))])
def test_a_parameter_free_layer_prints_as_torchs(name, args):
    torch = pytest.importorskip("torch")
    assert repr(getattr(nn, name)(*args)) == repr(getattr(torch.nn, name)(*args))


@pytest.mark.parametrize("name, args, options", [
    ("Conv2d", (3, 4, 3), {}), ("Conv2d", (4, 4, (3, 2)), dict(groups=2, bias=False)),
    ("Conv2d", (3, 4, 3), dict(stride=2, padding=1, dilation=2)),
    ("ConvTranspose2d", (3, 4, 3), dict(stride=2)),
    ("ConvTranspose2d", (4, 4, 3), dict(stride=2, padding=1, output_padding=1, groups=2,
                                        dilation=2, bias=False))])
def test_a_conv_layer_prints_as_torchs(name, args, options):
    """PyTorch prints a conv layer's settings other than the stride only where they are not
    the default; every one was printed (``padding=(0, 0), dilation=(1, 1), groups=1,
    bias=True``), so a printed model read otherwise than PyTorch's print of it."""
    torch = pytest.importorskip("torch")
    assert repr(getattr(nn, name)(*args, **options)) == \
        repr(getattr(torch.nn, name)(*args, **options))


def test_embedding_matches_torch_and_accumulates_repeated_rows():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Embedding(6, 3).double()
    ours = _copy_from_torch(_double(nn.Embedding(6, 3)), theirs)
    indices = numpy.array([[1, 4, 1], [0, 5, 1]])
    out = ours(ml.tensor(indices))
    expected = theirs(torch.tensor(indices))
    numpy.testing.assert_allclose(out.numpy(), expected.detach().numpy())
    out.sum().backward()
    expected.sum().backward()
    numpy.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy())
    assert ours.weight.grad.numpy()[1, 0] == 3  # row 1 was used three times


@pytest.mark.parametrize("padding_idx", [1, -2])
def test_embedding_padding_row_starts_at_zeros_and_gets_no_gradient_as_torch(padding_idx):
    """``Embedding(n, d, padding_idx=...)``, PyTorch's padding token, was a TypeError: its row
    is zeros when built and its gradient is always 0 (a negative index counts from the end)."""
    torch = pytest.importorskip("torch")
    ours, theirs = nn.Embedding(6, 3, padding_idx=padding_idx), torch.nn.Embedding(
        6, 3, padding_idx=padding_idx)
    assert repr(ours) == repr(theirs) and ours.padding_idx == theirs.padding_idx
    numpy.testing.assert_array_equal(ours.weight.numpy()[ours.padding_idx], numpy.zeros(3))
    torch.nn.init.normal_(theirs.weight)  # a padding row that is not 0 is still picked
    theirs.double()
    _copy_from_torch(_double(ours), theirs)
    indices = numpy.array([[1, 4, 1], [0, 5, 1], [4, 4, 2]])
    out, expected = ours(ml.tensor(indices)), theirs(torch.tensor(indices))
    numpy.testing.assert_array_equal(out.numpy(), expected.detach().numpy())
    cotangent = numpy.random.default_rng(0).standard_normal(expected.shape)
    out.backward(ml.tensor(cotangent))
    expected.backward(torch.tensor(cotangent))
    numpy.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(),
                                  rtol=1e-12)
    numpy.testing.assert_array_equal(ours.weight.grad.numpy()[ours.padding_idx], numpy.zeros(3))


def test_embedding_gradient_beside_the_padding_row_matches_finite_differences():
    """The rows other than the padding row get their true gradient (float64, every element):
    the padding row is held constant here, as its gradient is 0 by design, not by calculus."""
    indices = ml.tensor(numpy.array([[0, 2, 2], [3, 1, 2]]))
    padding_row = ml.tensor(numpy.random.default_rng(0).standard_normal((1, 4)))

    def picked(others):  # the table with the constant padding row put back as row 2
        table = ml.cat([others[:2], padding_row, others[2:]])
        return nn.functional.embedding(indices, table, padding_idx=2) ** 2

    others = ml.tensor(numpy.random.default_rng(1).standard_normal((3, 4)), requires_grad=True)
    assert gradcheck(picked, [others])


def test_embedding_from_pretrained_shares_the_table_and_freezes_it_as_torch():
    """``Embedding.from_pretrained``, PyTorch's, did not exist: the layer holds the given
    table (memory shared, dtype and padding row kept), frozen unless ``freeze=False``."""
    torch = pytest.importorskip("torch")
    table = numpy.arange(12.0).reshape(4, 3)
    ours = nn.Embedding.from_pretrained(table, padding_idx=-1)
    theirs = torch.nn.Embedding.from_pretrained(torch.tensor(table), padding_idx=-1)
    assert repr(ours) == repr(theirs) and ours.padding_idx == 3
    assert numpy.shares_memory(ours.weight.data, table) and ours.weight.dtype == numpy.float64
    assert isinstance(ours.weight, nn.Parameter) and not ours.weight.requires_grad
    assert list(ours.parameters()) == [ours.weight]
    numpy.testing.assert_array_equal(ours(ml.tensor([3, 0])).numpy(), table[[3, 0]])
    trained = nn.Embedding.from_pretrained(ml.tensor(table), freeze=False)
    assert trained.weight.requires_grad and trained.padding_idx is None
    trained(ml.tensor([1, 1])).sum().backward()
    numpy.testing.assert_array_equal(trained.weight.grad.numpy()[1], [2.0, 2.0, 2.0])


def test_embedding_from_pretrained_runs_a_subclass_init_as_torch():
    """``from_pretrained`` builds through ``__init__`` (PyTorch's ``_weight``/``_freeze``), so
    what a subclass's ``__init__`` sets exists; a table of the wrong shape is refused."""
    class Tagged(nn.Embedding):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.tag = "set by __init__"

    table = numpy.arange(6.0).reshape(3, 2)
    layer = Tagged.from_pretrained(table, freeze=False)
    assert type(layer) is Tagged and layer.tag == "set by __init__"
    assert numpy.shares_memory(layer.weight.data, table) and layer.weight.requires_grad
    with pytest.raises(ValueError) as raised:
        nn.Embedding(2, 2, _weight=table)
    assert str(raised.value) == ("_weight must have shape (2, 2) (num_embeddings, "
                                 "embedding_dim), got shape (3, 2)")


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_embedding_from_pretrained_takes_an_empty_table_as_torch(shape):
    """A given table is held, not initialised, so an empty one is taken, as PyTorch takes it
    (only a table to draw, ``nn.Embedding(0, 3)``, is refused); it was refused as "must be an
    int >= 1" once from_pretrained went through ``__init__``."""
    table = numpy.zeros(shape, dtype=numpy.float32)
    layer = nn.Embedding.from_pretrained(table)
    assert layer.weight.shape == shape and (layer.num_embeddings, layer.embedding_dim) == shape
    assert not layer.weight.requires_grad and layer(ml.tensor([], dtype=ml.int64)).shape == (
        0, shape[1])


@pytest.mark.parametrize("call, error, message", [
    (lambda: nn.Embedding(5, 3, padding_idx=5), ValueError,
     "padding_idx must be None or an int in [-5, 5) for 5 embeddings, got 5"),
    (lambda: nn.Embedding(5, 3, padding_idx=-6), ValueError,
     "padding_idx must be None or an int in [-5, 5) for 5 embeddings, got -6"),
    (lambda: nn.functional.embedding(ml.tensor([0]), ml.ones(3, 2), padding_idx=1.0), ValueError,
     "padding_idx must be None or an int in [-3, 3) for 3 embeddings, got 1.0"),
    (lambda: nn.Embedding.from_pretrained(numpy.ones(3)), ValueError,
     "from_pretrained needs embeddings of shape (num_embeddings, embedding_dim), got shape (3,)"),
    (lambda: nn.Embedding.from_pretrained(numpy.ones((3, 2)), freeze="false"), TypeError,
     "freeze must be a bool, got 'false'"),
])
def test_embedding_padding_idx_and_from_pretrained_errors_are_one_line(call, error, message):
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value) == message


def _attention_masks(kind, rng):
    """An attention mask of ``kind`` for 2 samples, 2 heads, 3 queries and 5 keys: boolean
    ones (True = may NOT attend) leave every query a key (key 0); ``padding`` masks are
    key_padding_masks (N, S)."""
    return {None: None,
            "bool": rng.random((3, 5)) < 0.3 * (numpy.arange(5) > 0),
            "float": rng.standard_normal((2 * 2, 3, 5)),
            "bool padding": numpy.array([[False, False, True, True, True],
                                         [False, True, False, False, True]]),
            "float padding": rng.standard_normal((2, 5))}[kind]


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("mask_kind, padding_kind", [
    (None, None), ("bool", None), ("float", None), (None, "bool padding"),
    ("bool", "bool padding"), ("float", "float padding"), ("float", "bool padding"),
])
def test_multihead_attention_matches_torch(mask_kind, padding_kind):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    ours = _copy_from_torch(_double(nn.MultiheadAttention(8, 2, batch_first=True)), theirs)
    rng = numpy.random.default_rng(2)
    query, key = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 5, 8))
    mask, padding = _attention_masks(mask_kind, rng), _attention_masks(padding_kind, rng)
    ours_in = [ml.tensor(array, requires_grad=True) for array in (query, key)]
    theirs_in = [torch.tensor(array, requires_grad=True) for array in (query, key)]
    out, weights = ours(*ours_in, ours_in[1], attn_mask=None if mask is None else ml.tensor(mask),
                        key_padding_mask=None if padding is None else ml.tensor(padding))
    expected, expected_weights = theirs(
        *theirs_in, theirs_in[1], attn_mask=None if mask is None else torch.tensor(mask),
        key_padding_mask=None if padding is None else torch.tensor(padding))
    numpy.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-6, atol=1e-10)
    numpy.testing.assert_allclose(weights.numpy(), expected_weights.detach().numpy(),
                                  rtol=1e-6, atol=1e-10)
    out.sum().backward()
    expected.sum().backward()
    for mine, reference in zip(ours_in, theirs_in):
        numpy.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-6,
                                      atol=1e-10)


@pytest.mark.parametrize("bias", [True, False])
def test_multihead_attention_biases_and_need_weights_as_torch(bias):
    """The projection biases (zero at init, so the test above cannot see them) shift the
    output as PyTorch's do; without bias there are none; need_weights=False gives no weights."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2, bias=bias, batch_first=True).double()
    for param in theirs.parameters():
        torch.nn.init.normal_(param)
    ours = _copy_from_torch(_double(nn.MultiheadAttention(8, 2, bias=bias, batch_first=True)),
                            theirs)
    assert [name for name, _ in ours.named_parameters()] == [
        name for name, _ in theirs.named_parameters()]
    rng = numpy.random.default_rng(4)
    query, key = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 5, 8))
    out, weights = ours(ml.tensor(query), ml.tensor(key), ml.tensor(key), need_weights=False)
    expected, _ = theirs(torch.tensor(query), torch.tensor(key), torch.tensor(key))
    assert weights is None
    numpy.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-6, atol=1e-10)


def test_multihead_attention_takes_its_masks_as_arrays_as_tensors():
    """A (N * num_heads, L, S) mask given as an array is split as the tensor's: sample by
    sample, each sample's heads together."""
    ours = _double(nn.MultiheadAttention(8, 2, batch_first=True))
    rng = numpy.random.default_rng(2)
    query, key = (ml.tensor(rng.standard_normal(shape)) for shape in ((2, 3, 8), (2, 5, 8)))
    for mask in (rng.standard_normal((2 * 2, 3, 5)), rng.random((2 * 2, 3, 5)) < 0.5):
        mask[..., 0] = 0  # a key for every query
        from_array = ours(query, key, key, attn_mask=mask, average_attn_weights=False)
        from_tensor = ours(query, key, key, attn_mask=ml.tensor(mask), average_attn_weights=False)
        for mine, reference in zip(from_array, from_tensor):
            numpy.testing.assert_array_equal(mine.numpy(), reference.numpy())


def test_multihead_attention_gives_a_sample_with_every_key_padded_no_weights():
    """With a float attn_mask beside it, a boolean key_padding_mask blocks its keys by -inf:
    a sample whose every key is padding attends to none (weights 0, as in
    scaled_dot_product_attention), not to all of them alike."""
    ours = _double(nn.MultiheadAttention(8, 2, batch_first=True))
    rng = numpy.random.default_rng(3)
    query, key = (ml.tensor(rng.standard_normal(shape)) for shape in ((2, 3, 8), (2, 5, 8)))
    padding = numpy.array([[True] * 5, [False] * 5])
    _, weights = ours(query, key, key, attn_mask=rng.standard_normal((3, 5)),
                      key_padding_mask=padding)
    assert (weights.numpy()[0] == 0).all()
    numpy.testing.assert_allclose(weights.numpy()[1].sum(axis=-1), 1.0)


def test_multihead_attention_drops_weights_in_training_only_and_returns_them_dropped():
    """As PyTorch's: the weights returned are those the output used, after dropout in
    training (each 0 or twice its value for p = 0.5); after eval() nothing is dropped."""
    ml.manual_seed(0)
    attention = _double(nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True))
    rng = numpy.random.default_rng(5)
    query = ml.tensor(rng.standard_normal((2, 6, 8)))
    attention.eval()
    evaluated = attention(query, query, query, average_attn_weights=False)
    numpy.testing.assert_allclose(evaluated[1].numpy().sum(axis=-1), 1.0)
    attention.dropout = 0.0
    for mine, reference in zip(evaluated, attention(query, query, query,
                                                    average_attn_weights=False)):
        numpy.testing.assert_array_equal(mine.numpy(), reference.numpy())
    attention.dropout = 0.5
    attention.train()
    _, dropped = attention(query, query, query, average_attn_weights=False)
    dropped, kept = dropped.numpy(), evaluated[1].numpy()
    assert (dropped == 0).any() and (dropped != 0).any()
    numpy.testing.assert_allclose(dropped[dropped != 0], 2 * kept[dropped != 0])


def test_multihead_attention_starts_as_pytorchs_init():
    """xavier_uniform in_proj_weight (bound sqrt(6 / (E + 3E))), zero biases."""
    ml.manual_seed(0)
    attention = nn.MultiheadAttention(8, 2)
    bound = math.sqrt(6 / (8 + 3 * 8))
    weight = attention.in_proj_weight.numpy()
    assert -bound <= weight.min() < -0.9 * bound and 0.9 * bound < weight.max() <= bound
    assert (attention.in_proj_bias.numpy() == 0).all()
    assert (attention.out_proj.bias.numpy() == 0).all()


def test_multihead_attention_reads_pytorchs_default_layout_as_pytorch_does():
    """PyTorch's MultiheadAttention(E, H) reads (sequence, batch, E): a call ported from it
    must attend along the sequence, not across the batch. batch_first is keyword-only
    (PyTorch's fifth positional argument is add_bias_kv)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(8, 2).double()
    ours = _copy_from_torch(_double(nn.MultiheadAttention(8, 2)), theirs)
    rng = numpy.random.default_rng(3)
    query, key = rng.standard_normal((3, 2, 8)), rng.standard_normal((5, 2, 8))  # (L, N, E)
    ours_in = [ml.tensor(array, requires_grad=True) for array in (query, key)]
    theirs_in = [torch.tensor(array, requires_grad=True) for array in (query, key)]
    out, weights = ours(*ours_in, ours_in[1])
    expected, expected_weights = theirs(*theirs_in, theirs_in[1])
    assert out.shape == (3, 2, 8) and weights.shape == (2, 3, 5)
    numpy.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-6, atol=1e-10)
    numpy.testing.assert_allclose(weights.numpy(), expected_weights.detach().numpy(),
                                  rtol=1e-6, atol=1e-10)
    (out * out).sum().backward()
    (expected * expected).sum().backward()
    for mine, reference in zip(ours_in, theirs_in):
        numpy.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-6,
                                      atol=1e-10)
    with pytest.raises(TypeError, match="positional argument"):  # PyTorch's add_bias_kv
        nn.MultiheadAttention(4, 2, 0.0, True, True)


@pytest.mark.parametrize("batch_first, layout", [(False, "L, batch, E"), (True, "batch, L, E")])
def test_multihead_attention_refuses_inputs_that_are_not_3d_naming_its_layout(batch_first,
                                                                            layout):
    """PyTorch also takes an unbatched (L, E) input; here it failed in words about unpacking,
    or (a 2-D key with a 3-D query) about a linear layer's shapes, its axes swapped."""
    attention = nn.MultiheadAttention(4, 2, batch_first=batch_first)
    x, batched = ml.randn(3, 4), ml.randn(3, 2, 4)
    for query, key, name in ((x, x, "query"), (batched, x, "key")):
        with pytest.raises(ValueError, match=rf"^MultiheadAttention: {name} must be 3-D, "
                                             rf"\({layout}\), got shape \(3, 4\)$"):
            attention(query, key, key)


def test_multihead_attention_masks_are_keyword_only_and_padding_is_checked():
    """PyTorch's fourth positional argument is key_padding_mask: a mask passed there as
    attn_mask could fit (an (N, S) padding mask is an (L, S) mask where N == L)."""
    attention = nn.MultiheadAttention(4, 2, batch_first=True)
    x = ml.randn(3, 3, 4)
    with pytest.raises(TypeError):
        attention(x, x, x, numpy.zeros((3, 3), dtype=bool))
    with pytest.raises(ValueError, match=r"^key_padding_mask must have shape \(batch, S\) = "
                                         r"\(3, 3\), got \(3, 4\)$"):
        attention(x, x, x, key_padding_mask=numpy.zeros((3, 4), dtype=bool))


@pytest.mark.parametrize("mask_shape", [(3, 5), (2 * 2, 3, 5)])
def test_multihead_attention_gives_a_learned_float_mask_its_gradient(mask_shape):
    """A float attn_mask tensor is an input of the graph, in both of its shapes, as it is
    through scaled_dot_product_attention (a relative-position bias is trained through it)."""
    attention = _double(nn.MultiheadAttention(4, 2, batch_first=True))
    rng = numpy.random.default_rng(3)
    query = ml.tensor(rng.standard_normal((2, 3, 4)))
    key = ml.tensor(rng.standard_normal((2, 5, 4)))
    bias = ml.tensor(rng.standard_normal(mask_shape), requires_grad=True)
    assert gradcheck(lambda b: attention(query, key, key, attn_mask=b)[0], [bias])
    assert bias.grad.shape == mask_shape and (bias.grad.numpy() != 0).any()


def test_multihead_attention_bool_mask_blocks_keys_given_as_array_or_tensor():
    """True = may NOT attend (this module's convention); the weights of blocked keys are 0."""
    attention = nn.MultiheadAttention(4, 2, batch_first=True)
    x = ml.randn(2, 3, 4)
    blocked = numpy.array([[False, True, False], [False, False, True], [True, True, False]])
    outputs = []
    for mask in (blocked, ml.tensor(blocked)):
        out, weights = attention(x, x, x, attn_mask=mask, average_attn_weights=False)
        assert (weights.numpy()[..., blocked] == 0).all()
        numpy.testing.assert_allclose(weights.numpy().sum(-1), 1, rtol=1e-6)
        outputs.append(out.numpy())
    numpy.testing.assert_array_equal(*outputs)


def test_deepcopy_gives_an_independent_module():
    import copy
    model = Block()
    twin = copy.deepcopy(model)
    twin.head.weight.data[...] = 0.0
    assert twin.head.weight is not model.head.weight and (model.head.weight.numpy() != 0).any()
    assert [name for name, _ in twin.named_parameters()] == [name for name, _ in model.named_parameters()]
