"""Shape ops and indexing: gradcheck and PyTorch oracle over drawn shapes and arguments, plus
repeated indices, dtype/device moves, views and bad arguments."""
import re
import warnings

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minilean as ml
from minilean.autograd import shape as shape_ops
from opcheck import OpCase, arrays, op_tests


def _torch():
    import torch
    return torch


def _pad(x, pad, value):
    import torch.nn.functional
    return torch.nn.functional.pad(x, pad, value=value)


def shapes(min_dims=1, max_dims=3, min_side=1, max_side=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


@st.composite
def operand(draw, params_for, min_dims=1, min_side=1):
    """One operand of a drawn shape and the parameters ``params_for(draw, shape)`` picks."""
    shape = draw(shapes(min_dims=min_dims, min_side=min_side))
    return (draw(arrays(shape)),), params_for(draw, shape)


def reshape_params(draw, shape):
    size = int(np.prod(shape))
    return {"shape": draw(st.sampled_from([(-1,), (size,), tuple(reversed(shape)),
                                           (1,) + shape, shape + (1,), (size, 1), (-1, 1)]))}


def permute_params(draw, shape):
    return {"dims": tuple(draw(st.permutations(range(len(shape)))))}


def axis(draw, ndim):
    return draw(st.integers(-ndim, ndim - 1))


def two_axes(draw, shape):
    return {"dim0": axis(draw, len(shape)), "dim1": axis(draw, len(shape))}


def squeeze_params(draw, shape):
    return {"dim": draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))}


def unsqueeze_params(draw, shape):
    return {"dim": draw(st.integers(-len(shape) - 1, len(shape)))}


def expand_params(draw, shape):
    """Stretch the size-1 axes (or keep them with -1) and add up to two leading axes."""
    grown = tuple(draw(st.sampled_from([1, 3, -1])) if size == 1 else
                  draw(st.sampled_from([size, -1])) for size in shape)
    return {"shape": tuple(draw(st.lists(st.integers(1, 3), max_size=2))) + grown}


def flatten_params(draw, shape):
    start = axis(draw, len(shape))
    return {"start_dim": start, "end_dim": draw(st.integers(start % len(shape), len(shape) - 1))}


def pad_params(draw, shape):
    axes = draw(st.integers(1, len(shape)))
    return {"pad": tuple(draw(st.lists(st.integers(0, 2), min_size=2 * axes, max_size=2 * axes))),
            "value": draw(st.sampled_from([0.0, -1.5]))}


def split_params(draw, shape):
    dim = axis(draw, len(shape))
    length = shape[dim]
    if draw(st.booleans()):
        return {"split_size": draw(st.integers(1, length + 1)), "dim": dim}
    cuts = sorted(draw(st.lists(st.integers(0, length), max_size=2)))
    return {"split_size": [b - a for a, b in zip([0] + cuts, cuts + [length])], "dim": dim}


def chunk_params(draw, shape):
    return {"chunks": draw(st.integers(1, 4)), "dim": axis(draw, len(shape))}


def basic_index(draw, shape):
    """ints, positive-step slices, None and Ellipsis (torch has no negative steps)."""
    parts = []
    for size in shape[:draw(st.integers(1, len(shape)))]:
        parts.append(draw(st.one_of(
            st.integers(-size, size - 1),
            st.builds(slice, st.one_of(st.none(), st.integers(-size, size)),
                      st.one_of(st.none(), st.integers(-size, size)),
                      st.one_of(st.none(), st.integers(1, 2))))))
    if draw(st.booleans()):
        parts.insert(draw(st.integers(0, len(parts))), None)
    if draw(st.booleans()):
        parts.append(Ellipsis)
    return tuple(parts)


