"""conv2d and conv_transpose2d: finite-difference gradients, PyTorch agreement, and errors."""
import numpy
import pytest
from hypothesis import given, strategies as st

import minilean as ml
from minilean import nn
from minilean.autograd.conv import conv2d, conv_transpose2d


@st.composite
def conv_configs(draw, transposed=False):
    """Small convolutions covering stride, padding, dilation, groups, odd sizes, batch 1,
    bias None and (transposed) output_padding."""
    groups = draw(st.integers(1, 2))
    config = dict(
        batch=draw(st.integers(1, 2)), groups=groups,
        in_channels=groups * draw(st.integers(1, 2)), out_channels=groups * draw(st.integers(1, 2)),
        kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        stride=draw(st.integers(1, 2)), dilation=draw(st.integers(1, 2)),
        bias=draw(st.booleans()))
    # a transposed conv's output, (H-1)s - 2p + d(k-1) + output_padding + 1, stays >= 1
    # for every input size when 2p <= d(k-1)
    max_padding = config["dilation"] * (min(config["kernel"]) - 1) // 2 if transposed else 2
    config["padding"] = draw(st.integers(0, max_padding))
    smallest = 1 if transposed else config["dilation"] * (max(config["kernel"]) - 1) + 1
    smallest = max(1, smallest - 2 * config["padding"])
    config["size"] = (draw(st.integers(smallest, smallest + 3)),
                      draw(st.integers(smallest, smallest + 3)))
    if transposed:
        config["output_padding"] = draw(st.integers(
            0, max(config["stride"], config["dilation"]) - 1))
    return config


