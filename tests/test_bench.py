"""The kernel benchmark runs end to end and reports every row; it checks results, never speed."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusedtrain import bench

ROOT = Path(__file__).resolve().parents[1]

# (op, size) of rows that `fusedtrain bench --quick` must report.
EXPECTED_ROWS = [
    ("NN square", "64x64 @ 64x64"),
    ("NN square", "256x256 @ 256x256"),
    ("NN forward Z = X W, 784-512", "256x784 @ 784x512"),
    ("TN dW = X^T dZ, 784-512", "784x256 @ 256x512"),
    ("NT dX = dZ W^T, 784-512", "256x512 @ 512x784"),
    ("NN forward Z = X W, 256-10", "256x256 @ 256x10"),
    ("TN dW = X^T dZ, 512-256", "512x256 @ 256x256"),
    ("NT dX = dZ W^T, 256-10", "256x10 @ 10x256"),
    ("NN one sample, 784-512", "1x784 @ 784x512"), ("NN forward, 256-1", "256x256 @ 256x1"),
    ("TN dW, 256-1", "256x256 @ 256x1"), ("NN forward, 256-2", "256x256 @ 256x2"),
    ("TN dW, 256-2", "256x256 @ 256x2"),
    ("relu(X W + b), 784-512, vs expression", "256x784 @ 784x512"),
    ("relu(X W + b), 784-512, vs out=", "256x784 @ 784x512"),
    ("relu", "256K"), ("relu_grad", "256K"), ("sigmoid", "256K"), ("sigmoid_grad", "256K"),
    ("tanh", "256K"), ("tanh_grad", "256K"), ("gelu", "256K"), ("gelu_grad", "256K"),
    ("softmax_cross_entropy", "256x10"), ("mse", "256x10"),
    ("adam", "256K"), ("sgd momentum", "256K"),
]


def _table_rows(text):
    """{(op, size): [the six figures after them]} from the Markdown tables in text."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 8 and cells[0] != "op":
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


def _check_tables(text):
    rows = _table_rows(text)
    for key in EXPECTED_ROWS:
        assert key in rows, f"row {key} missing from the benchmark output:\n{text}"
    for key, (ours_time, numpy_time, ours_rate, numpy_rate, ratio, of_limit) in rows.items():
        for time_cell in (ours_time, numpy_time):
            assert re.fullmatch(r"[0-9.e+-]+ (s|ms|us|ns)", time_cell), (key, time_cell)
        # Only that each figure is a positive number: the speed itself is not the test's business.
        for figure in (ours_rate, numpy_rate, ratio):
            assert math.isfinite(float(figure)) and float(figure) > 0, (key, figure)
        # A whole percentage: 0% when a call waited long for a core on a busy machine.
        assert re.fullmatch(r"[0-9]+%", of_limit), (key, of_limit)
    assert "MISMATCH" not in text


def test_cli_quick_reports_every_row():
    completed = subprocess.run([sys.executable, "-m", "fusedtrain", "bench", "--quick"],
                               capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert bench.RATIO_CONVENTION in out
    for title in ("Machine limits", "Matrix multiply", "Dense forward", "Activations", "Losses", "Optimizer steps"):
        assert f"### {title}" in out
    assert re.search(r"^numpy BLAS: \S+", out, re.MULTILINE)
    _check_tables(out)


def test_cli_rejects_zero_threads():
    completed = subprocess.run([sys.executable, "-m", "fusedtrain", "bench", "--quick", "--threads", "0"],
                               capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert completed.returncode == 2
    assert "--threads" in completed.stderr


def test_script_writes_markdown_with_machine_and_command(tmp_path):
    out_file = tmp_path / "results" / "kernels.md"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_kernels.py"), "--quick", "--threads", "1",
         "--note", "a shared machine", "--out", str(out_file)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    text = out_file.read_text(encoding="utf-8")
    assert f"python bench/bench_kernels.py --quick --threads 1 --note 'a shared machine' --out {out_file}" in text
    for key in ("date", "cpu", "logical cores", "numpy", "numpy BLAS", "fusedtrain"):
        assert f"| {key} | " in text
    assert "- a shared machine" in text
    assert "## 1 thread\n" in text and "Threads: 1 for fusedtrain and NumPy" in text
    _check_tables(text)


def test_median_runs_gives_each_rows_median_over_the_runs(tmp_path):
    """bench/median_runs.py reads the results files of several runs of the script above (two
    written here, one made up with other ratios) and gives every row's ratio in each run and
    the median."""
    runs = []
    for index in range(2):
        runs.append(tmp_path / f"run{index}.md")
        completed = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "bench_kernels.py"), "--quick", "--threads", "1", "--out",
             str(runs[-1])], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert completed.returncode == 0, completed.stderr
    third = tmp_path / "run2.md"
    third.write_text(re.sub(r"^(\| NN square \| 64x64 @ 64x64 \|(?: [^|]+ \|){4}) [^|]+ \|",
                            r"\1 9.5 |", runs[0].read_text(), flags=re.M))
    runs.append(third)
    summary = tmp_path / "medians.md"
    completed = subprocess.run([sys.executable, str(ROOT / "bench" / "median_runs.py"), *map(str, runs),
                                "--out", str(summary)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]): line
            for line in summary.read_text().splitlines() if line.startswith("| 1 thread |")}
    assert {(op, size) for _, op, size in rows} == set(_table_rows(runs[0].read_text())) >= set(EXPECTED_ROWS)
    first, second = (float(_table_rows(run.read_text())[("NN square", "64x64 @ 64x64")][4]) for run in runs[:2])
    cells = [cell.strip() for cell in rows[("1 thread", "NN square", "64x64 @ 64x64")].strip("|").split("|")]
    assert cells[3:] == [f"{first:.3g}", f"{second:.3g}", "9.5", f"**{max(first, second):.3g}**"]


