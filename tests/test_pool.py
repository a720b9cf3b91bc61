"""avg_pool2d, max_pool2d, interpolate: finite-difference gradients, PyTorch agreement, errors."""
import numpy
import pytest
from hypothesis import given, strategies as st

import minilean as ml
from minilean.autograd.pool import avg_pool2d, interpolate, max_pool2d


@st.composite
def pool_configs(draw):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.integers(1, 3)))
    padding = draw(st.integers(0, min(kernel) // 2))
    size = tuple(draw(st.integers(max(1, k - 2 * padding), k + 3)) for k in kernel)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + size
    return shape, dict(kernel_size=kernel, stride=stride, padding=padding)


def distinct_values(shape, seed=0):
    """Well-separated values, so a finite-difference nudge never changes a window's argmax."""
    rng = numpy.random.default_rng(seed)
    return rng.permutation(numpy.prod(shape)).reshape(shape) * 0.1


@pytest.mark.parametrize("name", ["avg_pool2d", "max_pool2d"])
@given(config=pool_configs())
def test_pool_gradients_match_finite_differences(name, config):
    shape, params = config
    pool = {"avg_pool2d": avg_pool2d, "max_pool2d": max_pool2d}[name]
    x = ml.tensor(distinct_values(shape), requires_grad=True)
    assert ml.gradcheck(lambda t: pool(t, **params), [x])


@pytest.mark.parametrize("name", ["avg_pool2d", "max_pool2d"])
@given(config=pool_configs())
def test_pool_matches_torch(name, config):
    torch = pytest.importorskip("torch")
    shape, params = config
    values = distinct_values(shape)
    ours, theirs = ml.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    pool = {"avg_pool2d": avg_pool2d, "max_pool2d": max_pool2d}[name]
    y_ours, y_theirs = pool(ours, **params), getattr(torch.nn.functional, name)(theirs, **params)
    numpy.testing.assert_allclose(y_ours.numpy(), y_theirs.detach().numpy(), rtol=1e-6)
    cotangent = numpy.random.default_rng(1).standard_normal(y_theirs.shape)
    y_ours.backward(ml.tensor(cotangent))
    y_theirs.backward(torch.tensor(cotangent))
    numpy.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-6, atol=1e-12)


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
       scale=st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
def test_interpolate_gradients_and_torch(shape, scale):
    values = numpy.random.default_rng(0).standard_normal(shape)
    x = ml.tensor(values, requires_grad=True)
    assert ml.gradcheck(lambda t: interpolate(t, scale_factor=scale), [x])
    torch = pytest.importorskip("torch")
    theirs = torch.tensor(values, requires_grad=True)
    y_theirs = torch.nn.functional.interpolate(theirs, scale_factor=scale, mode="nearest")
    y_ours = interpolate(ml.tensor(values, requires_grad=True), scale_factor=scale)
    numpy.testing.assert_array_equal(y_ours.numpy(), y_theirs.detach().numpy())
    cotangent = numpy.random.default_rng(1).standard_normal(y_theirs.shape)
    y_theirs.backward(torch.tensor(cotangent))
    x.grad = None
    interpolate(x, scale_factor=scale).backward(ml.tensor(cotangent))
    numpy.testing.assert_allclose(x.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)


def test_interpolate_refuses_pytorch_positional_size_and_a_missing_scale():
    """PyTorch's F.interpolate(x, 2) is a 2 x 2 output (size), and F.interpolate(x) an error:
    neither may upsample by 2 here."""
    x = ml.zeros(1, 1, 4, 4)
    with pytest.raises(TypeError, match="takes 1 positional argument but 2 were given"):
        interpolate(x, 2)
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'scale_factor'"):
        interpolate(x)


def test_max_pool_gradient_goes_to_the_argmax_only():
    x = ml.tensor([[[[1.0, 5.0], [3.0, 2.0]]]], requires_grad=True)
    max_pool2d(x, 2).backward(ml.tensor([[[[7.0]]]]))
    numpy.testing.assert_array_equal(x.grad.numpy(), [[[[0.0, 7.0], [0.0, 0.0]]]])


def test_max_pool_gives_a_tie_gradient_to_the_first_maximum_as_torch():
    """Ties within a window (ReLU zeros, saturated pixels) send the whole gradient to the
    first maximum in row-major order, as PyTorch; overlapping windows add up there."""
    values = numpy.array([[[[2.0, 2.0, 0.0], [2.0, 1.0, 2.0], [0.0, 2.0, 2.0]]]])
    x = ml.tensor(values, requires_grad=True)
    max_pool2d(x, 2, stride=1).backward(ml.tensor(numpy.arange(1.0, 5.0).reshape(1, 1, 2, 2)))
    numpy.testing.assert_array_equal(x.grad.numpy(),
                                     [[[[1.0, 2.0, 0.0], [3.0, 0.0, 4.0], [0.0, 0.0, 0.0]]]])
    torch = pytest.importorskip("torch")
    theirs = torch.tensor(values, requires_grad=True)
    torch.nn.functional.max_pool2d(theirs, 2, stride=1).backward(
        torch.arange(1.0, 5.0, dtype=torch.float64).reshape(1, 1, 2, 2))
    numpy.testing.assert_array_equal(x.grad.numpy(), theirs.grad.numpy())


def test_max_pool_gives_0_not_nan_beside_the_argmax_for_an_infinite_gradient():
    """(max_pool2d(x) - m).sqrt() at its 0 sends back inf: multiplied by the argmax's one-hot,
    the window's other places got inf * 0 = nan (PyTorch: 0)."""
    x = ml.tensor(numpy.array([[[[1.0, 2.0], [0.5, -1.0]]]]), requires_grad=True)
    max_pool2d(x, 2).backward(ml.tensor(numpy.full((1, 1, 1, 1), numpy.inf)))
    numpy.testing.assert_array_equal(x.grad.numpy(), [[[[0.0, numpy.inf], [0.0, 0.0]]]])


def test_max_pool_of_minus_infinity_beside_the_padding_keeps_the_gradient():
    """A window whose values are all -inf ties with the -inf padding: the argmax was the
    padding's, where the gradient was dropped; PyTorch gives it to the window's first value
    inside the image."""
    values = numpy.array([[[[-numpy.inf, 1.0], [-numpy.inf, -numpy.inf]]]])
    x = ml.tensor(values, requires_grad=True)
    y = max_pool2d(x, 2, stride=1, padding=1)
    y.backward(ml.tensor(numpy.arange(1.0, 10.0).reshape(y.shape)))
    # the 3x3 output's gradients 1..9, row by row: windows 1, 4 (pixel (0, 0) first inside),
    # 7, 8 (pixel (1, 0)) and 9 see only -inf; windows 2, 3, 5, 6 see the 1.0 at (0, 1)
    numpy.testing.assert_array_equal(x.grad.numpy(), [[[[1 + 4, 2 + 3 + 5 + 6], [7 + 8, 9]]]])
    torch = pytest.importorskip("torch")
    theirs = torch.tensor(values, requires_grad=True)
    torch.nn.functional.max_pool2d(theirs, 2, stride=1, padding=1).backward(
        torch.arange(1.0, 10.0, dtype=torch.float64).reshape(y.shape))
    numpy.testing.assert_array_equal(x.grad.numpy(), theirs.grad.numpy())


@pytest.mark.parametrize("call, message", [
    (lambda: avg_pool2d(ml.zeros(2, 4, 4), 2), "avg_pool2d needs a 4-d input"),
    (lambda: max_pool2d(ml.zeros(1, 1, 4, 4), 2, padding=2),
     "padding (2, 2) must be at most half of kernel_size (2, 2)"),
    (lambda: max_pool2d(ml.zeros(1, 1, 2, 2), 3),
     "input of spatial size (2, 2) is smaller than kernel_size (3, 3)"),
    (lambda: avg_pool2d(ml.zeros(1, 1, 4, 4), 0),
     "kernel_size (0, 0) and stride (0, 0) must be positive"),
    (lambda: interpolate(ml.zeros(1, 1, 2, 2), scale_factor=1.5), "integer scale_factor"),
    # these failed in float()'s words ("argument must be a string or a real number") and as
    # "'>=' not supported between instances of 'str' and 'int'", naming neither the argument
    (lambda: interpolate(ml.zeros(1, 1, 2, 2), scale_factor=None),
     "positive integer scale_factor (or a pair), got None"),
    (lambda: interpolate(ml.zeros(1, 1, 2, 2), scale_factor=(2, "2")),
     "positive integer scale_factor (or a pair), got (2, '2')"),
    (lambda: interpolate(ml.zeros(1, 1, 2, 2), scale_factor=2, mode="bilinear"),
     "mode='nearest' only, got mode='bilinear'"),
    (lambda: interpolate(ml.zeros(2, 2, 2), scale_factor=2),
     "interpolate needs a 4-d input (N, C, H, W), got shape (2, 2, 2)"),
])
def test_bad_arguments_raise_one_line_value_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("pool", [lambda x: max_pool2d(x, 2), lambda x: avg_pool2d(x, 2, 1, 1),
                                  lambda x: interpolate(x, scale_factor=2)])
def test_pooling_an_empty_batch_gives_an_empty_batch(pool):
    x = ml.zeros(0, 3, 4, 4, requires_grad=True)
    out = pool(x)
    out.sum().backward()
    assert out.shape[:2] == (0, 3) and x.grad.shape == (0, 3, 4, 4)


def test_average_pooling_of_integers_is_float32():
    out = avg_pool2d(ml.tensor(numpy.arange(16).reshape(1, 1, 4, 4)), 2)
    assert out.dtype == numpy.float32
    numpy.testing.assert_array_equal(out.numpy()[0, 0], [[2.5, 4.5], [10.5, 12.5]])


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "float16"])
def test_max_pool_padding_of_an_integer_tensor_never_wins(dtype):
    """The padding was -inf cast to the dtype: 0 for int8 and int16, which beat every window of
    negative values ([0, 0, 0, -5] for PyTorch's [-1, -2, -4, -5]). It is the dtype's minimum:
    the result is that of the same values in float64, where the padding is -inf."""
    values = -numpy.arange(1, 10).reshape(1, 1, 3, 3)
    if dtype == "uint8":
        values = values + 10  # 9 down to 1
    expected = max_pool2d(ml.tensor(values.astype(numpy.float64)), 2, stride=2, padding=1)
    out = max_pool2d(ml.tensor(values.astype(dtype)), 2, stride=2, padding=1)
    assert out.dtype == dtype
    numpy.testing.assert_array_equal(out.numpy(), expected.numpy())
    if dtype == "int8":
        assert out.numpy().ravel().tolist() == [-1, -2, -4, -5]


