"""Reductions and softmax: gradcheck and PyTorch oracle over drawn shapes, dims and keepdim,
plus ties, numerical stability, argmax/argmin and bad dims."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import minilean as ml
from opcheck import OpCase, arrays, op_tests


def _torch():
    import torch
    return torch


@st.composite
def reduced(draw, min_dims=0, min_side=1, tuple_dims=True):
    """One operand and the ``dim`` (None, an int or a tuple) and ``keepdim`` to reduce it with."""
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=min_side, max_side=3))
    ndim = len(shape)
    choices = [st.none()]
    if ndim:
        choices.append(st.integers(-ndim, ndim - 1))
        if tuple_dims:
            choices.append(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                                    unique=True).map(tuple))
    dim = draw(st.one_of(*choices))
    return (draw(arrays(shape)),), {"dim": dim, "keepdim": draw(st.booleans())}


@st.composite
def along_one_dim(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    return (draw(arrays(shape)),), {"dim": draw(st.integers(-len(shape), len(shape) - 1))}


@st.composite
def with_unbiased(draw):
    """Operands of two or more elements along every reduced axis (one would give nan)."""
    (x,), params = draw(reduced(min_dims=1, min_side=2))
    return (x,), dict(params, unbiased=draw(st.booleans()))


def all_dims(x, dim):
    """PyTorch's spelling of 'every axis' for the ops whose dim cannot be None there."""
    return tuple(range(x.ndim)) if dim is None else dim


CASES = [
    OpCase("sum", reduced(), ml.sum, lambda x, dim, keepdim: x.sum(all_dims(x, dim), keepdim)),
    OpCase("mean", reduced(), ml.mean, lambda x, dim, keepdim: x.mean(all_dims(x, dim), keepdim)),
    OpCase("var", with_unbiased(), ml.var,
           lambda x, dim, keepdim, unbiased: x.var(all_dims(x, dim), correction=int(unbiased),
                                                   keepdim=keepdim)),
    OpCase("std", with_unbiased(), ml.std,
           lambda x, dim, keepdim, unbiased: x.std(all_dims(x, dim), correction=int(unbiased),
                                                   keepdim=keepdim)),
    OpCase("amax", reduced(), ml.amax, lambda x, dim, keepdim: x.amax(all_dims(x, dim), keepdim)),
    OpCase("amin", reduced(), ml.amin, lambda x, dim, keepdim: x.amin(all_dims(x, dim), keepdim)),
    OpCase("logsumexp", reduced(), ml.logsumexp,
           lambda x, dim, keepdim: x.logsumexp(all_dims(x, dim), keepdim)),
    OpCase("softmax", along_one_dim(), ml.softmax, lambda x, dim: x.softmax(dim)),
    OpCase("log_softmax", along_one_dim(), ml.log_softmax, lambda x, dim: x.log_softmax(dim)),
    OpCase("tensor_methods", reduced(tuple_dims=False),
           lambda x, dim, keepdim: x.sum(dim, keepdim) * x.mean(dim, keepdim).exp(),
           lambda x, dim, keepdim: x.sum(all_dims(x, dim), keepdim)
           * x.mean(all_dims(x, dim), keepdim).exp()),
]

test_gradcheck, test_matches_torch = op_tests(CASES)


@pytest.mark.parametrize("reduce, largest", [
    (ml.amax, True), (ml.amin, False), (lambda x, dim: ml.max(x, dim).values, True),
    (lambda x, dim: ml.min(x, dim).values, False)])
def test_max_and_min_share_the_gradient_equally_among_ties(reduce, largest):
    x = ml.tensor([[3.0, 1.0, 3.0, 3.0], [2.0, 2.0, 5.0, 2.0]], requires_grad=True)
    reduce(x, dim=1).sum().backward()
    winners = x.numpy() == (x.numpy().max(1, keepdims=True) if largest
                            else x.numpy().min(1, keepdims=True))
    expected = winners / winners.sum(1, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), expected)
    np.testing.assert_allclose(x.grad.numpy().sum(1), [1.0, 1.0])


def test_max_ties_match_torch_amax():
    torch = pytest.importorskip("torch")
    values = np.array([[1.0, 4.0, 4.0], [0.0, 0.0, 0.0]])
    x = ml.tensor(values, dtype=ml.float64, requires_grad=True)
    ml.max(x).backward()
    torch_x = torch.tensor(values, requires_grad=True)
    torch_x.amax().backward()
    np.testing.assert_allclose(x.grad.numpy(), torch_x.grad.numpy())


