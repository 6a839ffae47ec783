"""``python -m render.viewer [--runs DIR ...] [--host 127.0.0.1] [--port 8765] [--list]``: serve the viewer and
print its URL (``--list``: print the runs it would serve and exit). It binds to 127.0.0.1 (this machine only)
unless ``--host`` says otherwise, and then warns."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

DEFAULT_RUNS = (Path("data/sample"), Path("data/runs"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m render.viewer", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=Path, nargs="+", default=list(DEFAULT_RUNS), metavar="DIR",
        help="folders holding run folders, or run folders (default: data/sample data/runs)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one (default: 8765)")
    parser.add_argument("--list", action="store_true", help="print the runs it would serve (id, game, folder) and exit")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"expected a port in 0..65535, got {args.port}")
    found = [folder for folder in args.runs if folder.is_dir()]
    for folder in args.runs:
        if folder not in found:
            print(f"note: {folder} is not a folder; no runs from it", file=sys.stderr)

    if args.list:
        from render.viewer.runs import RunCatalogue

        for entry in RunCatalogue(args.runs).scan():
            what = entry.error if entry.error else f"{entry.summary.game}, {len(entry.episodes)} episodes"
            print(f"{entry.id}  {entry.path}  {what}")
        return 0

    import uvicorn  # after the arguments: --help stays quick

    from render.viewer.app import PLOTLY_BASIC, create_app

    try:
        listener = _listen(args.host, args.port)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port} ({error}); choose another --port", file=sys.stderr)
        return 2
    host, port = listener.getsockname()[:2]
    if not _loopback(args.host):
        print(
            f"warning: listening on {args.host}, reachable from other machines; the viewer has no authentication",
            file=sys.stderr,
        )
    shown = f"[{host}]" if ":" in host else host
    print(f"ale-replay viewer: http://{shown}:{port}/ (runs from {', '.join(map(str, args.runs))}; Ctrl-C stops)")
    if not PLOTLY_BASIC.is_file():
        print(
            "note: serving plotly's full bundle (4.8 MB): a run page's first visit takes ~1 s longer; "
            "`npm ci --prefix render/viewer` installs the basic bundle",
            file=sys.stderr,
        )
    sys.stdout.flush()
    config = uvicorn.Config(create_app(args.runs), log_level="warning")
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(address)
    listener.listen(128)
    return listener


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
