"""Data: synthetic training videos, augmentation, video IO, working resolution, flow colours."""
