"""Data quality: expectation suites, the one-pass row checks, and batch validation by GX.

Nothing in this package writes: it takes DataFrames and returns DataFrames and results.
"""
