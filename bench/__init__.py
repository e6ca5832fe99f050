"""Benchmarks (not tests). `make bench` runs every `bench/bench_*.py` module's `run()` and writes docs/BENCHMARKS.md."""
