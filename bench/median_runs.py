"""Medians over several runs of bench/bench_kernels.py: each row's ratio (NumPy time /
fusedtrain time) in every run and their median, per thread count, as one Markdown table. On a
machine whose speed swings between runs (a shared virtual machine), one run's ratios can be off
by 2x in either direction; the median of several is the figure to quote.

    python bench/median_runs.py run1.md run2.md run3.md --out bench/results/summary.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Dict, List, Tuple

Row = Tuple[str, str, str]  # (thread section, op, size)


def ratios(path: str) -> Dict[Row, float]:
    """Every kernel row's ratio in one results file, keyed by its section, op and size."""
    found: Dict[Row, float] = {}
    section = ""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("## "):
                section = line[3:].strip()
                continue
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            # Kernel rows: op | size | fusedtrain | NumPy | rate | rate | ratio | share.
            if len(cells) == 8 and section:
                try:
                    found[(section, cells[0], cells[1])] = float(cells[6])
                except ValueError:
                    pass  # a header or separator row
    return found


def table(paths: List[str]) -> List[str]:
    runs = [ratios(path) for path in paths]
    order = list(runs[0])
    lines = ["| threads | op | size | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | median |",
             "|---|---|---|" + "---:|" * (len(runs) + 1)]
    for key in order:
        values = [run[key] for run in runs if key in run]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(f"{value:.3g}" for value in values)
                     + f" | **{statistics.median(values):.3g}** |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="results files of bench/bench_kernels.py, same sizes")
    parser.add_argument("--out", help="write the table here (Markdown) as well as printing it")
    parser.add_argument("--title", default="Kernel ratios against NumPy: medians of several runs")
    args = parser.parse_args()
    lines = [f"# {args.title}", "",
             f"Command: `python bench/median_runs.py {' '.join(args.runs)}`. ratio = NumPy time / fusedtrain "
             f"time (above 1.0, fusedtrain is faster), each run's own median of paired turns; the runs' "
             f"machine, date and kernels are in their files.", ""] + table(args.runs)
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