def test_logsumexp_and_log_softmax_are_stable_for_huge_inputs():
    x = ml.tensor([[1000.0, 1000.0], [-1000.0, -1001.0]], dtype=ml.float64, requires_grad=True)
    np.testing.assert_allclose(ml.logsumexp(x, 1).numpy(),
                               [1000.0 + np.log(2.0), -1000.0 + np.log1p(np.exp(-1.0))])
    log_probabilities = ml.log_softmax(x, 1)
    assert np.isfinite(log_probabilities.numpy()).all()
    np.testing.assert_allclose(np.exp(log_probabilities.numpy()).sum(1), [1.0, 1.0])
    np.testing.assert_allclose(ml.softmax(x, -1).numpy()[0], [0.5, 0.5])


@pytest.mark.parametrize("dtype, peak", [(ml.float32, 1e8), (ml.float64, 1e16)])
def test_log_softmax_keeps_its_digits_beside_a_huge_peak(dtype, peak):
    """log_softmax subtracts the peak before adding the log of the sum: peak + log(1 + e^-gap)
    would round to the peak there (the gap, 8 or 2, is one step of the float), and the result
    be off by log(1 + e^-gap) (3e-4 or 0.127)."""
    x = ml.tensor([peak, peak + np.spacing(np.array(peak, dtype=dtype))], dtype=dtype)
    gap = float(x.numpy()[1] - x.numpy()[0])
    expected = [-gap - np.log1p(np.exp(-gap)), -np.log1p(np.exp(-gap))]
    np.testing.assert_allclose(ml.log_softmax(x, 0).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_logsumexp_of_all_minus_infinity_is_minus_infinity():
    x = ml.tensor([[-np.inf, -np.inf], [0.0, -np.inf]], dtype=ml.float64)
    with np.errstate(invalid="raise"):
        np.testing.assert_array_equal(ml.logsumexp(x, 1).numpy(), [-np.inf, 0.0])


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log")
def test_softmax_and_logsumexp_over_an_empty_axis():
    """No terms: the softmax is empty and the logsumexp is log 0 = -inf (PyTorch's values),
    where the max that stabilises them has none; gradients are empty."""
    x = ml.tensor(np.zeros((3, 0)), requires_grad=True)
    assert ml.softmax(x, 1).shape == ml.log_softmax(x, 1).shape == (3, 0)
    total = x.logsumexp(1)
    np.testing.assert_array_equal(total.numpy(), [-np.inf] * 3)
    total.sum().backward()
    assert x.grad.shape == (3, 0)


@given(st.data())
def test_argmax_and_argmin_match_numpy(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    values = data.draw(arrays(shape))
    x = ml.tensor(values, dtype=ml.float64, requires_grad=True)
    dim = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    keepdim = data.draw(st.booleans())
    for ours, reference in ((ml.argmax, np.argmax), (ml.argmin, np.argmin)):
        index = ours(x, dim, keepdim)
        assert index.dtype == np.int64 and not index.requires_grad
        expected = reference(values, axis=dim, keepdims=keepdim)
        # the shape too: assert_array_equal takes a 0-d index for the (1, ..., 1) of keepdim
        assert index.shape == np.shape(expected)
        np.testing.assert_array_equal(index.numpy(), expected)


def test_std_of_equal_values_has_gradient_zero():
    """The root's kink at 0: PyTorch's gradient there is 0, not 0 * inf = nan."""
    x = ml.tensor([2.0, 2.0, 2.0], dtype=ml.float64, requires_grad=True)
    x.std().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])
    rows = ml.tensor([[1.0, 1.0], [1.0, 3.0]], dtype=ml.float64, requires_grad=True)
    rows.std(1, unbiased=False).sum().backward()  # one row constant, one not
    np.testing.assert_allclose(rows.grad.numpy(), [[0.0, 0.0], [-0.5, 0.5]])


