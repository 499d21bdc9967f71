"""Errors a user can act on.

A `UserError` is what the CLI turns into one line on stderr and exit code 2: the message says
what is wrong and what to do. Anything else escaping the CLI is a bug in gankit.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (arguments, data, checkpoint), not with gankit."""
