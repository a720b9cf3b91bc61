"""Optimizers, clipping, EMA and schedules: against hand-computed references (always) and
against torch.optim on the same parameters and gradients (when torch is installed)."""
import copy
import math
import re

import numpy
import pytest

import minilean as ml
from minilean import nn, optim

SHAPES = [(3, 4), (4,), (2, 2, 2)]


def _draw_trajectory(rng):
    """Five steps of gradients and the parameters they start from, drawn once at import and
    shared by the tests that compare optimizers on them."""
    gradient_steps = [[rng.standard_normal(shape) for shape in SHAPES] for _ in range(5)]
    return gradient_steps, [rng.standard_normal(shape) for shape in SHAPES]


GRADIENT_STEPS, START = _draw_trajectory(numpy.random.default_rng(0))


def _run_ours(make, steps=GRADIENT_STEPS):
    params = [nn.Parameter(ml.tensor(value.copy())) for value in START]
    optimizer = make(params)
    for grads in steps:
        for param, grad in zip(params, grads):
            param.grad = ml.tensor(grad)
        optimizer.step()
    return params, optimizer


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.3)),
    # no settings: PyTorch's defaults (lr 1e-3 for all three, AdamW's weight decay 0.01)
    ("SGD", {}),
    ("Adam", {}),
    ("AdamW", {}),
    ("Adam", dict(lr=0.01, betas=(0.0, 0.0))),  # betas in [0, 1): 0 is allowed, as in PyTorch
]


@pytest.mark.parametrize("name, settings", CONFIGS)
def test_optimizers_match_torch(name, settings):
    torch = pytest.importorskip("torch")
    params, _ = _run_ours(lambda p: getattr(optim, name)(p, **settings))
    theirs = [torch.tensor(value, requires_grad=True) for value in START]
    optimizer = getattr(torch.optim, name)(theirs, **settings)
    for grads in GRADIENT_STEPS:
        for param, grad in zip(theirs, grads):
            param.grad = torch.tensor(grad)
        optimizer.step()
    for mine, reference in zip(params, theirs):
        numpy.testing.assert_allclose(mine.numpy(), reference.detach().numpy(), rtol=1e-10,
                                      atol=1e-12)


@pytest.mark.parametrize("name, settings", [CONFIGS[1], CONFIGS[4], CONFIGS[6]])
def test_lr_set_through_param_groups_changes_the_step_as_torch(name, settings):
    """``for group in optimizer.param_groups: group["lr"] = ...`` (how PyTorch code sets the
    rate by hand) was an AttributeError: minilean's optimizers had no param_groups."""
    torch = pytest.importorskip("torch")
    results = []
    for library in (ml, torch):
        params = [library.tensor(value.copy(), requires_grad=True) for value in START]
        optimizer = getattr(library.optim, name)(params, **settings)
        for step, grads in enumerate(GRADIENT_STEPS):
            if step == 2:
                for group in optimizer.param_groups:
                    group["lr"] = settings["lr"] / 4
            for param, grad in zip(params, grads):
                param.grad = library.tensor(grad)
            optimizer.step()
        results.append([param.detach().numpy() for param in params])
    for mine, reference in zip(*results):
        numpy.testing.assert_allclose(mine, reference, rtol=1e-10, atol=1e-12)


def test_param_groups_hold_the_one_setting_that_lr_and_the_scheduler_change():
    params = [nn.Parameter(ml.ones(2)), nn.Parameter(ml.ones(3))]
    optimizer = optim.AdamW(params, lr=0.1, betas=(0.5, 0.9))
    (group,) = optimizer.param_groups
    assert group["params"] == params
    assert {key: group[key] for key in ("lr", "betas", "eps", "weight_decay")} == {
        "lr": 0.1, "betas": (0.5, 0.9), "eps": 1e-8, "weight_decay": 0.01}
    group["lr"] = 0.4  # before the scheduler: its base rate, as PyTorch's LambdaLR takes it
    assert optimizer.lr == 0.4 and optimizer.state_dict()["hyperparameters"]["lr"] == 0.4
    scheduler = optim.LambdaLR(optimizer, lambda step: 1 / (step + 1))
    scheduler.step()
    assert group["lr"] == optimizer.lr == 0.2 and scheduler.get_last_lr() == [0.2]
    optimizer.lr = 0.3
    assert group["lr"] == 0.3


def test_parameter_groups_given_as_dicts_are_refused_by_name():
    model = nn.Linear(2, 1)
    groups = [{"params": [model.weight]}, {"params": [model.bias], "lr": 0.0}]
    with pytest.raises(TypeError, match=r"^SGD takes one list of parameters, got a parameter "
                                        r"group \(dict\) at 0: groups with their own "
                                        r"hyperparameters are not supported"):
        optim.SGD(groups, lr=0.1)


def _scalar_run(make, grads):
    param = nn.Parameter(ml.tensor([1.0], dtype=numpy.float64))
    optimizer = make([param])
    for grad in grads:
        param.grad = ml.tensor([grad], dtype=numpy.float64)
        optimizer.step()
    return param.item()


def test_sgd_momentum_and_nesterov_by_hand():
    # p0 = 1, g = 1 each step, lr = 0.1, momentum 0.9:
    # plain momentum: b1 = 1, p1 = 0.9; b2 = 0.9 * 1 + 1 = 1.9, p2 = 0.9 - 0.19 = 0.71
    assert _scalar_run(lambda p: optim.SGD(p, lr=0.1, momentum=0.9), [1.0, 1.0]) == pytest.approx(0.71)
    # Nesterov: d1 = 1 + 0.9 * 1 = 1.9, p1 = 0.81; d2 = 1 + 0.9 * 1.9 = 2.71, p2 = 0.539
    assert _scalar_run(lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                       [1.0, 1.0]) == pytest.approx(0.539)
    # weight decay 0.5 adds 0.5 * p to g: p1 = 1 - 0.1 * (2 + 0.5) = 0.75
    assert _scalar_run(lambda p: optim.SGD(p, lr=0.1, weight_decay=0.5), [2.0]) == pytest.approx(0.75)


def test_sgd_momentum_set_after_construction_starts_from_the_first_gradient():
    """optimizer.momentum = 0.9 after SGD(p, lr) failed at the step (no buffers were made)."""
    def set_later(params):
        optimizer = optim.SGD(params, lr=0.1)
        optimizer.momentum = 0.9
        return optimizer
    assert _scalar_run(set_later, [1.0, 1.0]) == pytest.approx(0.71)  # as built with it


def _sgd_momentum_set_later(params):
    optimizer = optim.SGD(params, lr=0.1)
    optimizer.momentum = 0.9
    return optimizer


