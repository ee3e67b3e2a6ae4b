"""Times fusedtrain's CPU kernels against NumPy (fusedtrain.bench) at one or more thread counts
and, with --out, writes the tables to a Markdown file with the date, the machine and the command:

    python bench/bench_kernels.py --threads 1 2 --out bench/results/kernels_cpu.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from fusedtrain import bench


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    parser.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                        help="thread counts to run, each for both libraries (default: fusedtrain's current)")
    parser.add_argument("--out", type=Path, default=None, help="write the tables to this Markdown file")
    parser.add_argument("--note", action="append", default=[],
                        help="a line to add under the machine facts (repeatable)")
    args = parser.parse_args(argv)
    if args.threads and min(args.threads) < 1:
        parser.error(f"--threads: every count must be at least 1, got {args.threads}")

    facts = bench.machine_facts()
    for key, value in facts.items():
        print(f"{key}: {value}")
    sections = []
    failed = False
    for threads in args.threads or [None]:
        report = bench.measure(quick=args.quick, threads=threads,
                               progress=lambda title: print(f"measuring {title} ...", file=sys.stderr, flush=True))
        failed = failed or bool(report.failures)
        plural = "" if report.threads == 1 else "s"
        section = f"## {report.threads} thread{plural}\n\n{bench.render(report)}"
        print("\n" + section, end="")
        sections.append(section)
    if args.out is not None:
        header = bench.results_header("fusedtrain CPU kernels vs NumPy", "bench/bench_kernels.py", argv, facts,
                                      args.note)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(header) + "\n" + "\n".join(sections), encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
