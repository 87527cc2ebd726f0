"""The package's version, in a module of its own so that any layer can name it without a cycle.

``elspeth_appendsink.__version__`` re-exports it; pyproject.toml carries the same number.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