@pytest.mark.parametrize("n", [3, 5, 6, 7])
def test_equal_float32_values_have_variance_and_std_zero_with_gradient_zero(n):
    """Equal values of all 24 bits, whose float32 mean can round (3 x needs 26 bits): var and
    std are exactly 0 and so are their gradients, as in PyTorch; a mean that rounded would
    leave x - m = +-u |x|, a std of ~u |x| and a gradient of g / sqrt(n (n - 1)) per element."""
    values = np.random.default_rng(n).uniform(0.5, 1, 40).astype(np.float32)
    for reduce in (ml.var, ml.std):
        x = ml.tensor(np.repeat(values[:, None], n, axis=1), requires_grad=True)
        out = reduce(x, 1)
        out.sum().backward()
        np.testing.assert_array_equal(out.numpy(), np.zeros(len(values)))
        np.testing.assert_array_equal(x.grad.numpy(), np.zeros((len(values), n)))


def test_var_of_one_element_is_nan_like_torch():
    x = ml.tensor([2.0], dtype=ml.float64, requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ml.var(x)
        out.backward()
    assert np.isnan(out.item()) and np.isnan(x.grad.numpy()).all()
    assert ml.var(x, unbiased=False).item() == 0.0


def test_bad_dims_name_the_value():
    x = ml.ones(2, 3)
    with pytest.raises(ValueError, match="dim 2 is out of range for a tensor with 2 dimensions"):
        ml.sum(x, 2)
    with pytest.raises(ValueError, match=r"dim \(1, -1\) names the same axis twice"):
        ml.mean(x, (1, -1))
    with pytest.raises(TypeError, match=r"dim must be a single int here, got \(0, 1\)"):
        ml.softmax(x, (0, 1))
    # a 0-d tensor takes dim 0 or -1 only, in the one-axis ops too (they accepted any int)
    for one_axis in (ml.softmax, ml.log_softmax, ml.argmax, ml.argmin):
        with pytest.raises(ValueError, match="dim 1 is out of range for a tensor with 0 dim"):
            one_axis(ml.tensor(1.0), 1)


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "amax", "amin", "logsumexp"])
@pytest.mark.parametrize("dim", [(), []])
def test_an_empty_dim_tuple_is_refused(name, dim):
    """``x.sum(dim=())`` gave x itself (NumPy's reading: no axis reduced); PyTorch reduces
    every axis there, so code ported from it got another number."""
    with pytest.raises(ValueError, match=r"dim (\(\)|\[\]) names no axis; expected dim=None"):
        getattr(ml, name)(ml.ones(2, 3), dim)


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_and_min_over_a_dim_give_values_and_indices_as_pytorch(name, keepdim):
    """PyTorch's ``_, predicted = logits.max(1)`` and ``x.max(1)[0]``: a (values, indices)
    pair over one dim, the first index among ties; of two tensors, the elementwise extremum;
    several dims are amax's and amin's."""
    torch = pytest.importorskip("torch")
    data = np.array([[0.5, 2.0, 2.0, -1.0], [3.0, -3.0, 0.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    x = ml.tensor(data, dtype=ml.float64, requires_grad=True)
    for dim in (1, -2):
        values, indices = getattr(x, name)(dim, keepdim)
        expected = getattr(torch.tensor(data), name)(dim, keepdim)
        np.testing.assert_array_equal(values.numpy(), expected.values.numpy())
        np.testing.assert_array_equal(indices.numpy(), expected.indices.numpy())
        assert indices.dtype == ml.int64 and not indices.requires_grad
        assert getattr(ml, name)(x, dim=dim, keepdim=keepdim)[0].shape == expected[0].shape
    other = ml.tensor(data[::-1].copy(), dtype=ml.float64)
    np.testing.assert_array_equal(getattr(ml, name)(x, other).numpy(),
                                  getattr(torch, name)(torch.tensor(data),
                                                       torch.tensor(data[::-1].copy())).numpy())
    with pytest.raises(TypeError, match=rf"^{name} takes one int dim \(as in PyTorch\), got "
                                        rf"\(0, 1\); a{name} reduces over several$"):
        getattr(x, name)((0, 1))


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_an_extreme_position_over_an_empty_dim_is_refused_naming_it(name):
    """As for the values: NumPy's "attempt to get argmax of an empty sequence" named neither
    the dim nor the shape (PyTorch refuses both calls too). Over a non-empty dim of a tensor
    with an empty other axis the answer is empty, as in PyTorch."""
    x = ml.zeros(2, 0)
    for call in (lambda: getattr(x, name)(1), lambda: getattr(ml, name)(x, -1, keepdim=True)):
        with pytest.raises(ValueError, match=rf"^{name} over dim -?1, which has size 0: an "
                                             rf"empty slice has no extreme position$"):
            call()
    with pytest.raises(ValueError, match=rf"^{name} of an empty tensor of shape \(2, 0\): no "
                                         rf"element has a position to give$"):
        getattr(x, name)()
    assert getattr(x, name)(0).shape == (0,) and getattr(x, name)(0).dtype == ml.int64


@pytest.mark.parametrize("name", ["max", "min", "amax", "amin"])
def test_an_extreme_value_over_an_empty_dim_is_refused_naming_it(name):
    """NumPy's "zero-size array to reduction operation maximum which has no identity" named
    neither; an elementwise max takes no keepdim (PyTorch refuses it too)."""
    x = ml.zeros(2, 0)
    op = "max" if name.endswith("max") else "min"
    for call in (lambda: getattr(x, name)(1), lambda: getattr(ml, name)(x)):
        with pytest.raises(ValueError, match=rf"^{op} over dim 1, which has size 0: an empty "
                                             rf"slice has no extreme value$"):
            call()
    assert getattr(x, name)(0).shape == (0,) if name.startswith("a") else \
        getattr(x, name)(0).values.shape == (0,)
    if not name.startswith("a"):
        with pytest.raises(TypeError, match=rf"^{name} of two tensors is elementwise: it takes "
                                            rf"no keepdim$"):
            getattr(ml.ones(2), name)(ml.zeros(2), keepdim=True)


def test_dims_may_be_numpy_integers_but_not_bools():
    """As the shape ops accept them (an index from NumPy is an int64); a bool is a misplaced
    keepdim, not dim 1."""
    data = np.arange(6.0).reshape(2, 3)
    x = ml.tensor(data, requires_grad=True)
    x.sum(np.int64(0)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3)))
    np.testing.assert_array_equal(x.mean((np.int32(0), np.int64(-1))).numpy(), data.mean())
    np.testing.assert_array_equal(x.max(np.int64(1)).values.numpy(), [2.0, 5.0])
    np.testing.assert_allclose(ml.softmax(x, np.int64(1)).numpy().sum(1), [1.0, 1.0])
    with pytest.raises(TypeError, match="^dim must be an int or a tuple of ints, got True$"):
        x.sum(True)
    with pytest.raises(TypeError, match=r"^dim must be an int or a tuple of ints, got \(0, 1.0\)$"):
        x.sum((0, 1.0))
    with pytest.raises(TypeError, match="^dim must be a single int here, got True$"):
        ml.softmax(x, True)


def test_reductions_of_float32_stay_float32():
    x = ml.randn(4, 5, requires_grad=True)
    for out in (ml.sum(x, 0), ml.mean(x), ml.var(x, 1), ml.std(x), ml.amax(x, 1),
                ml.logsumexp(x, 1), ml.softmax(x, 1), ml.log_softmax(x, 0)):
        assert out.dtype == np.float32
        out.sum().backward()
        assert x.grad.dtype == np.float32


@pytest.mark.parametrize("values", [[1, 2, 4], [True, False, True]])
@pytest.mark.parametrize("name, reference", [
    ("mean", np.mean), ("var", lambda v: np.var(v, ddof=1)), ("std", lambda v: np.std(v, ddof=1)),
    ("logsumexp", lambda v: np.log(np.exp(v).sum())),
    ("softmax", lambda v: np.exp(v) / np.exp(v).sum()),
    ("log_softmax", lambda v: v - np.log(np.exp(v).sum()))])
def test_real_valued_reductions_of_integer_and_bool_tensors_are_float32(name, reference, values):
    """float32, as PyTorch's logsumexp gives, not NumPy's float64."""
    x = ml.tensor(values)
    out = getattr(x, name)(0) if name in ("logsumexp", "softmax", "log_softmax") else \
        getattr(x, name)()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), reference(np.array(values, dtype=np.float64)),
                               rtol=1e-6)


