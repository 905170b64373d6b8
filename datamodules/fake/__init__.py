"""Generators of tiny fake copies of each real dataset's tree (used by tests and `fusion-bench data fake`)."""
