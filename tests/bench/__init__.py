"""Benchmarks (``make bench``, or one at a time: ``.venv/bin/python -m tests.bench.bench_api``)."""
