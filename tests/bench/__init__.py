"""Benchmarks, one command each (`python -m tests.bench.<name>`); never
collected by the test run. See docs/performance.md."""
