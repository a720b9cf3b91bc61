"""Python's protocols on tensors: truth value, float() and int() of one-element tensors, len()
and iteration, NumPy's __array__, and var/std taking their flags by keyword only."""
import re

import numpy as np
import pytest

import fake_cupy
import minilean as ml


@pytest.mark.parametrize("values, truth", [([0.0], False), (0.0, False), ([2.0], True),
                                           (-0.5, True), ([[True]], True), ([False], False),
                                           (0, False), ([3], True)])
def test_a_one_element_tensor_has_the_truth_value_of_its_element(values, truth):
    assert bool(ml.tensor(values)) is truth
    assert (not ml.tensor(values)) is (not truth)


def test_if_on_a_comparison_takes_the_branch_of_its_value():
    taken = "greater" if ml.tensor([2.0]) > ml.tensor([3.0]) else "not greater"
    assert taken == "not greater"
    assert ml.tensor(3.0) > 2.0 and not ml.tensor([1.0]) == 2.0


@pytest.mark.parametrize("shape, message", [
    ((2,), r"tensor with more than one element is ambiguous, got shape \(2,\)"),
    ((2, 3), r"tensor with more than one element is ambiguous, got shape \(2, 3\)"),
    ((0,), r"tensor with no elements is ambiguous, got shape \(0,\)")])
def test_the_truth_value_of_several_or_no_elements_is_an_error(shape, message):
    with pytest.raises(ValueError, match=message) as error:
        bool(ml.zeros(shape))
    assert "\n" not in str(error.value)


def test_float_and_int_read_the_one_element():
    assert float(ml.tensor([2.5])) == 2.5 and type(float(ml.tensor([2.5]))) is float
    assert float(ml.tensor(7)) == 7.0
    assert int(ml.tensor(-2.7)) == -2 and type(int(ml.tensor(-2.7))) is int  # truncates, like int()
    assert int(ml.arange(5)[3]) == 3
    assert float(ml.tensor([[True]])) == 1.0
    assert ml.tensor([1.0, 2.0])[int(ml.tensor([1]))].item() == 2.0


@pytest.mark.parametrize("convert", [float, int])
@pytest.mark.parametrize("shape", [(2,), (0,), (1, 3)])
def test_float_and_int_of_several_or_no_elements_name_the_shape(convert, shape):
    with pytest.raises(ValueError, match=rf"{convert.__name__}\(\) needs a single-element "
                                         rf"tensor, got shape {re_shape(shape)}"):
        convert(ml.zeros(shape))
    with pytest.raises(ValueError, match=r"item\(\) needs a single-element tensor"):
        ml.zeros(shape).item()


def test_a_one_element_integer_tensor_is_an_index_where_python_wants_one():
    """``items[t]`` and ``range(t)`` were TypeErrors; PyTorch takes them. A float, a bool or
    several elements are not an index."""
    assert [10, 20, 30][ml.tensor(1)] == 20 and list(range(ml.tensor([3]))) == [0, 1, 2]
    assert np.arange(5)[ml.tensor(np.int32(4))] == 4
    for tensor in (ml.tensor(1.0), ml.tensor(True), ml.tensor([0, 1])):
        with pytest.raises(TypeError, match=f"^only a one-element integer tensor can be an "
                                            f"index, got {tensor.dtype} of shape "
                                            f"{re_shape(tensor.shape)}$"):
            [10, 20, 30][tensor]


def test_a_tensor_compared_with_none_is_a_plain_bool():
    """As in PyTorch: ``if t != None:`` asked the truth value of an elementwise answer."""
    x = ml.tensor([1.0, 2.0])
    assert (x == None) is False and (x != None) is True  # noqa: E711  (the comparison tested)
    assert x is not None and x in [x] and [x].index(x) == 0


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


