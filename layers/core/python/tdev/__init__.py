"""T-Developer Core domain package (shipped as the `core` Lambda layer)."""

from tdev.version import __version__

__all__ = ["__version__"]
