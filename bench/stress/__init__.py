"""Reliability suite: ``make stress`` / ``python -m bench.stress`` (see docs/serving.md)."""
