"""`gankit serve`: a local web page over a trained run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UserError


def add_parsers(sub: Any) -> None:
    v = sub.add_parser(
        "serve",
        help="explore a trained generator in the browser",
        description="Start a local web page for a run: sample grids with seeds, classes and "
        "truncation, latent walks, InfoGAN codes, StyleGAN style mixing, the run's facts, "
        "metrics and loss curve.",
    )
    v.add_argument("run", help="run folder or checkpoint .safetensors file")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    v.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    v.add_argument(
        "--allowed-hosts", metavar="NAMES",
        help="with a --host other than loopback: the comma-separated host names the page is "
        "browsed by, answered besides localhost and the --host address ('*': any name, which "
        "lets a DNS-rebinding page on another site drive the server)",
    )  # fmt: skip
    v.add_argument("--device", default="cpu")


def cmd_serve(args: argparse.Namespace) -> int:
    """A local web page over a run: samples, classes, truncation, walks, codes, mixing."""
    from ..serve import ANY_HOST, check_loopback, create_app, serve, served_hosts

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535 (got {args.port})")
    hosts = served_hosts(args.host, args.allowed_hosts)
    app = create_app(args.run, device=args.device, allowed_hosts=hosts)  # loads the checkpoint
    if not check_loopback(args.host):
        names = "any host name" if ANY_HOST in hosts else "the host names " + ", ".join(hosts)
        print(
            f"gankit: warning: serving on {args.host}: anyone who can reach this machine can "
            "use the page (the default, 127.0.0.1, is this machine only); it answers to "
            f"{names} (--allowed-hosts adds the names you browse it by)",
            file=sys.stderr,
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host

    def listening(port: int) -> None:  # printed once it accepts connections: scripts wait for it
        print(f"gankit: serving {args.run} at http://{shown}:{port}/ (Ctrl-C to stop)", flush=True)

    serve(app, args.host, args.port, listening)  # until Ctrl-C or SIGTERM: a clean shutdown
    return 0


COMMANDS = {"serve": cmd_serve}
