"""Embedding: a learnable lookup table of vectors, initialised N(0, 1) as in PyTorch."""
from minilean.nn import functional as F
from minilean.nn import init
from minilean.nn.module import Module, check_sizes, empty_parameter


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        check_sizes(num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = init.normal_(empty_parameter(num_embeddings, embedding_dim))

    def forward(self, input):
        return F.embedding(input, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"
