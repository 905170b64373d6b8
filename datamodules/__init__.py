"""Per-dataset Datasets and thin DataModules for the public datasets (see README, datasets table)."""
