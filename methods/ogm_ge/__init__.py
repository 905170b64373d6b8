"""ogm_ge: see README.md."""
