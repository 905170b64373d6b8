"""pmr: see README.md."""
