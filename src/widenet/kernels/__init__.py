"""Kernels of neural networks: exact infinite-width limits, empirical NTKs and their spectra."""