def test_conversions_of_a_cuda_tensor_copy_its_value_to_the_host(monkeypatch):
    fake_cuda = fake_cupy.install(monkeypatch)
    try:
        x = ml.tensor([-2.5], device="cuda")
        fake_cupy.transfers.reset()
        assert bool(x) is True and float(x) == -2.5 and int(x) == -2
        assert fake_cupy.transfers.to_host == 3  # one copy of one value per conversion
        assert isinstance(x.data, fake_cuda.ndarray)
    finally:
        fake_cupy.forget_device_state()


def test_a_0d_tensor_formats_as_its_value_in_an_f_string(monkeypatch):
    """As in PyTorch: f"{loss:.4f}" in a training loop; it was a TypeError."""
    assert f"{ml.tensor(3.14159):.3f}" == "3.142" and f"{ml.tensor(7):>3d}" == "  7"
    assert f"{ml.tensor(0.5, requires_grad=True) * 2:.2e}" == "1.00e+00"
    assert f"{ml.tensor([1.5])}" == repr(ml.tensor([1.5]))
    with pytest.raises(TypeError, match="unsupported format string"):
        f"{ml.tensor([1.5]):.3f}"  # noqa: B018 (as in PyTorch: several values have no one format)
    fake_cupy.install(monkeypatch)
    try:
        x = ml.tensor(2.5, device="cuda")
        fake_cupy.transfers.reset()
        assert f"{x:.1f}" == "2.5" and fake_cupy.transfers.to_host == 1
    finally:
        fake_cupy.forget_device_state()


@pytest.mark.parametrize("source", [memoryview, np.asarray, ml.Tensor],
                         ids=["memoryview", "ndarray", "Tensor"])
def test_tensor_copies_any_array_it_is_given(source):
    """The docstring's promise; a memoryview (with no .copy()) was shared, not copied."""
    host = np.array([1.5, -2.0])
    x = ml.tensor(source(host))
    host[0] = 9.0
    assert x.tolist() == [1.5, -2.0] and x.dtype == np.float64


def test_from_numpy_shares_the_array_and_keeps_its_dtype():
    host = np.array([[1.5, -2.0]])
    x = ml.from_numpy(host)
    host[0, 0] = 9.0
    assert x.tolist() == [[9.0, -2.0]] and x.dtype == np.float64 and x.device == "cpu"
    assert ml.from_numpy(np.arange(3, dtype=np.uint8)).dtype == np.uint8
    with pytest.raises(TypeError, match="^from_numpy takes a NumPy array, got list$"):
        ml.from_numpy([1.0, 2.0])


# --- len, iteration and numpy.asarray ------------------------------------------------------

