"""Benchmarks: `make bench` runs bench.run, which prints one JSON line of every figure."""
