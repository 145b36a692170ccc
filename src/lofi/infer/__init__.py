"""Inference: features from videos with a trained encoder, detections from a trained detector."""
