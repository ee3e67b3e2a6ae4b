"""Command line: ``fusedtrain info`` and ``fusedtrain bench`` (also ``python -m fusedtrain``), and
``--cmake-dir`` / ``--include-dir`` for C++ builds against the installed kernels."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fusedtrain", description="fusedtrain command line")
    paths = parser.add_mutually_exclusive_group()
    paths.add_argument("--cmake-dir", action="store_true",
                       help="print the directory of fusedtrainConfig.cmake (for -Dfusedtrain_DIR=) and exit")
    paths.add_argument("--include-dir", action="store_true",
                       help="print the directory holding the fusedtrain/ C++ headers and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="print the build and device report")
    bench = commands.add_parser("bench", help="time the kernels against NumPy")
    bench.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    bench.add_argument("--threads", type=int, default=None, help="threads for both libraries")
    args = parser.parse_args(argv)

    if args.cmake_dir or args.include_dir:
        if args.command is not None:
            parser.error("--cmake-dir and --include-dir take no command")
        from ._paths import get_cmake_dir, get_include

        print(get_cmake_dir() if args.cmake_dir else get_include())
        return 0
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
