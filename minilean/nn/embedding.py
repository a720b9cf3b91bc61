"""Embedding: a learnable lookup table of vectors, initialised N(0, 1) as in PyTorch; with
``padding_idx``, the row of PyTorch's padding token, which starts at zeros and gets no
gradient; ``from_pretrained`` makes one around a given table."""
from minilean.autograd import writes
from minilean.autograd.tensor import is_bool
from minilean.nn import functional as F
from minilean.nn import init
from minilean.nn.module import Module, Parameter, check_sizes, empty_parameter


class Embedding(Module):
    """y = W[input], with dL/dW[r] the sum of dL/dy over the positions that picked row r, and
    dL/dW[padding_idx] = 0 (``F.embedding``)."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, _weight=None,
                 _freeze=False):
        """``_weight`` and ``_freeze`` are PyTorch's hooks for ``from_pretrained``: a given table
        is held as it is (no random numbers drawn, its padding row kept), trained only when not
        ``_freeze``. They go through ``__init__`` so that a subclass's ``__init__`` runs."""
        super().__init__()
        if _weight is None:
            check_sizes(num_embeddings=num_embeddings, embedding_dim=embedding_dim)
            weight = empty_parameter(num_embeddings, embedding_dim)
        else:  # no init divides by its size here: an empty table is taken, as PyTorch takes it
            weight = Parameter(_weight, requires_grad=not _freeze)
            if weight.shape != (num_embeddings, embedding_dim):
                raise ValueError(f"_weight must have shape ({num_embeddings}, {embedding_dim}) "
                                 f"(num_embeddings, embedding_dim), got shape {weight.shape}")
        self.num_embeddings, self.embedding_dim = weight.shape
        # kept as the row it names (a negative one counted from the end), as PyTorch keeps it
        self.padding_idx = F.check_padding_idx(padding_idx, self.num_embeddings)
        self.weight = weight
        if _weight is None:
            self.reset_parameters()

    def reset_parameters(self):
        """N(0, 1), the padding row zeros, as PyTorch's."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0
            writes.wrote([self.weight])

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        """A layer whose weight is ``embeddings`` (num_embeddings, embedding_dim), a Tensor or
        an array, its memory shared and its dtype kept, and its padding row kept as given, as
        PyTorch's; trained only with ``freeze=False``. No random numbers are drawn."""
        if not is_bool(freeze):  # "false", read from a flag, is truthy
            raise TypeError(f"freeze must be a bool, got {freeze!r}")
        table = Parameter(embeddings, requires_grad=False)
        if table.ndim != 2:
            raise ValueError(f"from_pretrained needs embeddings of shape (num_embeddings, "
                             f"embedding_dim), got shape {table.shape}")
        return cls(*table.shape, padding_idx=padding_idx, _weight=table, _freeze=freeze)

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        padding = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{padding}"