def make_inputs(config, transposed, seed=0):
    rng = numpy.random.default_rng(seed)
    c_in, c_out, groups = config["in_channels"], config["out_channels"], config["groups"]
    weight_shape = ((c_in, c_out // groups) if transposed else (c_out, c_in // groups)) \
        + config["kernel"]
    arrays = [rng.standard_normal((config["batch"], c_in) + config["size"]),
              rng.standard_normal(weight_shape)]
    if config["bias"]:
        arrays.append(rng.standard_normal(c_out))
    return arrays


def apply(library, arrays, config, transposed):
    """Run conv2d or conv_transpose2d with the config's parameters in minilean or torch."""
    functional = library.nn.functional if library is not ml else None
    name = "conv_transpose2d" if transposed else "conv2d"
    function = getattr(functional, name) if functional else (
        conv_transpose2d if transposed else conv2d)
    x, weight, *bias = arrays
    params = dict(stride=config["stride"], padding=config["padding"],
                  dilation=config["dilation"], groups=config["groups"])
    if transposed:
        params["output_padding"] = config["output_padding"]
    return function(x, weight, bias[0] if bias else None, **params)


@pytest.mark.parametrize("transposed", [False, True])
@given(data=st.data())
def test_gradients_match_finite_differences(transposed, data):
    config = data.draw(conv_configs(transposed))
    inputs = [ml.tensor(a, requires_grad=True) for a in make_inputs(config, transposed)]
    assert ml.gradcheck(lambda *t: apply(ml, t, config, transposed), inputs)


@pytest.mark.parametrize("transposed", [False, True])
@given(data=st.data())
def test_matches_torch_forward_and_backward(transposed, data):
    config = data.draw(conv_configs(transposed))
    assert_matches_torch(make_inputs(config, transposed), config, transposed)


def assert_matches_torch(arrays, config, transposed):
    """Output and every input gradient (for a random cotangent) agree with PyTorch."""
    torch = pytest.importorskip("torch")
    ours = [ml.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y_ours, y_theirs = apply(ml, ours, config, transposed), apply(torch, theirs, config, transposed)
    numpy.testing.assert_allclose(y_ours.numpy(), y_theirs.detach().numpy(), rtol=1e-6, atol=1e-12)
    cotangent = numpy.random.default_rng(1).standard_normal(y_theirs.shape)
    y_ours.backward(ml.tensor(cotangent))
    y_theirs.backward(torch.tensor(cotangent))
    for mine, reference in zip(ours, theirs):
        numpy.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(),
                                      rtol=1e-6, atol=1e-12)


def test_float32_stays_float32_and_bias_gradient_is_a_sum():
    x = ml.randn(2, 3, 5, 5, requires_grad=True)
    weight = ml.randn(4, 3, 3, 3, requires_grad=True)
    bias = ml.zeros(4, requires_grad=True)
    y = conv2d(x, weight, bias, padding=1)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == weight.grad.dtype == numpy.float32
    numpy.testing.assert_allclose(bias.grad.numpy(), numpy.full(4, 2 * 5 * 5))


def test_sizes_and_groups_may_be_numpy_integers():
    x, weight = ml.randn(1, 4, 5, 5), ml.randn(4, 2, 3, 3)
    numpy.testing.assert_array_equal(
        conv2d(x, weight, stride=numpy.int64(2), padding=(numpy.int32(1), 1),
               groups=numpy.int64(2)).numpy(),
        conv2d(x, weight, stride=2, padding=1, groups=2).numpy())


def test_large_batch_goes_through_in_slabs(monkeypatch):
    """A batch bigger than one slab of columns gives the same result as a single slab."""
    from minilean.autograd import conv
    rng = numpy.random.default_rng(0)
    x, weight = rng.standard_normal((5, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))

    def run():
        inputs = [ml.tensor(x, requires_grad=True), ml.tensor(weight, requires_grad=True)]
        y = conv2d(*inputs, padding=1)
        y.backward(ml.tensor(numpy.cos(y.numpy())))
        return [y.numpy()] + [t.grad.numpy() for t in inputs]

    whole = run()
    monkeypatch.setattr(conv, "SLAB_BYTES", 1)  # one image per slab
    for single, sliced in zip(whole, run()):
        numpy.testing.assert_allclose(sliced, single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 2, 3, 3)),
     "input has 3 channels but weight expects 2"),
    (lambda: conv2d(ml.zeros(1, 4, 5, 5), ml.zeros(3, 2, 3, 3), groups=2),
     "groups must divide out_channels=3, got 2"),
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 1, 3, 3), groups=2),
     "groups must divide in_channels=3, got 2"),
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 3, 3, 3), ml.zeros(5)),
     "bias shape (5,) does not match the 4 output channels"),
    (lambda: conv2d(ml.zeros(1, 3, 2, 2), ml.zeros(4, 3, 3, 3)), "output size (0, 0) is empty"),
    (lambda: conv2d(ml.zeros(3, 5, 5), ml.zeros(4, 3, 3, 3)), "needs a 4-d input"),
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 3, 3, 3), stride=(1, 2, 3)),
     "stride must be an int >= 1 or a pair of them, got (1, 2, 3)"),
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 3, 3, 3), stride=0),
     "stride must be an int >= 1 or a pair of them, got 0"),
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 3, 3, 3), padding=(1, -1)),
     "padding must be an int >= 0 or a pair of them, got (1, -1)"),
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 3, 3, 3), dilation=0),
     "dilation must be an int >= 1 or a pair of them, got 0"),
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 3, 3, 3), stride=True),
     "stride must be an int >= 1 or a pair of them, got True"),  # a bool is no size
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 3, 3, 3), groups=True),
     "groups must be an int >= 1, got True"),
    (lambda: conv_transpose2d(ml.zeros(1, 3, 5, 5), ml.zeros(3, 2, 3, 3), stride=(2, 0)),
     "stride must be an int >= 1 or a pair of them, got (2, 0)"),
    (lambda: conv_transpose2d(ml.zeros(1, 3, 5, 5), ml.zeros(4, 2, 3, 3)),
     "input has 3 channels but weight expects 4"),
    (lambda: conv_transpose2d(ml.zeros(1, 3, 4, 4), ml.zeros(3, 2, 3, 3), groups=2),
     "groups must divide in_channels=3, got 2"),
    (lambda: conv_transpose2d(ml.zeros(1, 4, 5, 5), ml.zeros(4, 2, 3, 3), stride=2,
                              output_padding=2),
     "output_padding (2, 2) must be smaller than stride (2, 2) or dilation (1, 1)"),
    # no channels on the side PyTorch refuses too (the GEMM's reshapes failed in NumPy's words)
    (lambda: conv2d(ml.zeros(1, 3, 5, 5), ml.zeros(0, 3, 3, 3)),
     "conv2d: weight of shape (0, 3, 3, 3) has no output channels"),
    (lambda: conv_transpose2d(ml.zeros(1, 0, 5, 5), ml.zeros(0, 2, 3, 3)),
     "conv_transpose2d: weight of shape (0, 2, 3, 3) has no input or no output channels"),
    (lambda: conv_transpose2d(ml.zeros(1, 3, 5, 5), ml.zeros(3, 0, 3, 3)),
     "conv_transpose2d: weight of shape (3, 0, 3, 3) has no input or no output channels"),
])
def test_bad_arguments_raise_one_line_value_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("groups, message", [
    (0, "groups must be an int >= 1, got 0"),
    (True, "groups must be an int >= 1, got True"),  # a bool is no count
    (2, "groups must divide in_channels=3, got 2"),
])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv2d", "conv_transpose2d"])
def test_bad_groups_read_the_same_from_the_layer_and_the_op(groups, message, transposed):
    """The layer checks groups at construction (it sizes the weight by them) and the op at
    each call, both with autograd/conv's check_groups: one message for one bad value."""
    layer, op = (nn.ConvTranspose2d, conv_transpose2d) if transposed else (nn.Conv2d, conv2d)
    weight = ml.zeros(3, 2, 3, 3) if transposed else ml.zeros(4, 1, 3, 3)  # 3 -> 4 channels
    for call in (lambda: layer(3, 4, 3, groups=groups),
                 lambda: op(ml.zeros(1, 3, 5, 5), weight, groups=groups)):
        with pytest.raises(ValueError) as error:
            call()
        assert str(error.value) == message