def test_max_pool_padding_of_a_bool_tensor_is_false():
    """-inf cast to bool is True: a window of padding and False values gave True."""
    mask = numpy.array([[False, False], [False, True]]).reshape(1, 1, 2, 2)
    out = max_pool2d(ml.tensor(mask), 2, stride=2, padding=1)
    assert out.numpy().ravel().tolist() == [False, False, False, True]


# --- the layers: nn.MaxPool2d and nn.AvgPool2d ---------------------------------------------

@pytest.mark.parametrize("name", ["MaxPool2d", "AvgPool2d"])
@pytest.mark.parametrize("args, options", [((2,), {}), ((3,), dict(stride=1, padding=1)),
                                           (((3, 2),), dict(stride=(1, 2), padding=(1, 0)))])
def test_pool_layers_match_torch_forward_backward_and_print(name, args, options):
    """The layers PyTorch code builds (``nn.MaxPool2d(2)``) did not exist: an AttributeError.
    Their stride defaults to the kernel size, and they print as PyTorch's."""
    torch = pytest.importorskip("torch")
    ours, theirs = getattr(ml.nn, name)(*args, **options), getattr(torch.nn, name)(*args, **options)
    assert repr(ours) == repr(theirs)
    values = distinct_values((2, 3, 6, 5))
    mine = ml.tensor(values, requires_grad=True)
    reference = torch.tensor(values, requires_grad=True)
    out, expected = ml.nn.Sequential(ours)(mine), theirs(reference)
    numpy.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-6)
    cotangent = numpy.random.default_rng(1).standard_normal(expected.shape)
    out.backward(ml.tensor(cotangent))
    expected.backward(torch.tensor(cotangent))
    numpy.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-6,
                                  atol=1e-12)


