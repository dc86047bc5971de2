"""Benchmarks: each prints its targets as ratios against a baseline measured in the same run.

Timings on shared machines are noisy, so nothing here asserts; ``make bench`` prints.
"""