def test_chained_layers_on_channels_last_views():
    """conv2d hands back NCHW views of channels-last memory; the next conv (no padding, so
    its input is used as a view), a transposed conv and pooling must take them as they are."""
    from minilean.autograd.pool import avg_pool2d, max_pool2d
    rng = numpy.random.default_rng(0)
    x = ml.tensor(rng.standard_normal((2, 2, 6, 6)), requires_grad=True)
    w1 = ml.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    w2 = ml.tensor(rng.standard_normal((3, 2, 2, 2)), requires_grad=True)
    w3 = ml.tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)

    def network(x, w1, w2, w3):
        h = conv_transpose2d(conv2d(x, w1, padding=1), w2, stride=2)  # (2, 2, 12, 12)
        return avg_pool2d(max_pool2d(conv2d(h, w3), 2), 2)

    assert ml.gradcheck(network, [x, w1, w2, w3])


@pytest.mark.parametrize("kernel, padding, dilation, transposed", [
    ((3, 3), 1, 1, False), ((2, 3), 0, 2, False), ((3, 2), 2, 1, False), ((3, 3), 1, 1, True)])
def test_few_output_channels_take_the_shifted_rows_path(kernel, padding, dilation, transposed):
    """8 -> 2 channels at stride 1 skips im2col (conv._shifted_pays); it must agree with
    finite differences and with PyTorch, views of channels-last input included."""
    from minilean.autograd import conv
    assert conv._shifted_pays(8, 2, (1, 1), 1)
    config = dict(batch=2, groups=1, in_channels=8, out_channels=2, kernel=kernel, stride=1,
                  dilation=dilation, padding=padding, bias=True, size=(5, 6), output_padding=0)
    arrays = make_inputs(config, transposed)
    arrays[0] = numpy.ascontiguousarray(arrays[0].transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert ml.gradcheck(lambda *t: apply(ml, t, config, transposed),
                        [ml.tensor(a, requires_grad=True) for a in arrays])
    assert_matches_torch(arrays, config, transposed)


@pytest.mark.parametrize("transposed", [False, True])
def test_stride_padding_and_dilation_may_differ_per_axis(transposed):
    """(stride, padding, dilation) pairs with other values along H than along W: the drawn
    configurations give each one number, which hid a mix-up of the two axes (the input
    gradient's crop by the padding, say)."""
    config = dict(batch=2, groups=1, in_channels=2, out_channels=3, kernel=(3, 2), stride=(2, 1),
                  dilation=(1, 2), padding=(1, 0), bias=True, size=(5, 6),
                  output_padding=(1, 0))
    arrays = make_inputs(config, transposed)
    assert ml.gradcheck(lambda *t: apply(ml, t, config, transposed),
                        [ml.tensor(a, requires_grad=True) for a in arrays])
    assert_matches_torch(arrays, config, transposed)


@pytest.mark.parametrize("out_channels, transposed", [(2, False), (6, False), (2, True), (6, True)])
def test_an_empty_batch_gives_an_empty_batch_and_zero_weight_gradients(out_channels, transposed):
    """No samples, through im2col (6 of 8 channels) and the shifted rows (2 of 8, stride 1)."""
    x = ml.zeros(0, 8, 5, 6, requires_grad=True)
    weight_shape = (8, out_channels, 3, 3) if transposed else (out_channels, 8, 3, 3)
    weight, bias = ml.ones(*weight_shape, requires_grad=True), ml.ones(out_channels,
                                                                       requires_grad=True)
    out = (conv_transpose2d if transposed else conv2d)(x, weight, bias, padding=1)
    out.sum().backward()
    assert out.shape == (0, out_channels, 5, 6) and x.grad.shape == x.shape
    assert not weight.grad.numpy().any() and not bias.grad.numpy().any()


@pytest.mark.parametrize("groups, padding", [(1, 1), (1, 0), (2, 0)])
def test_no_input_channels_give_no_output_channels_as_in_torch(groups, padding):
    """conv2d of an input with 0 channels failed with NumPy's "cannot reshape array of size 0";
    PyTorch returns an empty (N, 0, Ho, Wo) (no output channels, the bias unused) and zero
    gradients for the weight and bias."""
    torch = pytest.importorskip("torch")
    out_channels = 2 * groups
    x = ml.zeros(2, 0, 5, 5, requires_grad=True)
    weight = ml.ones(out_channels, 0, 3, 3, requires_grad=True)
    bias = ml.tensor(numpy.arange(1.0, out_channels + 1, dtype=numpy.float32), requires_grad=True)
    out = conv2d(x, weight, bias, padding=padding, groups=groups)
    out.sum().backward()
    tx, tweight, tbias = (torch.tensor(t.numpy(), requires_grad=True) for t in (x, weight, bias))
    expected = torch.nn.functional.conv2d(tx, tweight, tbias, padding=padding, groups=groups)
    expected.sum().backward()
    assert out.shape == tuple(expected.shape) and out.dtype == numpy.float32
    for ours, theirs in ((x, tx), (weight, tweight), (bias, tbias)):
        numpy.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())
        assert ours.grad.shape == tuple(theirs.grad.shape)


