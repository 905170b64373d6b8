"""agm: see README.md."""