@np.errstate(all="ignore")  # nan and inf on purpose
def test_a_nan_or_inf_slice_gives_the_documented_values_and_gradients():
    nan, inf = np.nan, np.inf
    x = ml.tensor([[nan, 1.0, 2.0], [inf, 1.0, 2.0]], dtype=ml.float64, requires_grad=True)
    ml.amax(x, dim=1).sum().backward()  # as torch.amax: nan over a slice holding nan
    np.testing.assert_array_equal(x.grad.numpy(), [[nan] * 3, [1.0, 0.0, 0.0]])
    row = ml.tensor([[inf, 1.0, 2.0]], dtype=ml.float64, requires_grad=True)
    np.testing.assert_array_equal(ml.softmax(row, dim=1).numpy(), [[nan, 0.0, 0.0]])
    log_softmax = ml.log_softmax(row, dim=1)
    np.testing.assert_array_equal(log_softmax.numpy(), [[nan, -inf, -inf]])
    (log_softmax * ml.tensor([[1.0, 2.0, 3.0]], dtype=ml.float64)).sum().backward()
    np.testing.assert_array_equal(row.grad.numpy(), [[nan, 2.0, 3.0]])


@pytest.mark.parametrize("reduce", [lambda x: x.max(), lambda x: x.max(1).values,
                                    lambda x: (-x).amin(1, keepdim=True), lambda x: ml.amax(x)])
