"""Command line: ``fusedtrain info`` and ``fusedtrain bench`` (also ``python -m fusedtrain``)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fusedtrain", description="fusedtrain command line")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="print the build and device report")
    bench = commands.add_parser("bench", help="time the kernels against NumPy")
    bench.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    bench.add_argument("--threads", type=int, default=None, help="threads for both libraries")
    args = parser.parse_args(argv)

    if args.command == "info":
        from ._info import info

        print(info())
        return 0
    if args.command == "bench":
        from .bench import run

        return run(quick=args.quick, threads=args.threads)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