def index_params(draw, shape):
    """Basic, integer-array (with repeats), boolean-mask and mixed indices."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["basic", "integers", "mask", "mixed"]))
    if kind == "basic":
        index = basic_index(draw, shape)
    elif kind == "integers":
        index = rng.integers(-shape[0], shape[0], size=(2, 3))  # repeats are likely
    elif kind == "mask":
        index = rng.random(shape) < 0.5
    elif len(shape) > 2:  # an int, a slice, then an array: PyTorch applies the int first
        index = (int(rng.integers(-shape[0], shape[0])), slice(None),
                 rng.integers(0, shape[2], size=4))
    else:
        index = (slice(None), rng.integers(0, shape[1], size=4)) if len(shape) > 1 else [0, 0]
    return {"index": index}


def torch_index(index):
    """The same index with arrays and lists as torch tensors."""
    torch = _torch()
    convert = (lambda part: torch.as_tensor(part) if isinstance(part, (np.ndarray, list))
               else part)
    return tuple(map(convert, index)) if isinstance(index, tuple) else convert(index)


@st.composite
def several(draw, same_shape):
    """2-3 operands that agree on every axis but ``dim`` (or everywhere, for stack)."""
    shape = list(draw(shapes()))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    operands = []
    for _ in range(draw(st.integers(2, 3))):
        if not same_shape:
            shape[dim] = draw(st.integers(1, 3))
        operands.append(draw(arrays(tuple(shape))))
    if same_shape:
        dim = draw(st.integers(-len(shape) - 1, len(shape)))
    return tuple(operands), {"dim": dim}


def weighted_cat(pieces, dim, cat):
    """Join the pieces back, each scaled by its position, so that a mix-up would show."""
    return cat([piece * (position + 1) for position, piece in enumerate(pieces)], dim)


CASES = [
    OpCase("reshape", operand(reshape_params, min_dims=0), ml.reshape,
           lambda x, shape: x.reshape(shape)),
    OpCase("view", operand(reshape_params, min_dims=0), lambda x, shape: x.view(*shape),
           lambda x, shape: x.reshape(shape)),
    OpCase("permute", operand(permute_params), ml.permute, lambda x, dims: x.permute(dims)),
    OpCase("transpose", operand(two_axes), ml.transpose,
           lambda x, dim0, dim1: x.transpose(dim0, dim1)),
    OpCase("T", operand(lambda draw, shape: {}), lambda x: x.T,
           lambda x: x.permute(tuple(reversed(range(x.ndim))))),
    OpCase("squeeze", operand(squeeze_params), ml.squeeze,
           lambda x, dim: x.squeeze() if dim is None else x.squeeze(dim)),
    OpCase("unsqueeze", operand(unsqueeze_params, min_dims=0), ml.unsqueeze,
           lambda x, dim: x.unsqueeze(dim)),
    OpCase("expand", operand(expand_params, min_dims=0), lambda x, shape: x.expand(*shape),
           lambda x, shape: x.expand(shape)),
    OpCase("flatten", operand(flatten_params), ml.flatten,
           lambda x, start_dim, end_dim: x.flatten(start_dim, end_dim)),
    OpCase("getitem", operand(index_params), lambda x, index: x[index],
           lambda x, index: x[torch_index(index)]),
    OpCase("getitem_tensor_index", operand(index_params),
           lambda x, index: x[ml.tensor(index)] if isinstance(index, np.ndarray) else x[index],
           lambda x, index: x[torch_index(index)]),
    OpCase("cat", several(same_shape=False), lambda *xs, dim: ml.cat(xs, dim),
           lambda *xs, dim: _torch().cat(xs, dim)),
    OpCase("stack", several(same_shape=True), lambda *xs, dim: ml.stack(xs, dim),
           lambda *xs, dim: _torch().stack(xs, dim)),
    OpCase("pad", operand(pad_params), shape_ops.pad, _pad),
    OpCase("split", operand(split_params),
           lambda x, split_size, dim: weighted_cat(x.split(split_size, dim), dim, ml.cat),
           lambda x, split_size, dim: weighted_cat(x.split(split_size, dim), dim,
                                                   _torch().cat)),
    OpCase("chunk", operand(chunk_params),
           lambda x, chunks, dim: weighted_cat(ml.chunk(x, chunks, dim), dim, ml.cat),
           lambda x, chunks, dim: weighted_cat(x.chunk(chunks, dim), dim, _torch().cat)),
    OpCase("clone", operand(lambda draw, shape: {}, min_dims=0), ml.clone, lambda x: x.clone()),
]

test_gradcheck, test_matches_torch = op_tests(CASES)


def test_repeated_integer_indices_accumulate_their_gradients():
    x = ml.tensor([10.0, 20.0, 30.0], requires_grad=True)
    x[[0, 2, 0, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 1.0])


MASK = [True, False, True, False]


@pytest.mark.parametrize("index, ints_first", [  # (x[index], what PyTorch picks, written out)
    ((0, slice(None), [0, 1]), lambda x: x[0][:, [0, 1]]),  # (3, 2); NumPy's x[index]: (2, 3)
    ((0, None, slice(None), [0, 1]), lambda x: x[0][None, :, [0, 1]]),
    ((0, slice(None), MASK), lambda x: x[0][:, MASK]),
    ((slice(None), 0, [1, 2]), lambda x: x[:, 0][:, [1, 2]]),
    ((1, [0, 2], [1, 3]), lambda x: x[1][[0, 2], [1, 3]]),
    ((Ellipsis, 0, [1, 2]), lambda x: x[..., 0, :][..., [1, 2]]),
    # a 0-d integer tensor is an int to PyTorch; repeated indices add up their gradients
    ((ml.tensor(0), slice(None), [0, 1]), lambda x: x[0][:, [0, 1]]),
    ((ml.tensor(-1), slice(None), [3, 0, 3]), lambda x: x[-1][:, [3, 0, 3]]),
    # a tuple of picks (zip makes them) is a list of picks: it kept only the last repeat's
    # gradient, and its int selected among the arrays, as NumPy's does
    ((0, slice(None), (3, 0, 3)), lambda x: x[0][:, [3, 0, 3]]),
    ((1, (0, 0, 2), (1, 1, 3)), lambda x: x[1][[0, 0, 2], [1, 1, 3]]),
    (((1, 1), (0, 0)), lambda x: x[[1, 1], [0, 0]]),
    # a bool is a new axis of size 1 or 0 in its place to PyTorch, an index array to NumPy
    ((0, slice(None), True), lambda x: x[0][:, True]),  # (3, 1, 4); NumPy's: (1, 3, 4)
    ((0, True, 1), lambda x: x[0][None, 1]),  # a bool takes no axis of x: (1, 4)
    ((1, slice(None), ml.tensor(False), 2), lambda x: x[1][:, False, 2])])
def test_an_int_beside_index_arrays_selects_first_as_in_pytorch(index, ints_first):
    values = np.arange(24.0).reshape(2, 3, 4)
    x = ml.tensor(values, requires_grad=True)
    picked = x[index]
    np.testing.assert_array_equal(picked.numpy(), ints_first(values))
    picked.sum().backward()
    chosen = ints_first(np.arange(24).reshape(2, 3, 4)).ravel()  # each picked element's number
    np.testing.assert_array_equal(x.grad.numpy(),
                                  np.bincount(chosen, minlength=24).reshape(2, 3, 4))


@pytest.mark.parametrize("index", [
    (slice(None), [0, 1, 2], Ellipsis, [1, 3, 3]),  # (2, 3); NumPy's x[index]: (3, 2)
    (slice(1, 2), [True, False, True], Ellipsis, [3, 0]),  # (1, 2); NumPy's: (2, 1)
    (None, slice(None), [2, 2, 0], Ellipsis, [0, 1, 1])])
def test_an_ellipsis_standing_for_no_axis_leaves_index_arrays_adjacent(index):
    """PyTorch drops an Ellipsis that stands for no axis; NumPy counts it as a separator
    between index arrays, whose axes then come first: another shape, or the same numbers
    transposed, without a word."""
    values = np.arange(24.0).reshape(2, 3, 4)
    without = tuple(part for part in index if part is not Ellipsis)
    x = ml.tensor(values, requires_grad=True)
    picked = x[index]
    np.testing.assert_array_equal(picked.numpy(), values[without])
    picked.sum().backward()
    chosen = np.arange(24).reshape(2, 3, 4)[without].ravel()  # each picked element's number
    np.testing.assert_array_equal(x.grad.numpy(),
                                  np.bincount(chosen, minlength=24).reshape(2, 3, 4))
    torch = pytest.importorskip("torch")
    torch_index = tuple(torch.tensor(part) if isinstance(part, list) else part
                        for part in index)
    np.testing.assert_array_equal(picked.numpy(), torch.tensor(values)[torch_index].numpy())


@pytest.mark.parametrize("index", [
    [[0, 1], [2, 2]], [[0, 1]], [slice(0, 2), 1], [0, None, [1, 2]], [Ellipsis, [3, 0, 3]],
    [np.array([1, 1]), [0, 2]], [[1, 0], ml.tensor([2, 2])]])
def test_a_list_holding_index_parts_is_refused(index):
    """PyTorch reads x[[rows, cols]] as x[rows, cols] (deprecated); read as one array of rows,
    as NumPy reads it, it gave a (2, 2, 3, 4) result where PyTorch gives (2,)."""
    x = ml.tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    with pytest.raises(IndexError, match=r"index \[.*\]: a list holding index parts .* is "
                                         r"ambiguous .* expected x\[tuple\(index\)\]"):
        x[index]


@pytest.mark.parametrize("index, shape", [([1, 0], (2, 3, 4)), ([True, False], (1, 3, 4)),
                                         (list(range(2)) * 16, (32, 3, 4))])
def test_a_list_of_numbers_is_still_one_index_array(index, shape):
    """Numbers alone (and 32 items or more, as in PyTorch) are one array, not refused."""
    assert ml.tensor(np.arange(24.0).reshape(2, 3, 4))[index].shape == shape


@pytest.mark.parametrize("index, shape", [([], (0, 3, 4)), (([], slice(None), 1), (0, 3)),
                                         ((slice(None), []), (2, 0, 4))])
def test_an_empty_list_index_picks_nothing(index, shape):
    """NumPy makes [] a float64 array, which it refuses as an index; PyTorch picks nothing."""
    x = ml.tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    picked = x[index]
    assert picked.shape == shape
    picked.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((2, 3, 4)))


def test_boolean_mask_from_a_comparison_selects_and_routes_gradients():
    x = ml.tensor([[1.0, -2.0], [-3.0, 4.0]], requires_grad=True)
    picked = x[x > 0]
    np.testing.assert_array_equal(picked.numpy(), [1.0, 4.0])
    (picked * picked).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2.0, 0.0], [0.0, 8.0]])


def test_a_uint8_index_is_refused_as_a_mask_to_pytorch_and_positions_to_numpy():
    """x[mask.to(uint8)] selected by positions 0 and 1 (NumPy's reading): of [10, 20, 30] by
    [1, 0, 1], [20, 10, 20], where PyTorch reads a uint8 index as a mask: [10, 30]."""
    torch = pytest.importorskip("torch")
    with pytest.warns(UserWarning, match="indexing with dtype torch.uint8 is now deprecated"):
        assert torch.tensor([10.0, 20.0, 30.0])[
            torch.tensor([1, 0, 1], dtype=torch.uint8)].tolist() == [10.0, 30.0]
    x = ml.tensor([[10.0, 20.0, 30.0]])
    for index, shape in ((ml.tensor([1, 0, 1], dtype=ml.uint8), (3,)),
                         (np.array([1, 0, 1], dtype=np.uint8), (3,)),
                         (ml.tensor(1, dtype=ml.uint8), ())):
        with pytest.raises(IndexError, match=re.escape(
                f"a uint8 index of shape {shape} is a mask to PyTorch and positions to NumPy; "
                f"expected .bool() for a mask or .long() for positions")):
            x[0, index]
    mask = ml.tensor([1, 0, 1], dtype=ml.uint8)
    assert x[0, mask.bool()].tolist() == [10.0, 30.0]
    assert x[0, mask.long()].tolist() == [20.0, 10.0, 20.0]
    assert x[0, ml.tensor([2, 0], dtype=ml.int32)].tolist() == [30.0, 10.0]
    # embedding's indices are positions whatever their integer dtype
    table = ml.nn.functional.embedding(mask, x.reshape(3, 1))
    assert table.tolist() == [[20.0], [10.0], [20.0]]


def test_to_casts_and_sends_the_gradient_back_in_the_original_dtype():
    x = ml.tensor([1.0, 2.0], dtype=ml.float64, requires_grad=True)
    y = x.to(dtype=ml.float32)
    assert y.dtype == np.float32 and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])
    assert x.to("cpu") is x and x.double() is x
    index = x.to(dtype=ml.int64)
    assert index.dtype == np.int64 and not index.requires_grad


def test_to_casts_the_gradient_back_before_the_ops_in_the_original_dtype():
    """The gradient reaching the ops before ``to`` is in their dtype, as in PyTorch: a float64
    gradient of 1e5 is inf in float16, and so is the gradient of x / 4 there (it was 25000,
    the leaf's cast alone hiding that the float16 ops had run in float64)."""
    x = ml.tensor([1.0], dtype=ml.float16, requires_grad=True)
    with np.errstate(over="ignore"):  # the cast of 1e5 to float16 overflows, as meant
        ((x / 4).to(dtype=ml.float64) * 1e5).sum().backward()
    assert x.grad.dtype == np.float16
    np.testing.assert_array_equal(x.grad.numpy(), [np.inf])


@pytest.mark.parametrize("dtype", [ml.float64, np.dtype(np.float64)])
def test_to_takes_a_dtype_in_the_place_of_the_device_as_pytorch_does(dtype):
    """x.to(torch.float64) is PyTorch's usual spelling; here it was refused as a device."""
    x = ml.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(dtype)
    assert y.dtype == np.float64 and y.device == "cpu"
    y.sum().backward()
    assert x.grad.dtype == np.float32
    assert x.to(ml.int64).dtype == np.int64


def test_to_another_tensor_with_a_dtype_too_is_refused_in_one_line():
    """``x.to(other)`` takes other's device and dtype; a dtype given beside it failed in
    NumPy's words (the tensor was compared with the device names)."""
    other = ml.zeros(2, dtype=ml.float64)
    with pytest.raises(TypeError, match=r"^to\(other\) takes other's device and dtype, got "
                                        r"dtype=<class 'numpy.float16'> as well; pass "
                                        r"other.device and the dtype$"):
        ml.ones(2).to(other, np.float16)


def test_float_double_and_long_convert_as_pytorchs():
    labels = ml.tensor([1.7, -2.5, 3.0, 0.0])
    assert labels.long().dtype == np.int64 and labels.long().tolist() == [1, -2, 3, 0]
    assert ml.tensor([True, False]).long().tolist() == [1, 0]
    assert ml.arange(3).float().dtype == np.float32 and labels.double().dtype == np.float64


@pytest.mark.parametrize("method", ["int", "bool", "half", "long"])
def test_int_bool_and_half_convert_as_pytorchs(method):
    torch = pytest.importorskip("torch")
    values = [1.7, -2.5, 0.0, -0.0, 3.0, -1e-3]
    ours, theirs = getattr(ml.tensor(values), method)(), getattr(torch.tensor(values), method)()
    assert f"torch.{ours.dtype}" == str(theirs.dtype)
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("name", ["new_zeros", "new_ones"])
def test_new_zeros_and_ones_take_the_tensors_dtype_and_device_as_pytorchs(name):
    torch = pytest.importorskip("torch")
    for library in (ml, torch):
        x = library.ones(3, dtype=library.float64, requires_grad=True)
        for made, shape, dtype in ((getattr(x, name)(2, 3), (2, 3), "float64"),
                                   (getattr(x, name)((4,)), (4,), "float64"),
                                   (getattr(x, name)([2], dtype=library.int64), (2,), "int64")):
            assert tuple(made.shape) == shape and str(made.dtype).endswith(dtype)
            assert str(made.device) == "cpu" and not made.requires_grad
            assert made.tolist() == np.full(shape, 0 if name == "new_zeros" else 1).tolist()
        assert getattr(x, name)(2, requires_grad=True).requires_grad


def test_to_an_unusable_device_is_a_one_line_error():
    x = ml.ones(2)
    with pytest.raises(ValueError, match="device must be one of .*, got 'tpu'") as error:
        x.to("tpu")
    assert "\n" not in str(error.value)
    if not ml.cuda_available():
        with pytest.raises(ml.DeviceError, match="device 'cuda' needs") as error:
            x.cuda()
        assert "\n" not in str(error.value)


def test_reshape_transpose_and_basic_slicing_are_views():
    x = ml.arange(12, dtype=np.float64).reshape(3, 4)
    for view in (x.reshape(4, 3), x.T, x.transpose(0, 1), x[1:, ::2], x.unsqueeze(0),
                 x.expand(2, 3, 4)):
        assert np.shares_memory(view.data, x.data)


def test_clone_copies():
    x = ml.ones(3)
    copy = ml.clone(x)
    copy.data[0] = 5.0
    assert x.data[0] == 1.0


@pytest.mark.parametrize("join", [ml.cat, ml.stack])
@pytest.mark.parametrize("dtypes, joined", [
    ((ml.int64, ml.float32), ml.float32),  # NumPy: float64
    ((np.int32, np.float16), np.float16),  # NumPy: float32
    ((np.bool_, ml.float32), ml.float32),
    ((ml.float32, ml.float64, ml.int64), ml.float64),
    ((np.int32, ml.int64), ml.int64)])
def test_cat_and_stack_of_integers_with_floats_take_the_floats_dtype_as_pytorch(join, dtypes,
                                                                                joined):
    pieces = [ml.tensor([1, 0], dtype=dtype) for dtype in dtypes]
    floats = [piece.requires_grad_() for piece in pieces if piece.dtype.kind == "f"]
    result = join(pieces)
    assert result.dtype == joined
    assert result.numpy().ravel().tolist() == [1, 0] * len(dtypes)
    if floats:
        result.sum().backward()
        assert all(piece.grad.dtype == piece.dtype for piece in floats)


@pytest.mark.parametrize("shape", [(5, -1), (7, 4), (-1, -1)])
def test_a_shape_that_does_not_fit_is_refused_in_the_tensors_words(shape):
    """``x.view(batch_size, -1)`` on a smaller last batch; NumPy's error called -1 newaxis."""
    with pytest.raises(ValueError, match=rf"^cannot reshape a tensor of shape \(2, 3, 4\) \(24 "
                                         rf"elements\) to {re.escape(str(shape))}: the sizes "
                                         rf"must multiply to 24, with at most one -1 for the "
                                         rf"rest$"):
        ml.ones(2, 3, 4).view(*shape)


def test_flatten_and_pad_defaults_are_pytorchs():
    """flatten() merges every axis (a 0-d tensor becomes one element); pad fills with 0."""
    x = ml.tensor(np.arange(24.0).reshape(2, 3, 4))
    np.testing.assert_array_equal(ml.flatten(x).numpy(), np.arange(24.0))
    assert ml.flatten(ml.tensor(5.0)).tolist() == [5.0]
    np.testing.assert_array_equal(shape_ops.pad(ml.ones(2, 2), (1, 0)).numpy(),
                                  np.pad(np.ones((2, 2), np.float32), ((0, 0), (1, 0))))


def test_pad_value_none_pads_with_zero_as_in_torch():
    """PyTorch's value=None is 0: NumPy's constant None padded a float tensor with NaN and
    failed on an integer one with a TypeError from math.isfinite."""
    torch = pytest.importorskip("torch")
    for data in ([1.5, 2.0], [1, 2]):
        ours = shape_ops.pad(ml.tensor(data), (1, 2), value=None)
        theirs = torch.nn.functional.pad(torch.tensor(data), (1, 2), value=None)
        assert ours.tolist() == theirs.tolist() and ours.dtype == ml.tensor(data).dtype


def test_size_dim_and_cpu_answer_as_torch_does():
    x = ml.zeros(2, 3)
    assert x.size() == (2, 3) and x.size(1) == 3 and x.size(-2) == 2
    assert x.dim() == 2 and ml.tensor(1.0).dim() == 0
    assert x.cpu() is x  # already there: no copy, as in PyTorch


def test_bad_shape_arguments_name_the_values():
    x = ml.ones(2, 3)
    # NumPy reads any negative size as -1: reshape(3, -3) gave (3, 2); PyTorch refuses it
    for shape, axis in (((3, -3), 1), ((-2, 3), 0)):
        with pytest.raises(ValueError, match=re.escape(
                f"cannot reshape a tensor of shape (2, 3) to {shape}: sizes must be >= 0, or -1 "
                f"for the rest, got {shape[axis]} at axis {axis}")):
            x.reshape(*shape)
    assert x.reshape(3, -1).shape == (3, 2) and x.view(-1).shape == (6,)
    with pytest.raises(ValueError, match="^cat needs at least one tensor$"):
        shape_ops.cat([])
    with pytest.raises(ValueError, match="^stack needs at least one tensor$"):
        shape_ops.stack([])
    with pytest.raises(ValueError, match="^split_size must be positive, got 0$"):
        x.split(0, dim=1)
    with pytest.raises(ValueError, match="^chunks must be positive, got -1$"):
        x.chunk(-1)
    with pytest.raises(TypeError, match="^chunks must be an int, got 2.5$"):
        x.chunk(2.5)
    with pytest.raises(TypeError, match="^chunks must be an int, got None$"):
        x.chunk(None)
    with pytest.raises(ValueError, match=r"permute dims \(0, 0\) must name each of the 2 axes"):
        x.permute(0, 0)
    with pytest.raises(ValueError, match="dim 3 is out of range for a tensor with 2 dimensions"):
        x.transpose(0, 3)
    with pytest.raises(ValueError, match=r"pad \(1, 1, 1\) must have an even length"):
        shape_ops.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match=r"pad widths must be non-negative, got \(-1, 0\)"):
        shape_ops.pad(x, (-1, 0))
    # NumPy's "'float' object cannot be interpreted as an integer" named neither; PyTorch
    # refuses both too
    with pytest.raises(TypeError, match=r"^pad widths must be ints, got \(1.5, 1\)$"):
        shape_ops.pad(x, (1.5, 1))
    with pytest.raises(TypeError, match=r"^pad widths must be ints, got \(True, 1\)$"):
        shape_ops.pad(x, (True, 1))
    # NumPy would fill an integer tensor's border with garbage; PyTorch refuses too
    with pytest.raises(ValueError, match="pad value nan cannot be written into a tensor of "
                                         "int64; expected a finite number"):
        shape_ops.pad(ml.tensor([1, 2]), (1, 0), value=float("nan"))
    with warnings.catch_warnings():  # nothing is filled: no NumPy warning of a cast either
        warnings.simplefilter("error")
        assert shape_ops.pad(ml.tensor([1, 2]), (0, 0), value=float("inf")).tolist() == [1, 2]
    with pytest.raises(TypeError, match="^pad value must be a number, got 'a'$"):
        shape_ops.pad(x, (1, 1), value="a")
    # PyTorch's third argument is the mode: refused here, not taken for the value
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        shape_ops.pad(x, (1, 1), "constant")
    with pytest.raises(ValueError, match=r"split sizes \[1, 1\] must add up to the size 3"):
        x.split([1, 1], 1)
    # [4, -1] adds up to 3: it gave pieces of shape (2, 3) and (2, 0)
    with pytest.raises(ValueError, match=r"^split sizes \[4, -1\] must not be negative$"):
        x.split([4, -1], 1)
    with pytest.raises(TypeError, match=r"^split sizes must be ints, got \[1.5, 1.5\]$"):
        x.split([1.5, 1.5], 1)
    with pytest.raises(TypeError, match="^split_size_or_sections must be an int or a list of "
                                        "ints, got 2.0$"):
        x.split(2.0, 1)
    with pytest.raises(ValueError, match=r"stack needs tensors of equal shape, got \(2, 3\)"):
        ml.stack([x, ml.ones(3, 2)])
    with pytest.raises(ValueError, match="cat: tensors have different numbers of dimensions"):
        ml.cat([x, ml.ones(3)])
    with pytest.raises(ValueError, match=r"^cat along dim -1 needs tensors of equal sizes in "
                                         r"every other dim, got \(2, 3\) and \(3, 3\)$"):
        ml.cat([x, ml.ones(2, 1), ml.ones(3, 3)], dim=-1)
    # an item that is no Tensor failed inside with "'list' object has no attribute 'ndim'",
    # and one Tensor for the sequence was iterated into its rows (PyTorch refuses both)
    for join in (ml.cat, ml.stack):
        name = join.__name__
        for item, kind in (([1.0, 2.0, 3.0], "list"), (2.0, "float"), (None, "NoneType"),
                           (np.ones((2, 3)), "ndarray")):
            with pytest.raises(TypeError, match=rf"^{name}: item 1 of the sequence must be a "
                                                rf"Tensor, got {kind} \(make one with "
                                                rf"ml.tensor\(\.\.\.\)\)$"):
                join([x, item])
        with pytest.raises(TypeError, match=rf"^{name} takes a sequence of tensors, got one "
                                            rf"Tensor of shape \(2, 3\); expected a list, "
                                            rf"e.g. {name}\(\[a, b\]\)$"):
            join(x)
    assert ml.cat(t for t in (x, x)).shape == (4, 3) and ml.stack((x, x), 1).shape == (2, 2, 3)
    with pytest.raises(ValueError, match=r"expand to \(3,\) has fewer dimensions"):
        x.expand(3)
    with pytest.raises(ValueError, match=r"expand to \(-1, 2, 3\): -1 keeps an existing axis's "
                                         r"size, and the new leading axis 0 has none"):
        x.expand(-1, 2, 3)
    # NumPy's broadcast_to said "operands could not be broadcast together with remapped
    # shapes", naming neither the axis nor the size (PyTorch refuses these too)
    with pytest.raises(ValueError, match=r"^expand to \(4, 3\): axis 0 has size 2, which "
                                         r"cannot be expanded to 4 \(only a size of 1 can\); "
                                         r"expected 2 or -1 there$"):
        x.expand(4, 3)
    with pytest.raises(ValueError, match=r"^expand to \(5, 2, -2\): sizes must be >= 0 \(or -1 "
                                         r"to keep an axis's size\), got -2 at axis 2$"):
        x.expand(5, 2, -2)
    with pytest.raises(TypeError, match=r"^expand to \(2, 3.0\): sizes must be ints, got 3.0 at "
                                        r"axis 1$"):
        x.expand(2, 3.0)
    assert x[:, :1].expand(-1, 4).shape == (2, 4) and x.expand(0, 2, 3).shape == (0, 2, 3)
    with pytest.raises(ValueError, match="flatten: start_dim 1 comes after end_dim 0"):
        x.flatten(1, 0)
    with pytest.raises(ValueError, match=r"dim 1 is out of range for a 0-d tensor \(0 or -1\)"):
        ml.tensor(1.0).squeeze(1)


def test_empty_axes_split_and_squeeze_as_in_pytorch():
    """An empty batch still chunks into as many (empty) pieces as asked, and splits into one;
    a 0-d tensor squeezes over dim 0 or -1 to itself."""
    empty = ml.zeros(0, 3)
    assert [piece.shape for piece in empty.chunk(2)] == [(0, 3), (0, 3)]
    assert [piece.shape for piece in empty.split(2)] == [(0, 3)]
    assert [piece.shape for piece in ml.zeros(5, 3).chunk(2)] == [(3, 3), (2, 3)]
    assert ml.tensor(1.0).squeeze(0).shape == ml.tensor(1.0).squeeze(-1).shape == ()


def test_squeeze_and_split_take_numpy_integers_but_not_bools():
    x = ml.zeros(1, 5)
    assert x.squeeze(np.int64(0)).shape == (5,) and ml.tensor(1.0).squeeze(np.int64(-1)).shape == ()
    assert [piece.shape for piece in x.split(np.int64(2), 1)] == [(1, 2), (1, 2), (1, 1)]
    with pytest.raises(TypeError, match="^dim must be an int or a tuple of ints, got True$"):
        x.squeeze(True)


@pytest.mark.parametrize("shape", [(2.0, 3), (2, 3.0), (True, 6), (2.5, 3)])
def test_reshape_and_view_refuse_a_size_that_is_not_an_int(shape):
    """view(2.0, 3) of a (2, 3) tensor passed: (2.0, 3) == (2, 3), the shortcut for an unchanged
    shape; other float sizes failed in NumPy's words."""
    x = ml.zeros(2, 3)
    for call in (lambda: x.view(*shape), lambda: x.reshape(shape)):
        with pytest.raises(TypeError, match=rf"^shape must be a tuple of ints, got "
                                            rf"{re.escape(repr(shape))}$"):
            call()
    assert x.view(np.int64(3), 2).shape == (3, 2)


@pytest.mark.parametrize("dim", [True, 1.0, "0"])
def test_transpose_and_unsqueeze_refuse_a_dim_that_is_not_an_int(dim):
    x = ml.zeros(2, 3)
    assert x.transpose(np.int64(1), 0).shape == (3, 2)
    for call in (lambda: x.transpose(dim, 0), lambda: x.unsqueeze(dim)):
        with pytest.raises(TypeError, match=f"^dim must be an int, got {dim!r}$"):
            call()
