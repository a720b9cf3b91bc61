"""Objective algebra: the weighted sums that every generative-model loss in the zoo is made of.

TorchLean states its training objectives as weighted sums of named terms, and proves facts about
the models through these two shapes (``proofs/`` checks them):

* ``weighted_two_term(a, b, weight) = a + weight * b``
  (beta-VAE: reconstruction + beta * KL; LSGAN's generator loss),
* ``weighted_three_term(a, b, c, weight) = a + b + weight * c``
  (VQ-VAE: reconstruction + codebook + beta * commitment; LSGAN's discriminator: real +
  fake + weight * regulariser).

Both take minilean Tensors or Python floats for every argument, so the same function computes a
differentiable training loss and a plain number in a proof. The weight is applied by exactly one
multiplication and the terms are added left to right, so a proof can state the rounding error of
the engine result: at most two (three) roundings of the float type in use.
"""


def weighted_two_term(a, b, weight):
    """Return ``a + weight * b``.

    With ``weight = 1`` this is the plain sum; with ``weight = 0`` it is ``a`` (the second term
    is switched off but still evaluated, so a NaN in ``b`` still shows up as NaN).
    """
    return a + weight * b


def weighted_three_term(a, b, c, weight):
    """Return ``a + b + weight * c`` (the weight multiplies only the third term).

    Evaluated as ``(a + b) + weight * c``: the two unweighted terms are added first.
    """
    return a + b + weight * c
