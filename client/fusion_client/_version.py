"""The one place the SDK's version is written (``client/pyproject.toml`` reads it from here)."""

__version__ = "0.1.0"
