"""infobridge: see README.md."""
