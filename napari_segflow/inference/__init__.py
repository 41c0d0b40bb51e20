"""Inference: propagation through a video and the per-video session."""