@pytest.mark.parametrize("save_with, load_into", [
    (_sgd_momentum_set_later, lambda params: optim.SGD(params, lr=0.1)),
    (lambda params: optim.SGD(params, lr=0.1), lambda params: optim.SGD(params, lr=0.1,
                                                                         momentum=0.9))],
    ids=["momentum-set-after-construction", "saved-without-momentum"])
def test_sgd_state_resumes_with_its_own_momentum_and_buffers_as_torch(save_with, load_into):
    """A state saved with momentum set after construction (its buffers made at a step) was
    refused by an SGD built as the saving one was: "optimizer state has keys
    ['momentum_buffer'], SGD expects []". Its momentum and buffers (or none) come with it,
    as in PyTorch, and the resumed steps are the uninterrupted run's."""
    whole, saving = _run_ours(save_with)
    first, optimizer = _run_ours(save_with, GRADIENT_STEPS[:3])
    copy = [nn.Parameter(ml.tensor(param.numpy())) for param in first]
    resumed = load_into(copy)
    resumed.load_state_dict(optimizer.state_dict())
    assert resumed.momentum == saving.momentum
    for grads in GRADIENT_STEPS[3:]:
        for param, grad in zip(copy, grads):
            param.grad = ml.tensor(grad)
        resumed.step()
    for a, b in zip(whole, copy):
        numpy.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_refused_sgd_state_leaves_its_momentum_buffers_as_they_were():
    params = [nn.Parameter(ml.ones(2))]
    optimizer = optim.SGD(params, lr=0.1)
    state = {"step": 1, "hyperparameters": {"momentum": 0.9},
             "state": {"momentum_buffer": [numpy.ones(3)]}}  # of another shape
    with pytest.raises(ValueError, match="momentum_buffer/0"):
        optimizer.load_state_dict(state)
    assert optimizer.momentum == 0 and optimizer.state == {} and optimizer.step_count == 0


def test_sgd_refuses_pytorch_positional_dampening():
    """PyTorch's SGD(params, lr, momentum, dampening, weight_decay, nesterov): a ported
    SGD(p, 0.1, 0.9, 0.5) must not read the dampening as nesterov."""
    with pytest.raises(TypeError, match="positional arguments but 5 were given"):
        optim.SGD([nn.Parameter(ml.ones(1))], 0.1, 0.9, 0.5)


def _adam_by_hand(grads, lr, beta1, beta2, eps, weight_decay, decoupled):
    """Algorithm 1 of Kingma & Ba, one scalar, written out independently of adam_update."""
    p, m, v = 1.0, 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p - lr * weight_decay * p
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
    return p


@pytest.mark.parametrize("cls, decoupled", [(optim.Adam, False), (optim.AdamW, True)])
def test_adam_by_hand(cls, decoupled):
    grads = [0.5, -1.5, 2.0, 0.1]
    settings = dict(lr=0.1, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.2)
    expected = _adam_by_hand(grads, 0.1, 0.8, 0.95, 1e-3, 0.2, decoupled)
    assert _scalar_run(lambda p: cls(p, **settings), grads) == pytest.approx(expected, rel=1e-12)
    # the first Adam step moves by about lr in the direction of -sign(g), whatever |g|
    first = _scalar_run(lambda p: optim.Adam(p, lr=0.1), [1e3])
    assert first == pytest.approx(0.9, rel=1e-6)



@pytest.mark.parametrize("cls, decoupled", [(optim.Adam, False), (optim.AdamW, True)])
def test_adam_keeps_stepping_after_a_gradient_whose_square_overflows(cls, decoupled):
    """A float32 gradient of 2e19 has a square past float32's largest number; (1 - beta2) g^2
    does not. Squared first, the second moment became inf and the parameter never moved again
    (it stayed at 1.0 through every later step); PyTorch and the fused kernel step on."""
    grads = [2e19, 1.0, -1.0]
    param = nn.Parameter(ml.tensor([1.0]))  # float32
    optimizer = cls([param], lr=0.1, weight_decay=0.0)
    for grad in grads:
        param.grad = ml.tensor([grad])
        optimizer.step()
    expected = _adam_by_hand(grads, 0.1, 0.9, 0.999, 1e-8, 0.0, decoupled)
    assert param.item() == pytest.approx(expected, rel=1e-6)
    assert numpy.isfinite(optimizer.state_dict()["state"]["exp_avg_sq"][0]).all()

@pytest.mark.parametrize("name, settings", [("Adam", dict(lr=0.01)),
                                            ("SGD", dict(lr=0.1, momentum=0.9))])
def test_optimizer_and_ema_made_before_a_cast_to_float64_follow_it_as_torch(name, settings):
    """``model.to(float64)`` after building the optimizer kept its moments in float32, so the
    float64 run drifted from PyTorch's (whose state, made at the first step, is float64)."""
    torch = pytest.importorskip("torch")
    model = nn.Linear(4, 3)
    optimizer, ema = getattr(optim, name)(model.parameters(), **settings), optim.EMA(model)
    model.to(numpy.float64)
    theirs = [torch.tensor(param.numpy(), requires_grad=True) for param in model.parameters()]
    their_optimizer = getattr(torch.optim, name)(theirs, **settings)
    rng = numpy.random.default_rng(1)
    for _ in range(3):
        for param, their_param in zip(model.parameters(), theirs):
            grad = rng.standard_normal(param.shape)
            param.grad, their_param.grad = ml.tensor(grad, dtype="float64"), torch.tensor(grad)
        optimizer.step()
        their_optimizer.step()
        ema.update(model)
    for ours, expected in zip(model.parameters(), theirs):
        numpy.testing.assert_allclose(ours.numpy(), expected.detach().numpy(), rtol=1e-13)
    assert {array.dtype for arrays in optimizer.state.values() for array in arrays} == \
        {numpy.dtype("float64")}
    assert {average.dtype for average in ema.shadow.values()} == {numpy.dtype("float64")}


@pytest.mark.parametrize("name, settings", [("Adam", dict(lr=0.01)),
                                            ("SGD", dict(lr=0.1, momentum=0.9))])
