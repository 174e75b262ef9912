"""Benchmarks (`make bench`): extraction near the ListUsers quota, a 1M-user reconcile, backfill writes.

Never part of `make test`: they measure time, which tests must not assert on.
"""
