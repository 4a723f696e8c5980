"""Benchmarks printing figures."""