def test_float64_state_loaded_before_the_first_step_after_a_cast_keeps_its_digits(name,
                                                                                    settings):
    """An optimizer and an EMA made before ``model.to(float64)`` copied a loaded float64 state
    into their float32 arrays, rounding the moments and averages before they followed the
    weights: the resumed run drifted from the uninterrupted one by 1e-8 (PyTorch casts loaded
    state to each parameter's dtype)."""
    def make():
        model = nn.Linear(4, 3)
        optimizer, ema = getattr(optim, name)(model.parameters(), **settings), optim.EMA(model)
        return model.to(numpy.float64), optimizer, ema

    def train(model, optimizer, ema, steps):
        for step in steps:
            rng = numpy.random.default_rng(step)
            for param in model.parameters():
                param.grad = ml.tensor(rng.standard_normal(param.shape), dtype="float64")
            optimizer.step()
            ema.update(model)

    model, optimizer, ema = make()
    train(model, optimizer, ema, range(3))
    # a copy, as a checkpoint holds (a state_dict shares the live arrays)
    saved = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "ema": ema.state_dict()})
    resumed, resumed_optimizer, resumed_ema = make()
    resumed.load_state_dict(saved["model"])
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed_ema.load_state_dict(saved["ema"])
    for state_name, arrays in saved["optimizer"]["state"].items():
        for loaded, expected in zip(resumed_optimizer.state_dict()["state"][state_name], arrays):
            assert loaded.dtype == numpy.float64
            numpy.testing.assert_array_equal(loaded, expected)
    with resumed_ema.average_parameters(resumed):
        for param_name, param in resumed.named_parameters():
            numpy.testing.assert_array_equal(param.numpy(), saved["ema"]["shadow"][param_name])
    train(model, optimizer, ema, range(3, 5))
    train(resumed, resumed_optimizer, resumed_ema, range(3, 5))
    for ours, expected in zip(resumed.parameters(), model.parameters()):
        numpy.testing.assert_array_equal(ours.numpy(), expected.numpy())
    for param_name, average in resumed_ema.shadow.items():
        assert average.dtype == numpy.float64
        numpy.testing.assert_array_equal(average, ema.shadow[param_name])


def test_a_grad_set_by_hand_of_another_shape_dtype_or_device_is_refused(monkeypatch):
    """Adam broadcast a (1,) gradient over a (3, 4) weight and stepped; as PyTorch does, the
    assignment itself refuses a gradient that does not fit, and leaves .grad as it was."""
    import fake_cupy
    fake_cupy.install(monkeypatch)
    try:
        weight = nn.Parameter(ml.ones(3, 4))
        optimizer = optim.Adam([weight], lr=0.1)
        expected = r"; expected the tensor's: shape \(3, 4\), dtype float32, device 'cpu'$"
        for grad, found in ((ml.ones(1), r"shape \(1,\), dtype float32, device 'cpu'"),
                            (ml.ones(3, 4, dtype="float64"), "dtype float64, device 'cpu'"),
                            (ml.ones(3, 4, device="cuda"), "dtype float32, device 'cuda'")):
            with pytest.raises(ValueError, match=f"^assigned grad has .*{found}{expected}"):
                weight.grad = grad
            assert weight.grad is None
        with pytest.raises(TypeError, match="^assigned grad must be a Tensor or None, got "
                                            "ndarray$"):
            weight.grad = numpy.ones((3, 4), numpy.float32)
        optimizer.step()
        numpy.testing.assert_array_equal(weight.numpy(), 1.0)  # no gradient: no step
        fitting = ml.ones(3, 4)
        weight.grad = fitting
        assert weight.grad is fitting
        weight.grad = None
        assert weight.grad is None
    finally:
        fake_cupy.forget_device_state()


def test_parameters_without_gradient_are_left_alone():
    moving = nn.Parameter(ml.ones(2))
    frozen = nn.Parameter(ml.ones(2))
    optimizer = optim.Adam([moving, frozen], lr=0.1)
    moving.grad = ml.ones(2)
    optimizer.step()
    assert (frozen.numpy() == 1).all() and (moving.numpy() < 1).all()
    optimizer.zero_grad()
    assert moving.grad is None


@pytest.mark.parametrize("set_to_none", [True, False])
@pytest.mark.parametrize("zero_grad_of", ["optimizer", "module"])
def test_zero_grad_set_to_none_false_keeps_zeros_that_still_take_a_step_as_torch(set_to_none,
                                                                                 zero_grad_of):
    """``optimizer.zero_grad(set_to_none=True)`` (a common PyTorch line) was a TypeError.
    Zeroed, not emptied, gradients still step the parameters: momentum carries on."""
    torch = pytest.importorskip("torch")
    results = []
    for library in (ml, torch):
        model = library.nn.Linear(3, 1)
        model.load_state_dict({"weight": library.tensor([[0.5, -1.0, 2.0]]),
                               "bias": library.tensor([0.3])})
        optimizer = library.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        cleared = optimizer if zero_grad_of == "optimizer" else model
        cleared.zero_grad(set_to_none=set_to_none)  # no gradient yet: none made, as in torch
        assert all(param.grad is None for param in model.parameters())
        model(library.ones(2, 3)).sum().backward()
        optimizer.step()
        cleared.zero_grad(set_to_none=set_to_none)
        results.append([param.grad for param in model.parameters()])
        optimizer.step()  # on zero gradients, or on none
        results.append([param.detach().numpy().copy() for param in model.parameters()])
    (ours_grads, ours), (their_grads, theirs) = results[:2], results[2:]
    for grad, their_grad in zip(ours_grads, their_grads):
        assert (grad is None) == (their_grad is None)
        if grad is not None:
            numpy.testing.assert_array_equal(grad.numpy(), their_grad.numpy())
    for mine, reference in zip(ours, theirs):
        numpy.testing.assert_allclose(mine, reference, rtol=1e-6)


@pytest.mark.parametrize("zero_grad_of", ["optimizer", "module"])
def test_zero_grad_set_to_none_false_zeroes_the_held_gradient_in_place_as_torch(zero_grad_of):
    """``zero_grad(set_to_none=False)`` put new zero gradients in place of the old ones, so a
    gradient held from before kept its values; PyTorch zeroes the gradient there in place."""
    torch = pytest.importorskip("torch")
    for library in (ml, torch):
        model = library.nn.Linear(3, 1)
        optimizer = library.optim.SGD(model.parameters(), lr=0.1)
        model(library.ones(2, 3)).sum().backward()
        held = [param.grad for param in model.parameters()]
        arrays = [grad.data for grad in held]
        (optimizer if zero_grad_of == "optimizer" else model).zero_grad(set_to_none=False)
        assert all(param.grad is grad for param, grad in zip(model.parameters(), held))
        assert all((array == 0).all() for array in arrays)


def test_minimize_steps_on_the_fresh_gradient_and_returns_the_loss_detached():
    param = nn.Parameter(ml.tensor([1.0, 2.0], dtype="float64"))
    optimizer = optim.SGD([param], lr=0.1)
    param.grad = ml.tensor([100.0, 100.0], dtype="float64")  # stale: minimize clears it
    loss = optim.minimize(optimizer, (param * param).sum())  # gradient 2p
    numpy.testing.assert_allclose(param.numpy(), [0.8, 1.6])
    assert loss.item() == 5.0 and not loss.requires_grad
    optim.minimize(optimizer, (param * param).sum())  # 2p again, not added to the last one
    numpy.testing.assert_allclose(param.numpy(), [0.64, 1.28])