@np.errstate(all="ignore")  # an infinite slope on purpose
def test_an_infinite_gradient_after_max_reaches_only_the_maximum(reduce):
    """sqrt's slope at 0 after a max is inf: multiplied by the share 0 of the elements that
    are not the maximum, it made nan there (PyTorch's max gives them 0), and through them
    every weight before it."""
    x = ml.tensor([[0.0, -1.0, -2.0], [-3.0, 0.0, -1.0]], dtype=ml.float64, requires_grad=True)
    ml.sqrt(reduce(x)).sum().backward()
    winners = x.numpy() == 0
    assert np.isinf(x.grad.numpy()[winners]).all()
    np.testing.assert_array_equal(x.grad.numpy()[~winners], 0.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, np.int64, np.bool_])
def test_sum_of_integers_and_bools_is_int64(dtype):
    """As in PyTorch: NumPy sums the unsigned integers in uint64."""
    x = ml.tensor(np.array([[200, 100], [1, 0]], dtype=dtype))
    assert x.sum().dtype == np.int64 and x.sum(1).dtype == np.int64
    assert x.sum().item() == np.array([[200, 100], [1, 0]], dtype=dtype).sum()


@pytest.mark.parametrize("dim", [0, -1])
def test_a_0d_tensor_takes_dim_0_or_minus_1_and_reduces_nothing(dim):
    """As in PyTorch: the one element is its own sum, mean, max and logsumexp, its softmax is
    1, its log_softmax 0 and its argmax 0; the gradient of the sum is 1."""
    x = ml.tensor(2.5, dtype=ml.float64, requires_grad=True)
    for reduce in (ml.sum, ml.mean, ml.amax, ml.amin, ml.logsumexp):
        assert reduce(x, dim).shape == () and reduce(x, dim).item() == 2.5
    assert ml.softmax(x, dim).item() == 1.0 and ml.log_softmax(x, dim).item() == 0.0
    assert ml.argmax(x, dim).item() == 0 and ml.argmin(x, dim, keepdim=True).shape == ()
    ml.sum(x, dim).backward()
    assert x.grad.item() == 1.0


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value")
def test_var_and_std_over_an_empty_dim_are_nan_like_torch(unbiased):
    x = ml.zeros(2, 0, dtype=ml.float64)
    assert np.isnan(ml.var(x, 1, unbiased=unbiased).numpy()).all()
    assert np.isnan(ml.std(x, 1, unbiased=unbiased).numpy()).all()


def test_the_functional_forms_default_to_pytorchs_keepdim_and_unbiased():
    """ml.sum(x, 1) and the others drop the reduced axis unless asked, as torch.sum does, and
    var and std divide by n - 1 unless told unbiased=False (the methods pass both explicitly;
    these are the functions' own defaults)."""
    values = np.arange(6.0).reshape(2, 3) ** 2
    x = ml.tensor(values, dtype=ml.float64)
    for reduce, reference in [(ml.sum, np.sum), (ml.mean, np.mean), (ml.amax, np.max),
                              (ml.amin, np.min)]:
        np.testing.assert_allclose(reduce(x, 1).numpy(), reference(values, axis=1))
    np.testing.assert_allclose(ml.var(x, 1).numpy(), values.var(axis=1, ddof=1))
    np.testing.assert_allclose(ml.std(x, 1).numpy(), values.std(axis=1, ddof=1))
    assert ml.argmax(x, 1).tolist() == [2, 2] and ml.argmin(x, 1).tolist() == [0, 0]