@pytest.mark.parametrize("layer", [ml.nn.MaxPool2d(2), ml.nn.AvgPool2d(3, stride=2, padding=1),
                                   ml.nn.MaxPool2d((3, 2), stride=1, padding=1)])
def test_pool_layer_gradients_match_finite_differences(layer):
    x = ml.tensor(distinct_values((2, 2, 5, 6)), requires_grad=True)
    assert ml.gradcheck(layer, [x])


@pytest.mark.parametrize("make, message", [
    (lambda: ml.nn.MaxPool2d(2, ceil_mode=True),
     "MaxPool2d supports ceil_mode=False only, got ceil_mode=True"),
    (lambda: ml.nn.MaxPool2d(2, return_indices=True),
     "MaxPool2d supports return_indices=False only, got return_indices=True"),
    (lambda: ml.nn.MaxPool2d(2, dilation=2),
     "MaxPool2d supports dilation=1 only, got dilation=2"),
    (lambda: ml.nn.AvgPool2d(2, ceil_mode=True),
     "AvgPool2d supports ceil_mode=False only, got ceil_mode=True"),
    (lambda: ml.nn.AvgPool2d(2, count_include_pad=False),
     "AvgPool2d supports count_include_pad=True only, got count_include_pad=False"),
    (lambda: ml.nn.AvgPool2d(2, divisor_override=3),
     "AvgPool2d supports divisor_override=None only, got divisor_override=3"),
    # a bad size fails where the layer is built, not at its first forward
    (lambda: ml.nn.MaxPool2d(0),
     "MaxPool2d: kernel_size (0, 0) and stride (0, 0) must be positive"),
    (lambda: ml.nn.AvgPool2d(2, padding=2),
     "AvgPool2d: padding (2, 2) must be at most half of kernel_size (2, 2)"),
])
def test_pool_layers_refuse_what_the_ops_do_not_have_in_one_line(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert str(error.value) == message


def test_pool_layers_take_pytorchs_defaults_where_given():
    """The options at their defaults, given by name or position (a dilation of 1 as a pair, as
    PyTorch prints it), are taken."""
    layer = ml.nn.MaxPool2d(2, None, 0, (1, 1), False, False)
    assert layer.stride == 2 and layer.dilation == (1, 1)
    layer = ml.nn.AvgPool2d(2, 1, 0, False, True, None)
    assert layer(ml.ones(1, 1, 3, 3)).shape == (1, 1, 2, 2)