def _direct_conv(x, weight):
    """Cross-correlation at stride 1 without padding, summed loop by loop in float64."""
    out_h, out_w = x.shape[2] - weight.shape[2] + 1, x.shape[3] - weight.shape[3] + 1
    out = numpy.zeros((x.shape[0], weight.shape[0], out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, None, :, i:i + weight.shape[2], j:j + weight.shape[3]]
            out[:, :, i, j] = (patch * weight[None]).sum(axis=(2, 3, 4))
    return out


def test_conv2d_of_mixed_dtypes_computes_in_their_common_dtype():
    """An integer image with a float32 weight failed with NumPy's casting error; a float64
    weight with a float32 image was rounded to float32 (the output took the image's dtype)."""
    rng = numpy.random.default_rng(0)
    image = rng.integers(0, 255, (1, 2, 4, 4))
    weight = rng.standard_normal((3, 2, 2, 2))
    out = conv2d(ml.tensor(image), ml.tensor(weight, dtype=ml.float32))
    assert out.dtype == numpy.float32
    numpy.testing.assert_allclose(out.numpy(), _direct_conv(image, weight), rtol=1e-5)
    x = ml.tensor(image / 255.0, dtype=ml.float32, requires_grad=True)
    w = ml.tensor(weight + 1e-9, requires_grad=True)  # float64, more digits than float32 keeps
    out = conv2d(x, w)
    assert out.dtype == numpy.float64
    numpy.testing.assert_allclose(out.numpy(), _direct_conv(x.numpy().astype(numpy.float64),
                                                            weight + 1e-9), rtol=1e-12)
    out.sum().backward()
    assert (x.grad.dtype, w.grad.dtype) == (numpy.float32, numpy.float64)
    assert conv_transpose2d(ml.tensor(image), ml.tensor(weight.transpose(1, 0, 2, 3),
                                                        dtype=ml.float32)).dtype == numpy.float32


# --- padding="same" and padding="valid" ----------------------------------------------------

@st.composite
def string_padding_configs(draw):
    """Stride-1 convolutions with padding "same" or "valid": odd and even kernels, with odd and
    even dilations (d (K - 1) odd pads one more after than before), per axis."""
    groups = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["same", "valid"]))
    smallest = [1 if padding == "same" else d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    return dict(batch=draw(st.integers(1, 2)), groups=groups,
                in_channels=groups * draw(st.integers(1, 2)),
                out_channels=groups * draw(st.integers(1, 2)), kernel=kernel, stride=1,
                dilation=dilation, bias=draw(st.booleans()), padding=padding,
                size=tuple(draw(st.integers(low, low + 3)) for low in smallest))


@given(config=string_padding_configs())
def test_same_and_valid_padding_gradients_match_finite_differences(config):
    inputs = [ml.tensor(a, requires_grad=True) for a in make_inputs(config, False)]
    assert ml.gradcheck(lambda *t: apply(ml, t, config, False), inputs)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@given(config=string_padding_configs())
def test_same_and_valid_padding_match_torch(config):
    """padding="same" and "valid", PyTorch's, were refused ("padding must be an int >= 0 or a
    pair of them, got 'same'"); "same" keeps the input's size, and where d (K - 1) is odd pads
    the extra row and column after, as PyTorch."""
    arrays = make_inputs(config, False)
    if config["padding"] == "same":
        assert apply(ml, [ml.tensor(a) for a in arrays], config, False).shape[2:] == \
            config["size"]
    assert_matches_torch(arrays, config, False)


def test_same_padding_of_an_even_kernel_pads_after_as_torch():
    """A 2 x 2 kernel whose one 1 is top-left gives x back: the padding is 0 before and 1
    after (before it, the output would be x shifted down and right by one)."""
    x = numpy.arange(20.0).reshape(1, 1, 4, 5)
    weight = numpy.zeros((1, 1, 2, 2))
    weight[0, 0, 0, 0] = 1.0
    numpy.testing.assert_array_equal(
        conv2d(ml.tensor(x), ml.tensor(weight), padding="same").numpy(), x)
    layer = nn.Conv2d(1, 1, 2, padding="same", bias=False)
    layer.weight.data[...] = weight
    numpy.testing.assert_array_equal(layer(ml.tensor(x.astype(numpy.float32))).numpy(), x)


@pytest.mark.parametrize("make, message", [
    (lambda: conv2d(ml.zeros(1, 2, 5, 5), ml.zeros(3, 2, 3, 3), stride=2, padding="same"),
     "padding='same' is not supported for strided convolutions, got stride (2, 2)"),
    (lambda: nn.Conv2d(2, 3, 3, stride=(1, 2), padding="same"),
     "padding='same' is not supported for strided convolutions, got stride (1, 2)"),
    (lambda: conv2d(ml.zeros(1, 2, 5, 5), ml.zeros(3, 2, 3, 3), padding="full"),
     "padding must be 'same', 'valid', an int >= 0 or a pair of them, got 'full'"),
    (lambda: nn.Conv2d(2, 3, 3, padding="SAME"),
     "padding must be 'same', 'valid', an int >= 0 or a pair of them, got 'SAME'"),
    # PyTorch's transposed convolutions have no string padding either
    (lambda: nn.ConvTranspose2d(2, 3, 3, padding="same"),
     "padding must be an int >= 0 or a pair of them, got 'same'"),
])
def test_string_padding_errors_are_one_line_where_the_layer_is_built(make, message):
    with pytest.raises(ValueError) as error:
        make()
    assert str(error.value) == message


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_a_conv_layer_with_string_padding_prints_and_computes_as_torchs(padding):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(2, 3, (2, 3), padding=padding, dilation=(3, 1)).double()
    ours = nn.Conv2d(2, 3, (2, 3), padding=padding, dilation=(3, 1)).to(dtype=numpy.float64)
    assert repr(ours) == repr(theirs)
    ours.load_state_dict({name: value.detach().numpy()
                          for name, value in theirs.state_dict().items()})
    x = numpy.random.default_rng(0).standard_normal((2, 2, 6, 5))
    numpy.testing.assert_allclose(ours(ml.tensor(x)).numpy(),
                                  theirs(torch.tensor(x)).detach().numpy(), rtol=1e-6,
                                  atol=1e-12)
