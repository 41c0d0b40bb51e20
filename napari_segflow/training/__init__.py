"""Offline training (alternating branches) and online fine-tuning."""