@pytest.mark.parametrize("name, settings", [CONFIGS[2], CONFIGS[4]])
def test_optimizer_state_dict_round_trip_continues_identically(name, settings):
    make = lambda p: getattr(optim, name)(p, **settings)  # noqa: E731
    first, optimizer = _run_ours(make, GRADIENT_STEPS[:3])
    state = optimizer.state_dict()
    copy = [nn.Parameter(ml.tensor(param.numpy())) for param in first]
    resumed = make(copy)
    resumed.load_state_dict({"step": state["step"], "hyperparameters": state["hyperparameters"],
                             "state": {k: [a.copy() for a in v] for k, v in state["state"].items()}})
    assert resumed.step_count == 3
    for grads in GRADIENT_STEPS[3:]:
        for params, opt in ((first, optimizer), (copy, resumed)):
            for param, grad in zip(params, grads):
                param.grad = ml.tensor(grad)
            opt.step()
    for a, b in zip(first, copy):
        numpy.testing.assert_array_equal(a.numpy(), b.numpy())


def test_optimizer_load_errors_name_the_key_and_shapes():
    _, optimizer = _run_ours(lambda p: optim.Adam(p))
    state = optimizer.state_dict()
    bad = {**state, "state": {**state["state"],
                              "exp_avg": [numpy.zeros((4, 3))] + state["state"]["exp_avg"][1:]}}
    with pytest.raises(ValueError, match=r"'exp_avg/0': shape \(4, 3\) .* but \(3, 4\)"):
        optimizer.load_state_dict(bad)
    fewer = {**state, "state": {k: v[:2] for k, v in state["state"].items()}}
    with pytest.raises(ValueError, match="'exp_avg' holds 2 arrays but this optimizer has 3"):
        optimizer.load_state_dict(fewer)
    with pytest.raises(ValueError, match="missing key 'step'"):
        optimizer.load_state_dict({"state": state["state"]})
    renamed = {**state, "state": {"momentum_buffer": state["state"]["exp_avg"],
                                  "exp_avg_sq": state["state"]["exp_avg_sq"]}}
    with pytest.raises(ValueError, match=r"^optimizer state has keys \['exp_avg_sq', "
                                         r"'momentum_buffer'\], Adam expects \['exp_avg', "
                                         r"'exp_avg_sq'\]$"):
        optimizer.load_state_dict(renamed)
    with pytest.raises(ValueError, match="unknown optimizer hyperparameter 'momentum'"):
        optimizer.load_state_dict({**state, "hyperparameters": {**state["hyperparameters"],
                                                                "momentum": 0.9}})
    assert not hasattr(optimizer, "momentum")


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=float("nan")),
                                  lambda p: optim.Adam(p, lr=float("nan")),
                                  lambda p: optim.SGD(p, momentum=float("nan"))])
def test_a_nan_hyperparameter_is_refused(make):
    with pytest.raises(ValueError, match=r"^(lr|momentum) must be >= 0, got nan$"):
        make([nn.Parameter(ml.ones(1))])


@pytest.mark.parametrize("make_leaf", [lambda: ml.tensor([1.0, 2.0, 3.0]).mean(),
                                       lambda: ml.tensor([4.0, 2.0])[1],
                                       lambda: ml.tensor(3.0) * 2 - 4])
@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1), lambda p: optim.Adam(p, lr=0.1)])
def test_a_leaf_made_of_a_0d_result_is_trained(make_leaf, make):
    """A full reduction or 0-d arithmetic gave NumPy's immutable scalar, not a 0-d array:
    the optimizer's in-place step on a leaf made of one (detach, requires_grad_) did nothing."""
    weight = make_leaf().detach().requires_grad_()
    assert float(weight) == 2.0
    optimizer = make([weight])
    (weight * weight).backward()
    optimizer.step()
    assert float(weight) == pytest.approx(1.6 if isinstance(optimizer, optim.SGD) else 1.9)
    assert numpy.shares_memory(weight.numpy(), weight.data)  # a view, as of any other tensor


@pytest.mark.parametrize("make", [lambda p: optim.Adam(p, lr=0.1),
                                  lambda p: optim.SGD(p, lr=0.1, momentum=0.9)])
def test_a_frozen_weight_is_taken_and_left_alone_until_it_trains(make):
    """Adam(model.parameters()) with part of the model frozen was a TypeError; PyTorch takes
    the frozen weights and leaves them as they are, until requires_grad is switched back on."""
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    frozen, trained = (model[k].weight.numpy().copy() for k in (0, 1))
    optimizer = make(model.parameters())
    x = ml.tensor(numpy.ones((3, 2), numpy.float32))
    for _ in range(2):
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
    numpy.testing.assert_array_equal(model[0].weight.numpy(), frozen)
    assert (model[1].weight.numpy() != trained).all() and model[0].weight.grad is None
    model[0].weight.requires_grad_(True)
    model(x).sum().backward()
    optimizer.step()
    assert (model[0].weight.numpy() != frozen).all()


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW])
def test_adam_counts_the_steps_of_each_parameter_as_torch(cls):
    """A weight unfrozen after two steps took its first Adam step with the optimizer's count,
    3, whose bias corrections do not fit moments that start now: 0.64 lr there, and up to
    1 / sqrt(1 - beta2) = 3.2 times lr after many steps. Its own count starts at 1, as
    PyTorch's state[p]["step"], so its first update is lr * g / (|g| + eps); a saved and
    loaded state keeps the counts."""
    frozen, trained = nn.Parameter(ml.tensor([1.0, -2.0])), nn.Parameter(ml.tensor([0.5]))
    frozen.requires_grad_(False)
    optimizer = cls([frozen, trained], lr=0.1, weight_decay=0.0)
    for _ in range(2):
        optimizer.zero_grad()
        (trained * trained).sum().backward()
        optimizer.step()
    frozen.requires_grad_(True)
    optimizer.zero_grad()
    (frozen * ml.tensor([3.0, -0.5]) + trained * trained).sum().backward()
    optimizer.step()
    numpy.testing.assert_allclose(frozen.numpy(), [0.9, -1.9], rtol=1e-6)
    assert optimizer.state_dict()["param_steps"] == [1, 3] and optimizer.step_count == 3
    resumed = cls([nn.Parameter(ml.tensor(param.numpy())) for param in (frozen, trained)],
                  lr=0.1, weight_decay=0.0)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert resumed.param_steps == [1, 3]
    torch = pytest.importorskip("torch")
    theirs = [torch.tensor(start, requires_grad=True) for start in ([1.0, -2.0], [0.5])]
    their_optimizer = getattr(torch.optim, cls.__name__)(theirs, lr=0.1, weight_decay=0.0)
    for step in range(3):  # the same losses: the frozen weight in the third alone
        their_optimizer.zero_grad()
        loss = (theirs[1] * theirs[1]).sum() if step < 2 else \
            (theirs[0] * torch.tensor([3.0, -0.5]) + theirs[1] * theirs[1]).sum()
        loss.backward()
        their_optimizer.step()
    numpy.testing.assert_allclose(frozen.numpy(), theirs[0].detach().numpy(), rtol=1e-6)
    # the weight that trained all along took its third step, with count 3, in the same call:
    # each parameter once, with its own count (not the frozen one's 1, nor twice)
    numpy.testing.assert_allclose(trained.numpy(), theirs[1].detach().numpy(), rtol=1e-6)
    assert [their_optimizer.state[param]["step"].item() for param in theirs] == [1, 3]


