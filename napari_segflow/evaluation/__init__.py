"""Metrics, classical peers and the benchmark harness."""
