"""`modelops-serve`: parse flags and environment, configure JSON logs, serve until SIGTERM."""

from __future__ import annotations

from modelops_inference import logging as logs
from modelops_inference.config import parse_args
from modelops_inference.server import serve


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    logs.configure(config.log_level)
    serve(config)


if __name__ == "__main__":
    main()
