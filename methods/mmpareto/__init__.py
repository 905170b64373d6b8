"""mmpareto: see README.md."""