def test_runs_without_threadpoolctl_and_says_so(monkeypatch, capsys):
    import fusedtrain

    # A None entry in sys.modules makes `import threadpoolctl` raise ImportError.
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    threads_before = fusedtrain.get_num_threads()
    assert bench.run(quick=True, threads=1) == 0
    assert fusedtrain.get_num_threads() == threads_before
    out = capsys.readouterr().out
    assert sum("threadpoolctl is not installed" in line for line in out.splitlines()) == 1
    assert "NumPy's BLAS at its default: threadpoolctl missing" in out
    _check_tables(out)


def test_disagreement_is_reported():
    # A NumPy side that differs from fusedtrain's by 1e-3 of its scale must be flagged.
    values = np.linspace(-1.0, 1.0, 17, dtype=np.float32)
    shifted = values + np.float32(2e-3)
    wrong = bench._Case("relu", "17", 8.0 * 17, lambda: values, lambda: shifted, 1e-5)
    message = bench._disagreement(wrong)
    assert message is not None and "relu [17]" in message
    right = bench._Case("relu", "17", 8.0 * 17, lambda: values, lambda: values.copy(), 1e-5)
    assert bench._disagreement(right) is None
    nan = bench._Case("relu", "17", 8.0 * 17, lambda: np.full(17, np.nan, np.float32), lambda: values, 1e-5)
    assert bench._disagreement(nan) is not None

    report = bench.Report(threads=1, quick=True, blas_threads_set=True, failures=[message])
    assert f"MISMATCH: {message}" in bench.render(report)


def test_probes_count_and_compute_what_they_say(simd_path):
    import fusedtrain as ft

    # Each thread runs 10 chains of one multiply-add per lane per round: 16 lanes on AVX-512, 8 on
    # AVX2, 1 in the portable path, 2 flops each.
    lanes = {"avx512": 16, "avx2+fma": 8, "portable": 1}[simd_path]
    previous = ft.get_num_threads()
    try:
        for threads in (1, 2):
            ft.set_num_threads(threads)
            assert ft._C.fma_probe(1000) == 2 * lanes * 10 * 1000 * threads
    finally:
        ft.set_num_threads(previous)
    rng = np.random.default_rng(3)
    b, c = rng.standard_normal((2, 100_003)).astype(np.float32)
    a = np.empty_like(b)
    ft._C.triad_probe(a, b, c, 0.25)
    np.testing.assert_allclose(a, b.astype(np.float64) + 0.25 * c.astype(np.float64), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="c: expected 100003 elements"):
        ft._C.triad_probe(a, b, c[:-1], 0.25)
    limits = bench.measure_limits(bench.QUICK)
    assert limits.fma_gflops > 0 and limits.triad_gbs > 0 and limits.triad_elements == bench.QUICK.triad_elements


def _training_bench():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_training.py"
    spec = importlib.util.spec_from_file_location("bench_training", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_training_bench_counts_the_epochs_gemm_flops():
    # Per sample: forward, weight gradient and (past the first layer) input gradient of each
    # Dense layer, 2 flops per multiply-add: 144 GFLOP for the 784-512-256-10 MLP on 60,000.
    module = _training_bench()
    products = 784 * 512 + 512 * 256 + 256 * 10
    assert module.epoch_gemm_flops(module.FULL) == 2.0 * 60_000 * (3 * products - 784 * 512)
    assert abs(module.epoch_gemm_flops(module.FULL) / 1e9 - 144.4) < 0.1
