"""infonce: see README.md."""
