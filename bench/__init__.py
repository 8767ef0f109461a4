"""coopbot's benchmarks: `bench/run` (or `python -m bench`) sets everything up, measures coopbot
side by side with the obvious alternative in the same run, and writes bench/RESULTS.md.

Benchmarks are not tests: nothing here asserts a time. See bench/README.md.
"""