def test_an_optimizer_state_saved_without_counts_per_parameter_still_loads():
    """A checkpoint written before the counts were kept per parameter holds only "step":
    every parameter takes that count. A list of counts of another length is refused."""
    params = [nn.Parameter(ml.ones(2)), nn.Parameter(ml.ones(3))]
    optimizer = optim.Adam(params)
    state = optimizer.state_dict()
    optimizer.load_state_dict({key: value for key, value in state.items()
                               if key != "param_steps"} | {"step": 4})
    assert optimizer.param_steps == [4, 4] and optimizer.step_count == 4
    with pytest.raises(ValueError, match=r"'param_steps' must hold a count >= 0 for each of "
                                         r"the 2 parameters, got \[1\]"):
        optimizer.load_state_dict({**state, "param_steps": [1]})
    assert optimizer.param_steps == [4, 4]


def test_an_optimizer_state_with_a_weight_that_never_trained_loads():
    """A weight frozen (or unused) on every step so far has count 0 in the saved state: the
    state of a run with part of its model frozen loads back, that count kept at 0."""
    frozen, trained = nn.Parameter(ml.ones(2)), nn.Parameter(ml.ones(3))
    optimizer = optim.Adam([frozen, trained])
    trained.sum().backward()
    optimizer.step()
    state = copy.deepcopy(optimizer.state_dict())
    assert state["param_steps"] == [0, 1]
    resumed = optim.Adam([nn.Parameter(ml.ones(2)), nn.Parameter(ml.ones(3))])
    resumed.load_state_dict(state)
    assert resumed.param_steps == [0, 1] and resumed.step_count == 1


@pytest.mark.parametrize("param_steps", [[1.5, 2], ["3", 2], [True, 2], None, 3, [-1, 2],
                                         [2]])
def test_an_optimizer_state_whose_counts_are_not_integers_is_refused_and_changes_nothing(
        param_steps):
    """Each count was read with int(): 1.5 loaded as 1 and "3" as 3 without a word, and None
    or a lone number failed in Python's words ("'int' object is not iterable"). A count of -1
    would make the next step's bias correction 1 - beta1^0 = 0, and a count short of one per
    parameter would leave some parameter without one."""
    params = [nn.Parameter(ml.ones(2)), nn.Parameter(ml.ones(3))]
    optimizer = optim.Adam(params)
    state = optimizer.state_dict()
    with pytest.raises(ValueError, match=r"^optimizer state 'param_steps' must hold a count "
                                         r">= 0 for each of the 2 parameters, got "
                                         + re.escape(repr(param_steps)) + "$"):
        optimizer.load_state_dict({**state, "param_steps": param_steps, "step": 2})
    assert optimizer.param_steps == [0, 0] and optimizer.step_count == 0
    optimizer.load_state_dict({**state, "param_steps": [numpy.int64(3), 2], "step": 3})
    assert optimizer.param_steps == [3, 2] and type(optimizer.param_steps[0]) is int


def test_optimizer_argument_errors():
    param = nn.Parameter(ml.ones(1))
    with pytest.raises(ValueError, match="lr must be >= 0, got -1"):
        optim.SGD([param], lr=-1)
    with pytest.raises(TypeError, match="^lr must be a number >= 0, got '0.1'$"):
        optim.SGD([param], lr="0.1")
    with pytest.raises(TypeError, match="^weight_decay must be a number >= 0, got True$"):
        optim.Adam([param], weight_decay=True)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        optim.SGD([param], nesterov=True)
    with pytest.raises(ValueError, match=r"betas must be two numbers in \[0, 1\), got \(0.9, 1.0\)"):
        optim.Adam([param], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"betas must be two numbers in \[0, 1\), got \('a', 0.9\)"):
        optim.Adam([param], betas=("a", 0.9))
    with pytest.raises(ValueError, match="^eps must be >= 0, got -1e-08$"):
        optim.Adam([param], eps=-1e-8)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="^Adam: parameter 1 is a tensor of int64; expected a "
                                        "floating-point tensor$"):
        optim.Adam([param, ml.tensor([1, 2])])
    with pytest.raises(TypeError, match="^Adam: parameter 0 is list; expected a floating-point "
                                        "tensor$"):
        optim.Adam([[1.0]])
    with pytest.raises(ValueError, match=r"^SGD: parameter 0 is the result of an op, whose "
                                         r"gradient is not kept; expected a leaf tensor"):
        optim.SGD([param * 2], lr=0.1)
    # list() of one tensor is its rows, which never get a gradient: refused, as in PyTorch
    with pytest.raises(TypeError, match="SGD takes an iterable of parameters .* got a single Tensor"):
        optim.SGD(nn.Parameter(ml.ones(3, 4)), lr=0.1)
    # the same parameter twice would take two updates a step
    other = nn.Parameter(ml.ones(2))
    with pytest.raises(ValueError, match="^Adam: parameter 2 is parameter 0 again; expected each "
                                         "parameter once$"):
        optim.Adam([param, other, param])


def test_optimizer_repr_names_its_hyperparameters():
    param = nn.Parameter(ml.ones(1))
    assert repr(optim.Adam([param], lr=0.1)) == (
        "Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)")
    assert repr(optim.SGD([param], lr=0.1, momentum=0.9)) == (
        "SGD(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0)")


def test_fast_update_slot_is_used_only_on_cuda_with_fast_kernels(monkeypatch):
    calls = []
    monkeypatch.setattr(optim.Adam, "fast_update", staticmethod(lambda *a, **k: calls.append(1)))
    param = nn.Parameter(ml.ones(2))
    param.grad = ml.ones(2)
    optim.Adam([param], lr=0.1).step()
    assert calls == [] and (param.numpy() < 1).all()  # CPU parameters: the NumPy maths ran


