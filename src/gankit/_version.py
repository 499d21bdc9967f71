"""gankit's version, kept equal to pyproject.toml's (tests/test_imports.py checks that they agree).

A module of its own so that anything (metrics stamping a record, the CLI) can read it without
importing the package's API.
"""

__version__ = "0.1.0"
