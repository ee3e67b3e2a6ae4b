"""Profiles one fusedtrain training step (fit's loop) on the 784-512-256-10 ReLU MLP with Adam at
batch 256, and writes what it finds:

- cProfile's top functions by own time over one epoch of 200 steps;
- the step's time split into time inside the compiled kernels (each ``fusedtrain._C`` call is
  timed) and Python around them, per kernel; and the same loop on a tiny model of the same
  depth, where the kernels cost next to nothing, so that its step time is the loop's overhead;
- memory allocated per step in the steady state (tracemalloc, which also sees NumPy's array
  buffers): the peak above the step's starting point, and what stays;
- PyTorch's eager step on the same task, for comparison, when PyTorch is installed.

    python bench/profile_step.py --threads 1 --out bench/results/profile_step.md
"""

from __future__ import annotations

import argparse
import cProfile
import contextlib
import functools
import io
import pstats
import statistics
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

import fusedtrain as ft
from fusedtrain import _C, bench

try:
    import torch
except ImportError:
    torch = None

LAYER_SIZES = (784, 512, 256, 10)
# Same depth and the same kernel calls per step; every kernel works on a few hundred values.
TINY_LAYER_SIZES = (16, 16, 16, 10)
BATCH = 256
TINY_BATCH = 16
STEPS = 200
ROOT = Path(__file__).resolve().parents[1]


def make_model(layer_sizes: Sequence[int]) -> ft.Sequential:
    hidden = [ft.layers.Dense(units, activation="relu") for units in layer_sizes[1:-1]]
    model = ft.Sequential(hidden + [ft.layers.Dense(layer_sizes[-1])], input_dim=layer_sizes[0], seed=0)
    model.compile(optimizer=ft.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def make_data(layer_sizes: Sequence[int], batch: int, steps: int) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * steps, layer_sizes[0]), dtype=np.float32)
    y = rng.integers(0, layer_sizes[-1], size=batch * steps).astype(np.int64)
    return x, y


def epoch(model: ft.Sequential, x: np.ndarray, y: np.ndarray, batch: int, callbacks=None) -> None:
    model.fit(x, y, epochs=1, batch_size=batch, shuffle=True, verbose=0, callbacks=callbacks)


