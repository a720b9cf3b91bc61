"""Checked statements about minilean's generative models (see proofs/README.md).

Importing ``proofs.statements`` registers every statement; ``proofs.runner.main`` prints them
as a table and ``pytest proofs/`` runs them, their "hypothesis matters" demonstrations and the
mutation suite.
"""
