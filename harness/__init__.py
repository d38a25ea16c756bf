"""Test and benchmark harness: real services, a controller stand-in, and load generators.

Used by ``tests/`` and ``bench/`` alike, so the benchmarks never import the tests.
"""