def test_fast_update_slot_is_called_once_per_step_on_cuda(monkeypatch):
    """Device "cuda" (the CPU stand-in of tests/fake_cupy.py) with the slot filled, as
    use_fast_kernels fills it: each step hands every parameter to the fast update, once, with
    its step count, and the NumPy maths does not run besides."""
    import fake_cupy
    calls = []

    def recording_update(params, grads, exp_avg, exp_avg_sq, step, **hyperparameters):
        calls.append((list(params), step, hyperparameters["lr"]))

    fake_cupy.install(monkeypatch)  # first: it switches the fast kernels off (empties the slot)
    monkeypatch.setattr(optim.Adam, "fast_update", staticmethod(recording_update))
    try:
        param = nn.Parameter(ml.ones(2, device="cuda"))
        param.grad = ml.ones(2, device="cuda")
        optimizer = optim.Adam([param], lr=0.1)
        optimizer.step()
        assert [(step, lr) for _, step, lr in calls] == [(1, 0.1)]
        optimizer.step()
        assert [(step, lr) for _, step, lr in calls] == [(1, 0.1), (2, 0.1)]
        assert all(len(params) == 1 and params[0] is param.data for params, _, _ in calls)
        numpy.testing.assert_array_equal(param.numpy(), 1.0)  # only the (inert) fast update ran
    finally:
        fake_cupy.forget_device_state()


# --- clipping -------------------------------------------------------------------------------

def test_clip_grad_norm_scales_to_the_global_norm():
    a, b = nn.Parameter(ml.zeros(1)), nn.Parameter(ml.zeros(1))
    a.grad, b.grad = ml.tensor([3.0]), ml.tensor([4.0])
    norm = optim.clip_grad_norm_([a, b], 1.0)
    assert norm.item() == pytest.approx(5.0) and not norm.requires_grad  # outside any graph
    numpy.testing.assert_allclose([a.grad.item(), b.grad.item()], [0.6, 0.8], rtol=1e-5)
    assert optim.clip_grad_norm_([a, b], 10.0).item() == pytest.approx(1.0, rel=1e-5)
    numpy.testing.assert_allclose([a.grad.item(), b.grad.item()], [0.6, 0.8], rtol=1e-5)
    with pytest.raises(ValueError, match="max_norm must be > 0, got 0"):
        optim.clip_grad_norm_([a], 0)


def test_clip_grad_norm_without_gradients_is_zero_and_changes_nothing():
    """As PyTorch's: parameters with no gradient yet give a norm of 0 (float64, as always)."""
    param = nn.Parameter(ml.ones(2))
    norm = optim.clip_grad_norm_([param], 1.0)
    assert norm.item() == 0.0 and norm.dtype == numpy.float64 and param.grad is None


def test_clip_grad_norm_takes_one_tensor():
    """As PyTorch's does: the tensor itself, not its rows (which have no gradients)."""
    weight = nn.Parameter(ml.ones(3, 4))
    weight.grad = ml.tensor(numpy.full((3, 4), 2.0, numpy.float32))
    assert optim.clip_grad_norm_(weight, 1.0).item() == pytest.approx(numpy.sqrt(48.0))
    numpy.testing.assert_allclose(weight.grad.numpy(), numpy.full((3, 4), 2 / numpy.sqrt(48.0)),
                                  rtol=1e-5)


@pytest.mark.parametrize("where", ["optim", "nn.utils"])
def test_clip_grad_norm_matches_torch(where):
    """Also as PyTorch code calls it, ``nn.utils.clip_grad_norm_`` (an AttributeError before)."""
    torch = pytest.importorskip("torch")
    clip = optim.clip_grad_norm_ if where == "optim" else ml.nn.utils.clip_grad_norm_
    params = [nn.Parameter(ml.tensor(value.copy())) for value in START]
    theirs = [torch.tensor(value, requires_grad=True) for value in START]
    for mine, reference, grad in zip(params, theirs, GRADIENT_STEPS[0]):
        mine.grad, reference.grad = ml.tensor(grad), torch.tensor(grad)
    norm = clip(params, 0.5).item()
    assert norm == pytest.approx(torch.nn.utils.clip_grad_norm_(theirs, 0.5).item(), rel=1e-12)
    for mine, reference in zip(params, theirs):
        numpy.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-10)


def test_clip_grad_norm_refuses_pytorch_positional_norm_type():
    """PyTorch's third argument is norm_type; ported positionally it must not become eps."""
    param = nn.Parameter(ml.zeros(2))
    param.grad = ml.tensor([3.0, 4.0])
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        optim.clip_grad_norm_([param], 1.0, 2.0)
    numpy.testing.assert_array_equal(param.grad.numpy(), [3.0, 4.0])


def test_clip_grad_norm_sums_float32_squares_in_float64():
    """The norm of float32 gradients is a float64 summed in float64: the float32 squares of
    3e20 and 4e20 overflow, and the infinite norm then zeroed every gradient."""
    param = nn.Parameter(ml.zeros(2))
    param.grad = ml.tensor(numpy.array([3e20, 4e20], numpy.float32))
    norm = optim.clip_grad_norm_([param], 1.0)
    assert norm.dtype == numpy.float64 and norm.item() == pytest.approx(5e20, rel=1e-6)
    assert param.grad.dtype == numpy.float32
    numpy.testing.assert_allclose(param.grad.numpy(), [0.6, 0.8], rtol=1e-5)


# --- EMA ------------------------------------------------------------------------------------

def test_ema_follows_the_formula_and_swaps_weights():
    model = nn.Linear(2, 1)
    model.to(dtype=numpy.float64)
    start = model.weight.numpy().copy()
    ema = optim.EMA(model, decay=0.9)
    model.weight.data[...] = start + 1.0
    ema.update(model)
    model.weight.data[...] = start + 2.0
    ema.update(model)
    # avg1 = 0.9 s + 0.1 (s + 1) = s + 0.1;  avg2 = 0.9 (s + 0.1) + 0.1 (s + 2) = s + 0.29
    numpy.testing.assert_allclose(ema.shadow["weight"], start + 0.29)
    with ema.average_parameters(model):
        numpy.testing.assert_allclose(model.weight.numpy(), start + 0.29)
    numpy.testing.assert_allclose(model.weight.numpy(), start + 2.0)
    other = optim.EMA(model, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.num_updates == 2
    other.copy_to(model)
    numpy.testing.assert_allclose(model.weight.numpy(), start + 0.29)


def test_ema_copy_to_a_model_it_does_not_fit_changes_nothing():
    ema = optim.EMA(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 3))  # the first layer fits
    before = [parameter.numpy().copy() for parameter in model.parameters()]
    with pytest.raises(ValueError, match=r"'1.weight': shape \(2, 2\) .* but \(3, 2\)"):
        ema.copy_to(model)
    for parameter, kept in zip(model.parameters(), before):
        numpy.testing.assert_array_equal(parameter.numpy(), kept)


