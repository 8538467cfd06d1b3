"""T-Developer Core domain package (shipped as the `core` Lambda layer)."""

__version__ = "0.1.0"