def seconds_per_step(model, x, y, batch: int, epochs: int) -> Tuple[float, float]:
    """Medians over ``epochs`` fit calls of the epoch's wall and CPU time (the process's) divided
    by its steps. With one thread the CPU time leaves out the time slices other processes took."""
    steps = -(-x.shape[0] // batch)
    walls, cpus = [], []
    for _ in range(epochs):
        wall, cpu = time.perf_counter(), time.process_time()
        epoch(model, x, y, batch)
        walls.append((time.perf_counter() - wall) / steps)
        cpus.append((time.process_time() - cpu) / steps)
    return statistics.median(walls), statistics.median(cpus)


# The batch loader's gather, reported apart from the step's other kernels.
GATHER = "_C.gather_rows"

# ---- kernel time vs Python ----------------------------------------------------------------------

@contextlib.contextmanager
def timed_kernels() -> Iterator[Dict[str, List[float]]]:
    """Wraps every function of fusedtrain._C (the ops look them up on the module at each call;
    fit's batch loader gathers each batch with _C.gather_rows), so that each call's duration is
    recorded under its name."""
    durations: Dict[str, List[float]] = defaultdict(list)
    # _C.overlap is part of the ops' argument checks: its time counts as Python overhead.
    targets = [(_C, name, f"_C.{name}") for name in dir(_C)
               if not name.startswith("_") and name != "overlap" and callable(getattr(_C, name))]
    originals = [(module, name, label, getattr(module, name)) for module, name, label in targets]

    def wrap(name, function):
        record = durations[name].append
        clock = time.perf_counter

        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = clock()
            result = function(*args, **kwargs)
            record(clock() - start)
            return result
        return timed

    for module, name, label, function in originals:
        setattr(module, name, wrap(label, function))
    try:
        yield durations
    finally:
        for module, name, _, function in originals:
            setattr(module, name, function)


def wrapper_cost() -> float:
    """Seconds a timing wrapper adds to one call, outside the interval it measures."""
    durations: List[float] = []
    clock = time.perf_counter

    def timed(*args):
        start = clock()
        result = len(args)
        durations.append(clock() - start)
        return result
    calls = 100_000
    start = clock()
    for _ in range(calls):
        timed(1, 2, 3)
    wrapped = (clock() - start) / calls
    start = clock()
    for _ in range(calls):
        len((1, 2, 3))
    bare = (clock() - start) / calls
    return max(wrapped - bare - statistics.median(durations), 0.0)


class _LoopClock(ft.callbacks.Callback):
    """When fit's loop starts and ends: what lies outside is fit's one-off set-up (input checks
    over the whole data set, buffers)."""

    def on_train_begin(self, logs=None):
        self.begin = time.perf_counter()

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()


def kernel_split(model, x, y, batch: int) -> Tuple[float, Dict[str, Tuple[float, float]], float, float]:
    """(wall seconds per step of fit's loop, {kernel: (calls per step, seconds per step)}, wrapper
    cost per step, seconds of fit's set-up) from one epoch with every kernel call timed."""
    steps = -(-x.shape[0] // batch)
    clock = _LoopClock()
    with timed_kernels() as durations:
        start = time.perf_counter()
        epoch(model, x, y, batch, callbacks=[clock])
        total = time.perf_counter() - start
    loop = clock.end - clock.begin
    per_kernel = {name: (len(values) / steps, sum(values) / steps) for name, values in durations.items() if values}
    calls = sum(count for count, _ in per_kernel.values())
    return loop / steps, per_kernel, calls * wrapper_cost(), total - loop


# ---- cProfile ------------------------------------------------------------------------------------

def profile_lines(model, x, y, batch: int, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    epoch(model, x, y, batch)
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    text = stream.getvalue()
    # Shorten absolute paths to the package or the standard library's file name.
    for prefix in sorted({str(Path(ft.__file__).resolve().parents[1]) + "/", str(ROOT) + "/"}, key=len, reverse=True):
        text = text.replace(prefix, "")
    lines = [line.rstrip() for line in text.splitlines()]
    start = next(index for index, line in enumerate(lines) if "function calls" in line)
    return "\n".join(line for line in lines[start:] if line.strip() and "Ordered by" not in line)


# ---- allocations ---------------------------------------------------------------------------------

class StepMemory(ft.callbacks.Callback):
    """At the end of every batch: the traced memory now and its peak since the previous batch's
    end, so each record spans one whole loop iteration (batch gathering included). The records
    go into an array allocated up front, so that keeping them allocates nothing while tracing."""

    def __init__(self, steps: int):
        super().__init__()
        self.records = np.zeros((steps, 2), dtype=np.int64)  # (current, peak) at each batch's end
        self.snapshot_at = (steps // 4, steps - 1)
        self.snapshots: Dict[int, tracemalloc.Snapshot] = {}

    def on_train_begin(self, logs=None):
        tracemalloc.reset_peak()

    def on_train_batch_end(self, batch, logs=None):
        self.records[batch] = tracemalloc.get_traced_memory()
        if batch in self.snapshot_at:
            self.snapshots[batch] = tracemalloc.take_snapshot()
        tracemalloc.reset_peak()


def step_allocations(model, x, y, batch: int) -> Dict[str, object]:
    memory = StepMemory(-(-x.shape[0] // batch))
    tracemalloc.start(8)
    try:
        start_current = tracemalloc.get_traced_memory()[0]
        epoch(model, x, y, batch, callbacks=[memory])
    finally:
        tracemalloc.stop()
    current, peak = memory.records[:, 0], memory.records[:, 1]
    # Step i (from the second on) spans the end of batch i-1 to the end of batch i: its peak
    # above the memory held when it began, and what it left allocated. The steps right after a
    # snapshot are left out: they hold the snapshot itself.
    steps = [index for index in range(1, len(current)) if index - 1 not in memory.snapshot_at]
    transient = [int(peak[index] - current[index - 1]) for index in steps]
    growth = [int(current[index] - current[index - 1]) for index in steps]
    first, last = (memory.snapshots[index] for index in memory.snapshot_at)
    # The snapshots' own objects are not the step's.
    kept = [stat for stat in last.compare_to(first, "lineno")
            if stat.size_diff != 0 and stat.traceback[0].filename != tracemalloc.__file__][:8]
    return {
        "first_step_peak": int(peak[0] - start_current),
        "transient_median": statistics.median(transient),
        "transient_max": max(transient),
        "growth_total": sum(growth),
        "growth_median": statistics.median(growth),
        "steps": len(current),
        "kept": kept,
        "span": (memory.snapshot_at[0] + 1, memory.snapshot_at[1] + 1),
    }


@contextlib.contextmanager
def op_allocations() -> Iterator[Dict[str, List[int]]]:
    """Wraps each public op (fusedtrain.ops.*: the layers, losses and optimizers call them through
    the module) to record the bytes each call allocates at its peak."""
    peaks: Dict[str, List[int]] = defaultdict(list)
    names = [name for name in ft.ops.__all__ if callable(getattr(ft.ops, name))] \
        if hasattr(ft.ops, "__all__") else [name for name in dir(ft.ops) if not name.startswith("_")
                                             and callable(getattr(ft.ops, name))]
    originals = {name: getattr(ft.ops, name) for name in names}

    def wrap(name, function):
        @functools.wraps(function)
        def measured(*args, **kwargs):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            result = function(*args, **kwargs)
            peaks[name].append(tracemalloc.get_traced_memory()[1] - before)
            return result
        return measured

    for name, function in originals.items():
        setattr(ft.ops, name, wrap(name, function))
    try:
        yield peaks
    finally:
        for name, function in originals.items():
            setattr(ft.ops, name, function)


def per_op_allocations(model, x, y, batch: int) -> Dict[str, Tuple[float, int, int]]:
    steps = -(-x.shape[0] // batch)
    tracemalloc.start()
    try:
        with op_allocations() as peaks:
            epoch(model, x, y, batch)
    finally:
        tracemalloc.stop()
    return {name: (len(values) / steps, int(statistics.median(values)), max(values))
            for name, values in peaks.items() if values}


# ---- PyTorch for comparison ----------------------------------------------------------------------

def torch_step(layer_sizes: Sequence[int], batch: int, x: np.ndarray, y: np.ndarray, epochs: int,
               profile_top: int = 0) -> Tuple[float, float, str]:
    """PyTorch's eager step (the loop of bench_training.py): median wall and CPU seconds per
    step over ``epochs`` epochs, and optionally torch.profiler's top operators for one epoch."""
    torch.manual_seed(0)
    modules = []
    for inputs, outputs in zip(layer_sizes[:-2], layer_sizes[1:-1]):
        modules += [torch.nn.Linear(inputs, outputs), torch.nn.ReLU()]
    modules.append(torch.nn.Linear(layer_sizes[-2], layer_sizes[-1]))
    model = torch.nn.Sequential(*modules)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_function = torch.nn.CrossEntropyLoss()
    features, labels = torch.from_numpy(x), torch.from_numpy(y)
    steps = -(-x.shape[0] // batch)

    def one_epoch():
        order = torch.randperm(features.shape[0])
        total = 0.0
        for start in range(0, features.shape[0], batch):
            indices = order[start:start + batch]
            x_batch, y_batch = features[indices], labels[indices]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(x_batch), y_batch)
            loss.backward()
            optimizer.step()
            total += loss.item() * x_batch.shape[0]
        return total

    one_epoch()
    walls, cpus = [], []
    for _ in range(epochs):
        wall, cpu = time.perf_counter(), time.process_time()
        one_epoch()
        walls.append((time.perf_counter() - wall) / steps)
        cpus.append((time.process_time() - cpu) / steps)
    table = ""
    if profile_top:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            one_epoch()
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=profile_top)
    return statistics.median(walls), statistics.median(cpus), table


# ---- report --------------------------------------------------------------------------------------

def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} us"


def _bytes(count: float) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(count) >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"


def profile_section(threads: int, epochs: int, top: int, say) -> str:
    """Every measurement at ``threads`` threads, as a Markdown section."""
    previous_threads = ft.get_num_threads()
    ft.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    load = bench._OtherLoad()
    try:
        x, y = make_data(LAYER_SIZES, BATCH, STEPS)
        model = make_model(LAYER_SIZES)
        say("warm-up epoch ...")
        epoch(model, x, y, BATCH)
        say("timing fit ...")
        step, step_cpu = seconds_per_step(model, x, y, BATCH, epochs)
        say("timing each kernel call ...")
        wall, per_kernel, wrapper, setup = kernel_split(model, x, y, BATCH)
        say("cProfile ...")
        profile = profile_lines(model, x, y, BATCH, top)
        say("tracemalloc, per step ...")
        memory = step_allocations(model, x, y, BATCH)
        say("tracemalloc, per op ...")
        op_memory = per_op_allocations(model, x, y, BATCH)

        tiny_x, tiny_y = make_data(TINY_LAYER_SIZES, TINY_BATCH, STEPS * 5)
        tiny = make_model(TINY_LAYER_SIZES)
        say("tiny model ...")
        epoch(tiny, tiny_x, tiny_y, TINY_BATCH)
        tiny_step, tiny_step_cpu = seconds_per_step(tiny, tiny_x, tiny_y, TINY_BATCH, epochs)
        tiny_wall, tiny_kernels, tiny_wrapper, _ = kernel_split(tiny, tiny_x, tiny_y, TINY_BATCH)

        torch_results = None
        if torch is not None:
            say("PyTorch ...")
            torch_full, torch_full_cpu, torch_table = torch_step(LAYER_SIZES, BATCH, x, y, epochs,
                                                                 profile_top=15)
            torch_tiny, torch_tiny_cpu, _ = torch_step(TINY_LAYER_SIZES, TINY_BATCH, tiny_x, tiny_y, epochs)
            torch_results = (torch_full, torch_tiny, torch_table, torch_full_cpu, torch_tiny_cpu)
    finally:
        ft.set_num_threads(previous_threads)
    other_load = load.share()

    def split(kernels: Dict[str, Tuple[float, float]], step_wall: float, wrappers: float):
        """(seconds in the other _C calls, in the batch gather, in Python: the rest less the timing
        wrappers' cost)."""
        gather = sum(seconds for name, (_, seconds) in kernels.items() if name == GATHER)
        compiled = sum(seconds for name, (_, seconds) in kernels.items() if name.startswith("_C.")) - gather
        return compiled, gather, max(step_wall - compiled - gather - wrappers, 0.0)

    compiled, gather, python_time = split(per_kernel, wall, wrapper)
    tiny_compiled, tiny_gather, tiny_python = split(tiny_kernels, tiny_wall, tiny_wrapper)
    gemm = per_kernel.get("_C.gemm", (0, 0.0))[1]
    smallest_buffer = BATCH * np.dtype(np.int64).itemsize
    calls_per_step = sum(count for name, (count, _) in per_kernel.items()
                         if name.startswith("_C.") and name != GATHER)

    plural = "" if threads == 1 else "s"
    lines = [f"## {threads} thread{plural} (fusedtrain and PyTorch)", "",
             "Other processes' share of the CPU during this section: "
             + ("unknown" if other_load is None else f"{other_load:.0%}") + ".", ""]
    sizes = "-".join(map(str, LAYER_SIZES))
    tiny_sizes = "-".join(map(str, TINY_LAYER_SIZES))
    lines += [
        "### Summary",
        "",
        f"- A step takes {_us(step)} ({_us(step_cpu)} of CPU time); in the loop of the timed epoch "
        f"({_us(wall)} per step) "
        f"{compiled / wall:.0%} was spent in the {calls_per_step:.0f} compiled kernel calls (GEMM alone "
        f"{gemm / wall:.0%}), {gather / wall:.1%} gathering the batch (`_C.gather_rows`) and {python_time / wall:.1%} "
        f"({_us(python_time)}) in Python.",
        f"- Python overhead per step, measured where kernels cost next to nothing (tiny {tiny_sizes} model, batch "
        f"{TINY_BATCH}): {_us(tiny_python)} of a {_us(tiny_wall)} step"
        + (f"; PyTorch's eager step on the same tiny model takes {_us(torch_results[1])}." if torch_results else ".")
        + f" In the full-size loop above, the time outside the kernels came to {_us(python_time)} per step.",
        "- Allocations after the first step: " + (
            f"no buffer of the batch's size (the smallest, the {BATCH} int64 labels, is {_bytes(smallest_buffer)}); "
            if memory["transient_max"] < smallest_buffer else
            f"up to {_bytes(memory['transient_max'])} at once, as much as a buffer of the batch (see the tables); ")
        + f"a step's peak is {_bytes(memory['transient_median'])} (median, largest {_bytes(memory['transient_max'])}) "
        f"of short-lived Python objects, and it keeps {_bytes(memory['growth_median'])} (median).",
        "",
        "### Step time",
        "",
        "| | per step |",
        "|---|---:|",
        f"| fit, {sizes}, batch {BATCH}: a fit call's time / its steps (median of {epochs} epochs) | {_us(step)} |",
        f"| the same, CPU time (the process's user + system time) | {_us(step_cpu)} |",
        f"| fit's loop alone, every kernel call timed (one epoch; fit's set-up before the loop took "
        f"{setup * 1e3:.1f} ms, mostly the finite check of x) | {_us(wall)} |",
        f"| of which inside the {calls_per_step:.0f} `_C` kernel calls | {_us(compiled)} |",
        f"| of which gathering the batch (`_C.gather_rows`, 2 calls) | {_us(gather)} |",
        f"| of which Python (the rest, less the timing wrappers' {_us(wrapper)}) | {_us(python_time)} |",
        f"| fit, tiny {tiny_sizes} model, batch {TINY_BATCH}: the loop with near-free kernels "
        f"(median of {epochs} epochs; CPU time {_us(tiny_step_cpu)}) | {_us(tiny_step)} |",
        f"| the same, timed: inside `_C` calls / the gather / Python | {_us(tiny_compiled)} / {_us(tiny_gather)} / "
        f"{_us(tiny_python)} |",
    ]
    if torch_results is not None:
        lines += [f"| PyTorch eager step, {sizes}, batch {BATCH} (CPU time {_us(torch_results[3])}) "
                  f"| {_us(torch_results[0])} |",
                  f"| PyTorch eager step, tiny {tiny_sizes}, batch {TINY_BATCH} (CPU time {_us(torch_results[4])}) "
                  f"| {_us(torch_results[1])} |"]
    lines += ["", "Time per step, by kernel (the timed epoch):", "",
              "| kernel | calls per step | time per step | share of the step |", "|---|---:|---:|---:|"]
    for name, (count, seconds) in sorted(per_kernel.items(), key=lambda item: -item[1][1]):
        lines.append(f"| `{name}` | {count:.0f} | {_us(seconds)} | {seconds / wall:.1%} |")
    lines += ["", f"### cProfile: one epoch ({STEPS} steps), top {top} by own time", "", "```", profile, "```", ""]
    lines += ["### Allocations per step (tracemalloc, steady state)", "",
              f"tracemalloc traces Python objects and NumPy's array buffers. One epoch of {memory['steps']} steps; "
              f"a step spans one iteration of fit's loop (batch gathering, forward, loss, backward, Adam, "
              f"logs, callbacks).", "",
              "| | bytes |", "|---|---:|",
              f"| first step: peak above the memory held before fit (fit's set-up: workspace, loader buffers) "
              f"| {_bytes(memory['first_step_peak'])} |",
              f"| later steps: peak above the step's start, median | {_bytes(memory['transient_median'])} |",
              f"| later steps: peak above the step's start, largest | {_bytes(memory['transient_max'])} |",
              f"| later steps: memory kept per step, median | {_bytes(memory['growth_median'])} |",
              f"| memory kept over steps 2 to {memory['steps']} in all | {_bytes(memory['growth_total'])} |",
              "",
              "A step's peak is the Python objects of one iteration (array views, floats, the batch's "
              "logs dict); a NumPy buffer of the batch (labels: 2 KiB, logits: 10 KiB, activations: "
              "from 256 KiB) would show above them.",
              "", "Per op call (peak bytes allocated inside one call, median):", "",
              "| op | calls per step | peak bytes per call, median | largest |", "|---|---:|---:|---:|"]
    for name, (count, peak, largest) in sorted(op_memory.items(), key=lambda item: -item[1][1]):
        lines.append(f"| `ops.{name}` | {count:.0f} | {_bytes(peak)} | {_bytes(largest)} |")
    start, stop = memory["span"]
    lines += ["", f"Memory kept between step {start} and step {stop}, by line (the largest differences):", "",
              "```"]
    lines += [str(stat).replace(str(ROOT) + "/", "") for stat in memory["kept"]] or ["(none)"]
    lines += ["```", ""]
    if torch_results is not None:
        lines += [f"### PyTorch: torch.profiler, one epoch ({STEPS} steps), top operators by self CPU time", "",
                  "```", torch_results[2].rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], metavar="N",
                        help="thread counts to profile, each for fusedtrain and PyTorch (default 1)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of 200 steps per figure (default 3)")
    parser.add_argument("--top", type=int, default=25, help="cProfile lines to keep (default 25)")
    parser.add_argument("--out", type=Path, default=None, help="write the findings to this Markdown file")
    parser.add_argument("--note", action="append", default=[], help="a line to add under the machine facts")
    args = parser.parse_args(argv)
    if min(args.threads) < 1 or args.epochs < 1:
        parser.error("--threads and --epochs must be at least 1")
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    facts = bench.machine_facts()
    if torch is not None:
        facts["PyTorch"] = torch.__version__
    lines = bench.results_header("Profile of one fusedtrain training step", "bench/profile_step.py", argv, facts,
                                 args.note)
    sizes = "-".join(map(str, LAYER_SIZES))
    lines += [f"Task: {sizes} ReLU MLP, Adam lr 1e-3, sparse categorical cross-entropy, batch {BATCH}, "
              f"{STEPS} steps per epoch (random float32 data), "
              f"`model.fit(..., epochs=1, shuffle=True, verbose=0)`.", ""]
    for threads in args.threads:
        say(f"{threads} thread(s):")
        lines.append(profile_section(threads, args.epochs, args.top, say))
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
