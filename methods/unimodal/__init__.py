"""unimodal: see README.md."""
