"""Times fusedtrain's CUDA kernels against cuBLAS (through CuPy), CuPy's own kernels and PyTorch
CUDA (where installed), on CuPy arrays, and prints GFLOP/s or GB/s beside the device's peaks:

    python bench/bench_gpu.py               # full sizes (GEMM 4096^3, Adam on 64M parameters)
    python bench/bench_gpu.py --quick       # small sizes, a few seconds
    python bench/bench_gpu.py --out bench/results/kernels_gpu.md

Each row checks the two results against each other before timing (a fast wrong kernel cannot
hide) and reports the median of several CUDA-event timings of a burst of calls. ratio =
reference time / fusedtrain time: above 1.0, fusedtrain is faster. The last lines compare the
GEMM and Adam rows with the project's targets. Without CuPy or a GPU it says so in one line and
exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

import fusedtrain as ft

# FP32 lanes per SM by compute capability (the CUDA programming guide's throughput table).
FP32_LANES_PER_SM = {(8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128}
# Dense TF32 tensor-core FLOP per clock per SM through mma.sync and wgmma alike (A100: 1024,
# H100: 2048; sm_86/89 consumer parts run TF32 at half the A100 rate per SM).
TF32_FLOP_PER_SM_CLOCK = {(8, 0): 1024, (8, 6): 512, (8, 7): 512, (8, 9): 512, (9, 0): 2048}


@dataclass
class Row:
    group: str
    case: str
    fusedtrain_ms: float
    reference: str
    reference_ms: Optional[float]
    work: float          # FLOP or bytes per call
    unit: str            # "GFLOP/s" or "GB/s"
    peak: Optional[float]

    @property
    def ratio(self) -> Optional[float]:
        return None if self.reference_ms is None else self.reference_ms / self.fusedtrain_ms

    def rate(self, milliseconds: float) -> float:
        return self.work / (milliseconds * 1e-3) / 1e9


def _skip_reason() -> Optional[str]:
    report = ft.info()
    if not report["cuda_compiled"]:
        return "fusedtrain was built without CUDA"
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed (pip install 'fusedtrain[cuda]')"
    if not report["gpu_found"]:
        return f"no usable GPU ({report.get('gpu_reason', 'the CUDA runtime reports no device')})"
    return None


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


class Timer:
    """Median milliseconds per call over `repeats` bursts of `burst` calls, by CUDA events on the
    current stream, after `warmup` untimed calls."""

    def __init__(self, cupy, repeats: int, warmup: int = 3):
        self.cupy, self.repeats, self.warmup = cupy, repeats, warmup

    def __call__(self, function: Callable[[], object], burst: int) -> float:
        cupy = self.cupy
        for _ in range(self.warmup):
            function()
        times = []
        for _ in range(self.repeats):
            start, stop = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            for _ in range(burst):
                function()
            stop.record()
            stop.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, stop) / burst)
        return statistics.median(times)


def _device_facts(cupy) -> dict:
    runtime = cupy.cuda.runtime
    device = cupy.cuda.Device()
    properties = runtime.getDeviceProperties(device.id)
    capability = (int(properties["major"]), int(properties["minor"]))
    sms = int(properties["multiProcessorCount"])
    # The clock attributes (kHz) by number, since recent CUDA versions dropped them from the
    # properties struct: 13 clock rate, 36 memory clock rate, 37 memory bus width (bits).
    clock_khz = runtime.deviceGetAttribute(13, device.id)
    memory_khz = runtime.deviceGetAttribute(36, device.id)
    bus_bits = runtime.deviceGetAttribute(37, device.id)
    lanes = FP32_LANES_PER_SM.get(capability)
    tf32 = TF32_FLOP_PER_SM_CLOCK.get(capability)
    name = properties["name"]
    return {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "capability": capability,
        "sms": sms,
        "clock_ghz": clock_khz / 1e6,
        "fp32_peak_gflops": None if lanes is None else 2 * lanes * sms * clock_khz / 1e6,
        "tf32_peak_gflops": None if tf32 is None else tf32 * sms * clock_khz / 1e6,
        # Double data rate: two transfers per memory clock on each bit of the bus.
        "memory_peak_gbs": 2 * memory_khz * 1e3 * bus_bits / 8 / 1e9 if memory_khz and bus_bits else None,
    }


def _check(name: str, result, expected, tolerance: float) -> None:
    result = np.asarray(result, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    error = float(np.max(np.abs(result - expected), initial=0.0)) / scale
    if not error <= tolerance:
        raise SystemExit(f"MISMATCH in {name}: largest difference {error:.3g} of the largest value "
                         f"(allowed {tolerance:g})")


def _cublas_tf32(cupy, enabled: bool) -> bool:
    """Switches cuBLAS (as CuPy calls it) between plain FP32 and TF32 tensor-core math; False
    when this CuPy cannot."""
    try:
        handle = cupy.cuda.device.get_cublas_handle()
        cupy.cuda.cublas.setMathMode(handle, 3 if enabled else 0)  # CUBLAS_TF32_TENSOR_OP_MATH
        return True
    except Exception:  # noqa: BLE001 - an older CuPy without the binding: no TF32 reference
        return False


def bench_gemm(cupy, torch, timer: Timer, facts: dict, size: int, burst: int) -> List[Row]:
    rng = np.random.default_rng(0)
    rows = []
    flop = 2.0 * size ** 3
    a = cupy.asarray(rng.standard_normal((size, size), dtype=np.float32))
    b = cupy.asarray(rng.standard_normal((size, size), dtype=np.float32))
    out = cupy.empty((size, size), dtype=cupy.float32)
    reference = cupy.empty_like(out)
    for trans_a, trans_b, label in ((False, False, "NN"), (False, True, "NT"), (True, False, "TN")):
        op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)
        ft.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out)
        cupy.matmul(op_a, op_b, out=reference)
        _check(f"matmul {label}", cupy.asnumpy(out[:64, :64]), cupy.asnumpy(reference[:64, :64]), 1e-4)
        ft_ms = timer(lambda: ft.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out), burst)
        cublas_ms = timer(lambda: cupy.matmul(op_a, op_b, out=reference), burst)
        rows.append(Row("GEMM FP32", f"{label} {size}^3", ft_ms, "cuBLAS (CuPy)", cublas_ms, flop, "GFLOP/s",
                        facts["fp32_peak_gflops"]))
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        ta, tb = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
        torch_ms = timer(lambda: torch.matmul(ta, tb), burst)
        ft_ms = timer(lambda: ft.ops.matmul(a, b, out=out), burst)
        rows.append(Row("GEMM FP32", f"NN {size}^3", ft_ms, "PyTorch", torch_ms, flop, "GFLOP/s",
                        facts["fp32_peak_gflops"]))
    ft.ops.matmul(a, b, out=out, allow_tf32=True)
    cupy.matmul(a, b, out=reference)
    # TF32 operands carry 11 significant bits: the products differ from FP32 by ~1e-3.
    _check("matmul TF32", cupy.asnumpy(out[:64, :64]), cupy.asnumpy(reference[:64, :64]), 1e-2)
    ft_ms = timer(lambda: ft.ops.matmul(a, b, out=out, allow_tf32=True), burst)
    cublas_ms = None
    if _cublas_tf32(cupy, True):
        cublas_ms = timer(lambda: cupy.matmul(a, b, out=reference), burst)
        _cublas_tf32(cupy, False)
    rows.append(Row("GEMM TF32", f"NN {size}^3", ft_ms, "cuBLAS TF32 (CuPy)", cublas_ms, flop, "GFLOP/s",
                    facts["tf32_peak_gflops"]))
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = True
        ta, tb = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
        torch_ms = timer(lambda: torch.matmul(ta, tb), burst)
        torch.backends.cuda.matmul.allow_tf32 = False
        rows.append(Row("GEMM TF32", f"NN {size}^3", ft_ms, "PyTorch TF32", torch_ms, flop, "GFLOP/s",
                        facts["tf32_peak_gflops"]))
    return rows


def bench_dense(cupy, timer: Timer, facts: dict, batch: int, width: int, burst: int) -> List[Row]:
    rng = np.random.default_rng(1)
    x = cupy.asarray(rng.standard_normal((batch, width), dtype=np.float32))
    w = cupy.asarray(rng.standard_normal((width, width), dtype=np.float32))
    bias = cupy.asarray(rng.standard_normal(width, dtype=np.float32))
    out = cupy.empty((batch, width), dtype=cupy.float32)
    reference = cupy.empty_like(out)

    def unfused():
        cupy.matmul(x, w, out=reference)
        cupy.add(reference, bias, out=reference)
        cupy.maximum(reference, 0, out=reference)

    ft.ops.matmul(x, w, bias=bias, activation="relu", out=out)
    unfused()
    _check("dense", cupy.asnumpy(out[:64]), cupy.asnumpy(reference[:64]), 1e-4)
    ft_ms = timer(lambda: ft.ops.matmul(x, w, bias=bias, activation="relu", out=out), burst)
    ref_ms = timer(unfused, burst)
    return [Row("Dense forward", f"relu({batch}x{width} @ {width}x{width} + b)", ft_ms,
                "cuBLAS + 2 CuPy kernels", ref_ms, 2.0 * batch * width * width, "GFLOP/s",
                facts["fp32_peak_gflops"])]


def bench_memory(cupy, torch, timer: Timer, facts: dict, n: int, rows_classes: tuple, burst: int) -> List[Row]:
    rng = np.random.default_rng(2)
    peak = facts["memory_peak_gbs"]
    table = []
    x = cupy.asarray(rng.standard_normal(n, dtype=np.float32))
    y = cupy.empty_like(x)
    copy_ms = timer(lambda: cupy.copyto(y, x), burst)
    table.append(Row("Memory", f"copy {n / 2**20:.0f}M floats", copy_ms, "-", None, 8.0 * n, "GB/s", peak))

    ft.ops.relu(x, out=y)
    _check("relu", cupy.asnumpy(y[:4096]), np.maximum(cupy.asnumpy(x[:4096]), 0), 0.0)
    table.append(Row("Elementwise", f"relu {n / 2**20:.0f}M", timer(lambda: ft.ops.relu(x, out=y), burst),
                     "CuPy maximum", timer(lambda: cupy.maximum(x, 0, out=y), burst), 8.0 * n, "GB/s", peak))
    mask = cupy.empty(n, dtype=cupy.uint8)
    table.append(Row("Elementwise", f"dropout {n / 2**20:.0f}M",
                     timer(lambda: ft.ops.dropout(x, 0.1, seed=1, step=2, out=y, mask_out=mask), burst),
                     "-", None, 9.0 * n, "GB/s", peak))

    param, grad, m, v = (cupy.asarray(rng.standard_normal(n, dtype=np.float32)) for _ in range(4))
    v = cupy.abs(v)
    adam_ms = timer(lambda: ft.ops.adam_step(param, grad, m, v, step=10), burst)
    torch_ms, reference = None, "-"
    if torch is not None:
        parameter = torch.nn.Parameter(torch.as_tensor(param, device="cuda").clone())
        parameter.grad = torch.as_tensor(grad, device="cuda").clone()
        optimizer = torch.optim.Adam([parameter], lr=1e-3, fused=True)
        torch_ms, reference = timer(optimizer.step, burst), "PyTorch Adam(fused=True)"
    table.append(Row("Optimizer", f"Adam {n / 2**20:.0f}M params", adam_ms, reference, torch_ms, 28.0 * n, "GB/s",
                     peak))
    table.append(Row("Optimizer", f"clip_grad_norm {n / 2**20:.0f}M",
                     timer(lambda: ft.ops.clip_grad_norm(grad, 1e30), max(1, burst // 4)), "-", None, 4.0 * n,
                     "GB/s", peak))

    rows, classes = rows_classes
    logits = cupy.asarray(rng.standard_normal((rows, classes), dtype=np.float32))
    probabilities = cupy.empty_like(logits)

    def cupy_softmax():
        shifted = logits - logits.max(axis=1, keepdims=True)
        cupy.exp(shifted, out=shifted)
        cupy.divide(shifted, shifted.sum(axis=1, keepdims=True), out=probabilities)

    ft.ops.softmax(logits, out=probabilities)
    expected = cupy.asnumpy(probabilities[:64])
    cupy_softmax()
    _check("softmax", expected, cupy.asnumpy(probabilities[:64]), 1e-5)
    table.append(Row("Softmax", f"{rows}x{classes}", timer(lambda: ft.ops.softmax(logits, out=probabilities), burst),
                     "CuPy (4 kernels)", timer(cupy_softmax, burst), 8.0 * rows * classes, "GB/s", peak))
    if torch is not None:
        tensor = torch.as_tensor(logits, device="cuda")
        table.append(Row("Softmax", f"{rows}x{classes}",
                         timer(lambda: ft.ops.softmax(logits, out=probabilities), burst), "PyTorch",
                         timer(lambda: torch.softmax(tensor, dim=1), burst), 8.0 * rows * classes, "GB/s", peak))
    labels = cupy.asarray(rng.integers(0, classes, rows).astype(np.int64))
    gradient = cupy.empty_like(logits)
    # Each call reads the loss back (one synchronization), as training does once per step.
    table.append(Row("Loss", f"softmax cross-entropy {rows}x{classes}",
                     timer(lambda: ft.ops.softmax_cross_entropy(logits, labels, out=gradient), max(1, burst // 4)),
                     "-", None, 8.0 * rows * classes, "GB/s", peak))
    return table


def _format(rows: List[Row]) -> List[str]:
    lines = ["| group | case | fusedtrain ms | rate | % of peak | reference | reference ms | reference rate | "
             "ratio |", "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for row in rows:
        rate = row.rate(row.fusedtrain_ms)
        peak = f"{100 * rate / row.peak:.0f}%" if row.peak else "n/a"
        reference_rate = "" if row.reference_ms is None else f"{row.rate(row.reference_ms):,.0f} {row.unit}"
        reference_ms = "" if row.reference_ms is None else f"{row.reference_ms:.3f}"
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(f"| {row.group} | {row.case} | {row.fusedtrain_ms:.3f} | {rate:,.0f} {row.unit} | {peak} | "
                     f"{row.reference} | {reference_ms} | {reference_rate} | {ratio} |")
    return lines


def _targets(rows: List[Row]) -> List[str]:
    """The project's bars: FP32 GEMM >= 0.75x cuBLAS, TF32 >= 0.6x cuBLAS TF32, fused Adam >= 80%
    of the measured copy bandwidth."""
    lines = []

    def find(group, case_start, reference_start):
        for row in rows:
            if row.group == group and row.case.startswith(case_start) and row.reference.startswith(reference_start):
                return row
        return None

    fp32 = find("GEMM FP32", "NN", "cuBLAS")
    tf32 = find("GEMM TF32", "NN", "cuBLAS")
    copy = find("Memory", "copy", "-")
    adam = find("Optimizer", "Adam", "")
    if fp32 is not None:
        lines.append(f"FP32 GEMM {fp32.case}: {fp32.ratio:.2f}x cuBLAS (target >= 0.75): "
                     f"{'met' if fp32.ratio >= 0.75 else 'NOT met'}")
    if tf32 is not None and tf32.ratio is not None:
        lines.append(f"TF32 GEMM {tf32.case}: {tf32.ratio:.2f}x cuBLAS TF32 (target >= 0.60): "
                     f"{'met' if tf32.ratio >= 0.6 else 'NOT met'}")
    if copy is not None and adam is not None:
        share = adam.rate(adam.fusedtrain_ms) / copy.rate(copy.fusedtrain_ms)
        lines.append(f"Adam {adam.case}: {100 * share:.0f}% of the measured copy bandwidth (target >= 80%): "
                     f"{'met' if share >= 0.8 else 'NOT met'}")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    reason = _skip_reason()
    if reason is not None:
        print(f"bench_gpu: skipped: {reason}")
        return 0
    import cupy

    torch = _torch()
    facts = _device_facts(cupy)
    timer = Timer(cupy, repeats=3 if args.quick else 7)
    size = 1024 if args.quick else 4096
    n = (1 << 22) if args.quick else (1 << 26)
    rows = bench_gemm(cupy, torch, timer, facts, size, burst=2 if args.quick else 5)
    rows += bench_dense(cupy, timer, facts, 1024 if args.quick else 8192, 1024, burst=5)
    rows += bench_memory(cupy, torch, timer, facts, n, (4096, 1000) if args.quick else (65536, 1000), burst=10)

    def peak(value, unit):
        return "n/a" if value is None else f"{value:,.0f} {unit}"

    header = [
        f"# fusedtrain CUDA kernels ({datetime.date.today().isoformat()})",
        "",
        f"Device: {facts['name']} (sm_{facts['capability'][0]}{facts['capability'][1]}, {facts['sms']} SMs, "
        f"{facts['clock_ghz']:.2f} GHz); peaks: FP32 {peak(facts['fp32_peak_gflops'], 'GFLOP/s')}, "
        f"TF32 {peak(facts['tf32_peak_gflops'], 'GFLOP/s')}, memory {peak(facts['memory_peak_gbs'], 'GB/s')}",
        f"fusedtrain {ft.__version__}, CuPy {cupy.__version__}, "
        f"PyTorch {torch.__version__ if torch is not None else 'not installed'}, Python {platform.python_version()}",
        f"Command: python bench/bench_gpu.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip(),
        "ratio = reference time / fusedtrain time: above 1.0, fusedtrain is faster",
        "",
    ]
    table = _format(rows)
    targets = _targets(rows)
    text = "\n".join(header + table + [""] + [f"- {line}" for line in targets]) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
