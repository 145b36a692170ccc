"""Datasets: annotation formats, validation, video decoding and snippet sampling, the synthetic dataset."""
