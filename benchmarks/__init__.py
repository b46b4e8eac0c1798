"""Benchmarks: skeljax against a PyTorch reference and the peers' tools (see README.md)."""