def test_len_and_iteration_of_a_0d_tensor_are_type_errors_as_in_torch():
    with pytest.raises(TypeError, match=r"^len\(\) of a 0-d tensor$"):
        len(ml.tensor(1.0))
    with pytest.raises(TypeError, match="^iteration over a 0-d tensor$"):
        iter(ml.tensor(1.0))
    rows = list(ml.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert len(ml.ones(3, 2)) == 3 and [row.tolist() for row in rows] == [[1, 2], [3, 4]]


def test_in_looks_for_an_element_equal_to_the_value():
    x = ml.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert 3.0 in x and 5.0 not in x and ml.tensor(4.0) in x and 1 in ml.arange(3)
    assert 0.0 not in ml.zeros(0, 2)


@pytest.mark.parametrize("value, kind", [(None, "NoneType"), ("a", "str")])
def test_in_refuses_a_value_that_is_not_a_number(value, kind):
    """As torch's __contains__ refuses it: None failed on ``'bool' object has no attribute
    'data'`` (x == None is a plain False), text in NumPy's ufunc loop lookup."""
    with pytest.raises(TypeError, match=f"^'in' looks for a number \\(or a tensor or array of "
                                        f"them\\) in a tensor, got {kind}$"):
        value in ml.tensor([1.0, 2.0])


@pytest.mark.parametrize("compare, name, got", [
    (lambda x: x == ["a", "b"], "equal", "list of <U1"),
    (lambda x: x < ["a", "b"], "less", "list of <U1"), (lambda x: "b" >= x, "less_equal", "str")])
def test_a_comparison_with_text_is_a_type_error_that_names_the_operand(compare, name, got):
    """NumPy's UFuncTypeError named only the dtypes of the loops it did not find."""
    with pytest.raises(TypeError, match=f"^an operand of {name} must be a Tensor, an array or "
                                        f"a number, got {re.escape(got)}$"):
        compare(ml.tensor([1.0, 2.0]))


@pytest.mark.parametrize("other", ["a", b"a", object(), {"a": 1}, ml.nn.ReLU()])
def test_equality_with_what_holds_no_numbers_is_pythons_false_as_in_torch(other):
    """x == other is False and x != other True (NotImplemented, then Python's identity), as
    torch's: Python compares x with each item of a list in ``in``, ``index`` and ``remove``, so
    ``x in ["auto", x]`` failed on the text beside it."""
    torch = pytest.importorskip("torch")
    x = ml.tensor([1.0, 2.0])
    assert (x == other) is False and (x != other) is True
    assert (other == x) is False and (other != x) is True
    assert (torch.tensor([1.0, 2.0]) == other) is False
    items = [other, x]
    assert x in items and items.index(x) == 1
    items.remove(x)
    assert items == [other]


def test_numpy_asarray_reads_the_host_array_under_numpys_copy_protocol():
    x = ml.tensor([[1.5, -2.0]])
    host = np.asarray(x)
    assert type(host) is np.ndarray and host.dtype == np.float32 and host.shape == (1, 2)
    np.testing.assert_array_equal(host, [[1.5, -2.0]])
    assert np.shares_memory(host, x.data)  # copy=None: no copy where none is needed
    assert np.shares_memory(np.asarray(x, copy=False), x.data)
    assert not np.shares_memory(np.array(x), x.data)  # copy=True
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="Unable to avoid copy"):
        np.asarray(x, dtype=np.float64, copy=False)


def test_numpy_asarray_of_a_cuda_tensor_copies_to_the_host_or_refuses_copy_false(monkeypatch):
    fake_cupy.install(monkeypatch)
    try:
        x = ml.tensor([-2.5, 1.0], device="cuda")
        fake_cupy.transfers.reset()
        host = np.asarray(x)
        assert type(host) is np.ndarray and fake_cupy.transfers.to_host == 1
        np.testing.assert_array_equal(host, [-2.5, 1.0])
        with pytest.raises(ValueError, match="a cuda tensor cannot be a NumPy array without a "
                                             "copy to the host"):
            np.asarray(x, copy=False)
    finally:
        fake_cupy.forget_device_state()


# --- var and std: flags by keyword only (PyTorch's positional order is dim, unbiased, keepdim)

@pytest.mark.parametrize("name", ["var", "std"])
def test_var_and_std_take_keepdim_and_unbiased_by_keyword_only(name):
    x = ml.tensor(np.arange(6.0).reshape(2, 3), dtype=ml.float64)
    with pytest.raises(TypeError, match="positional argument"):
        getattr(x, name)(1, True)
    with pytest.raises(TypeError, match="positional argument"):
        getattr(x, name)(1, False, True)
    out = getattr(x, name)(1, unbiased=False, keepdim=True)
    expected = getattr(np, name)(np.arange(6.0).reshape(2, 3), axis=1, keepdims=True)
    assert out.shape == (2, 1)
    np.testing.assert_allclose(out.numpy(), expected)
    np.testing.assert_allclose(getattr(x, name)(0).numpy(),
                               getattr(np, name)(x.numpy(), axis=0, ddof=1))


@pytest.mark.parametrize("name", ["var", "std"])
def test_var_and_std_refuse_a_bool_where_dim_goes(name):
    """PyTorch's x.var(False) means unbiased=False; here a bool dim would reduce over dim 0."""
    with pytest.raises(TypeError, match=rf"{name}\(\) takes dim first, got the bool False: "
                                        r"pass unbiased= and keepdim= by keyword"):
        getattr(ml.ones(2, 3), name)(False)