def test_ema_errors():
    ema = optim.EMA(nn.Linear(2, 1))
    with pytest.raises(ValueError, match=r"EMA tracks \['bias'\] missing from the model"):
        ema.update(nn.Linear(2, 1, bias=False))
    wide = optim.EMA(nn.Linear(3, 2))
    replaced = nn.Linear(3, 2)
    replaced.weight = nn.Parameter(ml.zeros(1, 3))  # NumPy broadcasts it into the (2, 3) average
    average = wide.shadow["weight"].copy()
    with pytest.raises(ValueError, match=r"^EMA: parameter 'weight' has shape \(1, 3\), its "
                                         r"average \(2, 3\); expected the model the EMA was "
                                         r"made for$"):
        wide.update(replaced)
    numpy.testing.assert_array_equal(wide.shadow["weight"], average)
    state = ema.state_dict()
    with pytest.raises(ValueError, match=r"'weight': shape \(1, 3\) .* but \(1, 2\)"):
        ema.load_state_dict({**state, "shadow": {**state["shadow"], "weight": numpy.zeros((1, 3))}})
    with pytest.raises(ValueError, match="EMA decay must be in \\[0, 1\\], got 1.5"):
        optim.EMA(nn.Linear(1, 1), decay=1.5)
    # a decay of another type is named as the optimizers' settings are (a comparison's words,
    # "'<=' not supported between instances of 'float' and 'str'", before; True was taken as 1)
    for decay in ("0.999", None, True):
        with pytest.raises(TypeError, match=f"^EMA decay must be a number in \\[0, 1\\], "
                                            f"got {re.escape(repr(decay))}$"):
            optim.EMA(nn.Linear(1, 1), decay=decay)
    # a loaded decay meets the constructor's rule (5.0 was taken and made the average diverge)
    with pytest.raises(ValueError, match="EMA decay must be in \\[0, 1\\], got 5.0"):
        ema.load_state_dict({**state, "decay": 5.0})
    assert ema.decay == 0.999


@pytest.mark.parametrize("decay", [0.0, 1.0])
def test_ema_decay_bounds_are_allowed_and_mean_follow_or_freeze(decay):
    # decay 0: the average is the latest weights; decay 1: it stays the starting copy
    model = nn.Linear(2, 1)
    model.to(dtype=numpy.float64)
    start = model.weight.numpy().copy()
    ema = optim.EMA(model, decay=decay)
    model.weight.data[...] = start + 3.0
    ema.update(model)
    numpy.testing.assert_array_equal(ema.shadow["weight"], start + 3.0 if decay == 0.0 else start)


def test_ema_load_state_with_other_names_is_refused_and_changes_nothing():
    ema = optim.EMA(nn.Linear(2, 1))
    before = {name: array.copy() for name, array in ema.shadow.items()}
    state = ema.state_dict()
    extra = {**state, "shadow": {**state["shadow"], "scale": numpy.ones(1)}, "num_updates": 7}
    with pytest.raises(ValueError, match=r"EMA state has keys missing \[\] and extra \['scale'\]"):
        ema.load_state_dict(extra)
    fewer = {**state, "shadow": {"weight": numpy.zeros((1, 2))}}
    with pytest.raises(ValueError, match=r"EMA state has keys missing \['bias'\] and extra \[\]"):
        ema.load_state_dict(fewer)
    assert ema.num_updates == 0
    for name, array in ema.shadow.items():
        numpy.testing.assert_array_equal(array, before[name])


# --- schedules ------------------------------------------------------------------------------

def test_warmup_cosine_key_points():
    factor = lambda step: optim.warmup_cosine(step, warmup_steps=4, total_steps=14,  # noqa: E731
                                              min_factor=0.1)
    assert [factor(step) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == pytest.approx(1.0)
    assert factor(9) == pytest.approx(0.55)  # half way down the cosine: (1 + 0.1) / 2
    assert factor(14) == pytest.approx(0.1) and factor(100) == pytest.approx(0.1)
    assert optim.warmup_constant(0, 10) == 0.1 and optim.warmup_constant(50, 10) == 1.0


def test_warmup_cosine_with_a_one_step_warm_up_starts_at_the_full_rate():
    """W = 1: step 0 is the warm-up's one step, at (0 + 1) / 1 = 1; the cosine starts at step 1."""
    factors = [optim.warmup_cosine(step, warmup_steps=1, total_steps=5) for step in range(6)]
    cosine = [0.5 * (1 + math.cos(math.pi * (step - 1) / 4)) for step in range(1, 5)]
    assert factors == pytest.approx([1.0] + cosine + [0.0])


def test_warmup_constant_climbs_to_one_and_stays_there():
    assert [optim.warmup_constant(step, 4) for step in range(8)] == [
        0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]
    # the step where the warm-up ends and the one after it are 1, never above
    assert optim.warmup_constant(4, 4) == 1.0 and optim.warmup_constant(5, 4) == 1.0
    assert optim.warmup_constant(0, 0) == 1.0  # no warm-up


def test_warmup_cosine_ends_at_total_steps_even_within_the_warm_up():
    assert optim.warmup_cosine(4, warmup_steps=4, total_steps=4) == 0.0
    assert [optim.warmup_cosine(step, 5, 2, min_factor=0.1) for step in range(2, 7)] == [0.1] * 5
    param = nn.Parameter(ml.ones(1))
    with pytest.raises(ValueError, match="warmup_steps must be at most total_steps .* got 5 > 2"):
        optim.warmup_cosine_scheduler(optim.SGD([param], lr=0.1), 5, 2)
    # a negative floor ended the schedule on a negative rate, which climbs the loss
    for min_factor in (-0.1, 1.5, float("nan"), "0"):
        with pytest.raises(ValueError, match=re.escape(
                f"min_factor must be a number in [0, 1], got {min_factor!r}")):
            optim.warmup_cosine_scheduler(optim.SGD([param], lr=0.1), 1, 2, min_factor)


@pytest.mark.parametrize("warmup, total, message", [
    (-1, 10, "warmup_steps must be a non-negative integer, got -1"),
    (0, -1, "total_steps must be a non-negative integer, got -1"),
    (2.0, 10, "warmup_steps must be a non-negative integer, got 2.0"),
    (True, 10, "warmup_steps must be a non-negative integer, got True"),
])
def test_scheduler_steps_must_be_non_negative_integers(warmup, total, message):
    optimizer = optim.SGD([nn.Parameter(ml.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match=message):
        optim.warmup_cosine_scheduler(optimizer, warmup, total)
    assert optimizer.lr == 0.1


def test_scheduler_steps_may_be_numpy_integers():
    """Step counts computed with NumPy (e.g. epochs * len(loader) of an array) are integers."""
    optimizer = optim.SGD([nn.Parameter(ml.ones(1))], lr=0.1)
    scheduler = optim.warmup_cosine_scheduler(optimizer, numpy.int64(2), numpy.int32(10))
    assert optimizer.lr == pytest.approx(0.05)
    scheduler.step()
    assert optimizer.lr == pytest.approx(0.1)


def test_scheduler_state_restores_the_base_lr_of_the_saved_run():
    scheduler = optim.warmup_cosine_scheduler(optim.SGD([nn.Parameter(ml.ones(1))], lr=0.2), 2, 10)
    for _ in range(3):
        scheduler.step()
    # a fresh run built with another lr takes the saved run's base lr and step
    optimizer = optim.SGD([nn.Parameter(ml.ones(1))], lr=0.5)
    restored = optim.warmup_cosine_scheduler(optimizer, 2, 10)
    restored.load_state_dict(scheduler.state_dict())
    progress = (3 - 2) / (10 - 2)
    assert optimizer.lr == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * progress)))
    restored.step()
    assert optimizer.lr == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 2 / 8)))
    assert restored.state_dict() == {"base_lr": 0.2, "last_step": 4}


