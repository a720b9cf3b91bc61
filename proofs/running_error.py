"""Running error analysis (Wilkinson; Higham, Accuracy and Stability, section 3.3): the engine's
computation replayed in mpmath step by step, in the engine's own order, each intermediate a
``Carried``: its exact value and a bound on how far the engine's value of it can be.

The bound gamma_K * sum |terms| on a formula's own terms fails where a difference of nearly
equal numbers is scaled up afterwards: x - mean(x) of a nearly constant group carries an
absolute error ~ u |x|, and 1 / std (up to 1 / sqrt(eps)) magnifies it. Carrying every
error through the next step keeps that. The rules, each an upper bound (nothing is dropped,
not even second-order terms), for operands a, b within e_a, e_b of their exact values:

* a +- b: e_a + e_b;  a b: |a| e_b + |b| e_a + e_a e_b;
  a / b: (|b| e_a + |a| e_b) / (|b| (|b| - e_b)) (infinite unless e_b < |b|);
  sqrt(q): min(e_q / sqrt(q), sqrt(e_q)) (since |sqrt q' - sqrt q| = |q' - q| / (sqrt q' +
  sqrt q), at most sqrt |q' - q|: the smaller where q is below its error, as Adam's v ~ 1e-80
  of a float32 square that underflowed, error ~1e-45, whose e_q / sqrt(q) ~ 1e-5 swamped
  the eps ~1e-8 added next and left the update's bound infinite);
  and then the operation's own rounding, gamma_1 (|exact result| + that error), plus the
  smallest subnormal (gradual underflow);
* a sum of n terms, in any order (pairwise, BLAS, a product with a vector of ones): the terms'
  errors plus gamma_{n-1} sum_i (|t_i| + e_i) (Higham's (3.5)), plus n - 1 subnormals;
* sigma(a), computed as ``tail_accurate_sigmoid``: within gamma_{2L+2} sigma of sigma at the
  computed argument (L = ``library_roundings``; autograd.py's SIGMOID_ROUNDINGS), which is
  within e_a / 4 of sigma(a) (sigma's slope is at most 1/4);
* tanh(a), NumPy's: within gamma_L |tanh| of tanh at the computed argument, which is within
  e_a of tanh(a) (tanh's slope is at most 1);
* a constant written in Python (eps, 2 / n): its distance, after rounding to the dtype, from
  the exact value.
"""
import mpmath
import numpy

from proofs.numerics import gamma, library_roundings, underflow


class Carried:
    """One intermediate: ``value`` (exact, mpmath), ``error`` (a bound on |engine - value|)."""

    def __init__(self, value, error, dtype):
        self.value, self.error, self.dtype = value, error, dtype

    @classmethod
    def exact(cls, value, dtype):
        """An input the dtype holds exactly (drawn float32s, integer counts)."""
        return cls(mpmath.mpf(value), mpmath.mpf(0), dtype)

    @classmethod
    def array(cls, values, dtype):
        """An object array of exact inputs, in the shape of ``values``."""
        flat = [cls.exact(v, dtype) for v in numpy.asarray(values).reshape(-1)]
        return numpy.asarray(flat, dtype=object).reshape(numpy.shape(values))

    @classmethod
    def constant(cls, value, dtype):
        """The constant ``value`` (an mpf) as the engine uses it: a Python float, then the
        dtype (NumPy casts a Python scalar to the array's dtype)."""
        stored = mpmath.mpf(float(numpy.dtype(dtype).type(float(value))))
        return cls(value, abs(stored - value), dtype)

    def _rounded(self, value, propagated):
        """The result ``value`` of one correctly rounded operation whose operands bring an
        error ``propagated``."""
        return Carried(value, propagated + gamma(1, self.dtype) * (abs(value) + propagated)
                       + underflow(1, self.dtype), self.dtype)

    def _lift(self, other):
        return other if isinstance(other, Carried) else Carried.exact(other, self.dtype)

    def __add__(self, other):
        other = self._lift(other)
        return self._rounded(self.value + other.value, self.error + other.error)

    def __sub__(self, other):
        other = self._lift(other)
        return self._rounded(self.value - other.value, self.error + other.error)

    def __rsub__(self, other):
        return self._lift(other) - self

    def __neg__(self):
        return Carried(-self.value, self.error, self.dtype)  # exact

    def __mul__(self, other):
        other = self._lift(other)
        return self._rounded(self.value * other.value, abs(self.value) * other.error
                             + abs(other.value) * self.error + self.error * other.error)

    __rmul__ = __mul__

    def __truediv__(self, other):
        other = self._lift(other)
        room = abs(other.value) - other.error
        propagated = ((abs(other.value) * self.error + abs(self.value) * other.error)
                      / (abs(other.value) * room) if room > 0 else mpmath.inf)
        return self._rounded(self.value / other.value, propagated)

    def __rtruediv__(self, other):
        return self._lift(other) / self

    def sqrt(self):
        root = mpmath.sqrt(self.value)
        held = mpmath.sqrt(self.error)  # |sqrt q' - sqrt q| <= sqrt |q' - q|, always
        return self._rounded(root, min(self.error / root, held) if root > 0 else held)

    def sigmoid(self):
        """``tail_accurate_sigmoid``: 2 library calls and 2 roundings, relative to sigma."""
        sigma = 1 / (1 + mpmath.exp(-self.value))
        shifted = self.error / 4
        roundings = 2 * library_roundings(self.dtype) + 2
        return Carried(sigma, shifted + gamma(roundings, self.dtype) * (sigma + shifted)
                       + underflow(roundings, self.dtype), self.dtype)

    def tanh(self):
        """``numpy.tanh``: one library call, within gamma_L |tanh| of tanh at the computed
        argument (L = ``library_roundings``), which is within e_a of tanh(a) (tanh's slope is
        at most 1)."""
        value = mpmath.tanh(self.value)
        shifted = self.error
        roundings = library_roundings(self.dtype)
        return Carried(value, shifted + gamma(roundings, self.dtype) * (abs(value) + shifted)
                       + underflow(roundings, self.dtype), self.dtype)

    @staticmethod
    def total(terms):
        """The engine's sum of ``terms`` (a non-empty list of Carried), in any order."""
        head, count = terms[0], len(terms) - 1
        value = mpmath.fsum(t.value for t in terms)
        errors = mpmath.fsum(t.error for t in terms)
        magnitude = mpmath.fsum(abs(t.value) + t.error for t in terms)
        return Carried(value, errors + gamma(count, head.dtype) * magnitude
                       + underflow(count, head.dtype), head.dtype)

    @staticmethod
    def mean(terms):
        """The engine's mean: the sum, then one division by the count."""
        return Carried.total(terms) / len(terms)

    @staticmethod
    def centered(terms):
        """x_i - m as the engine's ``Var`` computes it: (x_i - x_1) - mean(x - x_1)."""
        shifted = [term - terms[0] for term in terms]
        mean = Carried.mean(shifted)
        return [term - mean for term in shifted]
