"""`gankit serve`: explore a trained generator in the browser.

`app` is the HTTP app and its runner, `explorer` what the page asks of the generator,
`security` the Host names answered and the headers of every response.
"""

from .app import create_app, serve
from .security import ANY_HOST, check_loopback, served_hosts

__all__ = ["ANY_HOST", "check_loopback", "create_app", "serve", "served_hosts"]
