"""`gankit serve`: explore a trained generator in the browser."""

from .app import create_app

__all__ = ["create_app"]