def test_scheduler_sets_the_optimizer_lr_and_matches_torch_lambda_lr():
    param = nn.Parameter(ml.ones(1))
    optimizer = optim.Adam([param], lr=0.2)
    scheduler = optim.warmup_cosine_scheduler(optimizer, warmup_steps=2, total_steps=6)
    lrs = [optimizer.lr]
    for _ in range(7):
        scheduler.step()
        lrs.append(optimizer.lr)
    expected = [0.2 * optim.warmup_cosine(step, 2, 6) for step in range(8)]
    numpy.testing.assert_allclose(lrs, expected)
    restored = optim.warmup_cosine_scheduler(optim.Adam([param], lr=0.2), 2, 6)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.get_last_lr() == pytest.approx([lrs[-1]])
    torch = pytest.importorskip("torch")
    their_optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.2)
    theirs = torch.optim.lr_scheduler.LambdaLR(
        their_optimizer, lr_lambda=lambda step: optim.warmup_cosine(step, 2, 6))
    ours = optim.LambdaLR(optim.Adam([param], lr=0.2),
                          lr_lambda=lambda step: optim.warmup_cosine(step, 2, 6))
    their_lrs, our_last = [their_optimizer.param_groups[0]["lr"]], [ours.get_last_lr()]
    for _ in range(7):
        their_optimizer.step()
        theirs.step()
        ours.step()
        their_lrs.append(their_optimizer.param_groups[0]["lr"])
        our_last.append(ours.get_last_lr())
    numpy.testing.assert_allclose(lrs, their_lrs)
    assert all(type(last) is list and len(last) == 1 for last in our_last)  # as theirs
    numpy.testing.assert_allclose([last[0] for last in our_last], their_lrs)


def test_a_refused_state_leaves_the_optimizer_the_ema_and_the_module_as_they_were():
    """Every key and shape is checked before the first copy: a load that fails half-way
    would leave a mixture of the old state and the new."""
    _, optimizer = _run_ours(lambda p: optim.Adam(p))
    before = [array.copy() for arrays in optimizer.state.values() for array in arrays]
    state = optimizer.state_dict()
    new = {name: [numpy.full(array.shape, 7.0) for array in arrays]
           for name, arrays in state["state"].items()}
    new["exp_avg_sq"][-1] = numpy.zeros((9,))  # the last array does not fit
    with pytest.raises(ValueError, match=r"'exp_avg_sq/2': shape \(9,\)"):
        optimizer.load_state_dict({**state, "step": 99, "state": new})
    after = [array for arrays in optimizer.state.values() for array in arrays]
    assert all(numpy.array_equal(a, b) for a, b in zip(before, after))
    assert optimizer.step_count == state["step"]

    model = nn.Linear(2, 3)
    ema = optim.EMA(model)
    shadow = {name: average.copy() for name, average in ema.shadow.items()}
    with pytest.raises(ValueError, match=r"'bias': shape \(2,\)"):
        ema.load_state_dict({"decay": 0.5, "num_updates": 9, "shadow": {
            "weight": numpy.full((3, 2), 7.0), "bias": numpy.zeros(2)}})
    assert all(numpy.array_equal(ema.shadow[name], shadow[name]) for name in shadow)
    assert (ema.decay, ema.num_updates) == (0.999, 0)  # neither of the refused state's

    weight = model.weight.numpy().copy()
    with pytest.raises(ValueError, match=r"'bias': shape \(2,\)"):
        model.load_state_dict({"weight": numpy.full((3, 2), 7.0), "bias": numpy.zeros(2)})
    numpy.testing.assert_array_equal(model.weight.numpy(), weight)


def test_loaded_hyperparameters_meet_the_constructors_rules_and_a_refusal_changes_nothing():
    _, optimizer = _run_ours(lambda p: optim.Adam(p))
    state = optimizer.state_dict()
    for bad, message in (({"lr": -1.0}, "lr must be >= 0, got -1.0"),
                         ({"betas": [0.9, 1.0]}, r"betas must be two numbers in \[0, 1\)")):
        with pytest.raises(ValueError, match=message):
            optimizer.load_state_dict({**state, "hyperparameters": {
                **state["hyperparameters"], **bad}})
        assert optimizer.lr == state["hyperparameters"]["lr"]
        assert optimizer.betas == tuple(state["hyperparameters"]["betas"])
    sgd = optim.SGD([nn.Parameter(ml.ones(1))], lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="momentum must be a number >= 0, got '0.5'"):
        sgd.load_state_dict({**sgd.state_dict(), "hyperparameters": {"momentum": "0.5"}})
    assert sgd.momentum == 0.9


def test_get_last_lr_is_the_rate_the_scheduler_set_last_as_torchs():
    """A rate set by hand after the scheduler's step is the optimizer's, not the scheduler's
    last (get_last_lr had read the optimizer's)."""
    param = nn.Parameter(ml.ones(1))
    optimizer = optim.SGD([param], lr=0.5)
    scheduler = optim.LambdaLR(optimizer, lr_lambda=lambda step: 0.5 ** step)
    scheduler.step()
    optimizer.param_groups[0]["lr"] = 0.01
    assert scheduler.get_last_lr() == [0.25] and optimizer.lr == 0.01
    torch = pytest.importorskip("torch")
    theirs = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    their_scheduler = torch.optim.lr_scheduler.LambdaLR(theirs, lr_lambda=lambda step: 0.5 ** step)
    theirs.step()
    their_scheduler.step()
    theirs.param_groups[0]["lr"] = 0.01
    assert their_scheduler.get_last_lr() == [0.25]
