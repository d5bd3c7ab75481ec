"""Measurements of the running server, separate from the tests: they report figures, never assert timings."""
