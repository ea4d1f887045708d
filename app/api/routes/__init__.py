"""Routers: ``health`` and ``metrics`` (always open), ``v1`` (the friendly API)."""