def test_sum_of_uint64_stays_uint64():
    """Only the narrower unsigned types become int64: uint64 values above 2^63 would wrap."""
    x = ml.tensor(np.array([2**63, 1], np.uint64))
    assert x.sum().dtype == np.uint64 and x.sum().item() == 2**63 + 1


HALF_SIZE = 70_000  # past 65,504, float16's largest number: a count of elements there is inf


@pytest.mark.parametrize("name, values, op", [
    ("sum", "small", lambda x: x.sum()), ("mean", "small", lambda x: x.mean()),
    ("mean over a dim", "small", lambda x: x.reshape(2, -1).mean(1)),
    ("var", "normal", lambda x: x.var()), ("std", "normal", lambda x: x.std()),
    ("amax of ties", "ones", lambda x: x.amax()), ("logsumexp", "normal", lambda x: x.logsumexp(0)),
    ("softmax", "normal", lambda x: x.softmax(0)), ("softmax of zeros", "zeros",
                                                    lambda x: x.softmax(0)),
    ("log_softmax", "normal", lambda x: x.log_softmax(0)),
    ("mse_loss", "small", lambda x: ml.nn.functional.mse_loss(x, ml.zeros_like(x))),
    ("mse_loss summed", "small",
     lambda x: ml.nn.functional.mse_loss(x, ml.zeros_like(x), reduction="sum"))])
def test_float16_reductions_over_many_elements_accumulate_in_float32(name, values, op):
    """Over 70,000 float16 elements the mean of 0.001s was 0 with gradient 0 (the count, 70,000,
    is inf in float16), a mean of ones nan, a softmax of zeros summed to 0, and sums rounded
    their small terms away. They are accumulated and divided in float32, as in PyTorch, and
    given back in float16: the same numbers as the float64 op on the same values, up to
    float16's rounding of the result (subnormal below 6e-5, hence the absolute tolerance)."""
    rng = np.random.default_rng(0)
    data = {"small": rng.uniform(0.0005, 0.0015, HALF_SIZE), "normal": rng.standard_normal(
        HALF_SIZE), "ones": np.ones(HALF_SIZE), "zeros": np.zeros(HALF_SIZE)}[values]
    data = data.astype(np.float16)
    outs, grads = [], []
    for dtype in (np.float16, np.float64):
        x = ml.tensor(data.astype(dtype), requires_grad=True)
        out = op(x)
        out.backward(np.random.default_rng(1).standard_normal(out.shape).astype(np.float16))
        assert out.dtype == x.grad.dtype == dtype
        outs.append(out.numpy().astype(np.float64))
        grads.append(x.grad.numpy().astype(np.float64))
    np.testing.assert_allclose(outs[0], outs[1], rtol=2e-3, atol=1e-7)
    np.testing.assert_allclose(grads[0], grads[1], rtol=2e-3, atol=1e-7)


@pytest.mark.parametrize("scale", [1e-4, 3e-4])
def test_float16_std_of_a_small_spread_is_the_root_of_the_float32_variance(scale):
    """A float16 variance is subnormal below 6.1e-5 (a std below 0.0078): its root, taken in
    float16, was 34% off for 1e-4 * [1, -1, 2, -2] (2.4e-4, not 1.8e-4), its gradient 25%, and
    0.3% off for 3e-4 * [1, -1, 2, -2], six times float16's rounding. The root is taken of
    the float32 variance and rounded once, as PyTorch's float16 std."""
    data = (scale * np.array([1.0, -1.0, 2.0, -2.0])).astype(np.float16)
    outs, grads = [], []
    for dtype in (np.float16, np.float64):
        x = ml.tensor(data.astype(dtype), requires_grad=True)
        out = x.std()
        out.backward(np.array(1.0, dtype))
        assert out.dtype == x.grad.dtype == dtype
        outs.append(float(out.item()))
        grads.append(x.grad.numpy().astype(np.float64))
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-3)  # float16 rounds to 2^-11
    np.testing.assert_allclose(grads[0], grads[1], rtol=2e-3)
