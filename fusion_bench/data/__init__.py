"""Datasets: the dataset contract every dataset follows (base.py), image reading with its depth policy (io.py), paired
transforms applied identically to every image of a sample (transforms.py), a sample's plot (plot.py) and the embedded
synthetic datasets (synthetic/)."""
