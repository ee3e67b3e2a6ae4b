"""Data-parallel scaling on this machine: an epoch of the 784-512-256-10 MLP (Adam, global batch
256, 60,000 samples) on 1 rank and on 2 ranks of one thread each (mpiexec, fusedtrain.distributed),
the all-reduce of its gradient buffer, and an estimate for N hosts from those measurements.

    python bench/bench_distributed.py [--repeats 3] [--out bench/results/distributed.md]

The driver launches `mpiexec -n 1`, `mpiexec -n 2` and one process of two threads in turn, `--repeats` times each; every run
trains 3 epochs and reports the median of epochs 2 and 3 (the first builds the workspaces), and
times 50 all-reduces of the flat gradient buffer. Medians over the runs are printed.

The estimate for N hosts, one rank of one thread on each, is a model, not a measurement: a step takes the compute of 256/N rows (the measured 1-rank
step scaled by rows) plus a ring all-reduce, 2 (N - 1) latency + 2 (N - 1) / N bytes / bandwidth,
for 10 Gbit/s Ethernet (1.25 GB/s, 30 us) and 100 Gbit/s InfiniBand (12.5 GB/s, 3 us)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

SAMPLES, FEATURES, CLASSES, BATCH, EPOCHS = 60_000, 784, 10, 256, 3


def worker() -> None:
    import numpy as np

    import fusedtrain as ft
    from fusedtrain import callbacks, distributed, layers

    world = distributed.world()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((SAMPLES, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, SAMPLES)
    model = ft.Sequential([layers.Dense(512, activation="relu"), layers.Dense(256, activation="relu"),
                           layers.Dense(CLASSES)], input_dim=FEATURES, seed=0, device="cpu")
    model.compile("adam", "sparse_categorical_crossentropy")
    seconds = []

    class Clock(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, seed=1, callbacks=[Clock()])
    reduces = []
    for _ in range(50):
        if world.size > 1:
            world.comm.Barrier()
        start = time.perf_counter()
        world.sum_gradients(model.gradients, model.backend)
        reduces.append(time.perf_counter() - start)
    if world.is_main:
        print(json.dumps({"ranks": world.size, "epoch": statistics.median(seconds[1:]),
                          "allreduce": statistics.median(reduces), "parameters": int(model.parameters.size)}))


def run(ranks: int, threads: int = 1) -> dict:
    mpiexec = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))
    if mpiexec is None:
        raise SystemExit('bench_distributed: no mpiexec; pip install "fusedtrain[mpi]"')
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    result = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker"], capture_output=True,
                            text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def estimate(step_one: float, gradient_bytes: int, hosts: int, bandwidth: float, latency: float) -> float:
    """Seconds per step on ``hosts`` hosts: compute of BATCH/hosts rows plus a ring all-reduce."""
    if hosts == 1:
        return step_one
    return step_one / hosts + 2 * (hosts - 1) * latency + 2 * (hosts - 1) / hosts * gradient_bytes / bandwidth


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    runs = {1: [], 2: [], "threads": []}
    for _ in range(args.repeats):
        for ranks in (1, 2):
            runs[ranks].append(run(ranks))
        runs["threads"].append(run(1, threads=2))
    epoch = {ranks: statistics.median(entry["epoch"] for entry in entries) for ranks, entries in runs.items()}
    allreduce = statistics.median(entry["allreduce"] for entry in runs[2])
    parameters = runs[1][0]["parameters"]
    steps = -(-SAMPLES // BATCH)
    step_one = epoch[1] / steps
    from fusedtrain.bench import cpu_model

    lines = [
        f"# Data-parallel scaling (bench/bench_distributed.py)",
        "",
        f"{datetime.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} cores; MPICH via the `mpich` wheel, "
        f"one thread per rank (OMP_NUM_THREADS=1). Command: `python bench/bench_distributed.py --repeats "
        f"{args.repeats}`; medians of {args.repeats} runs (each the median of epochs 2-3).",
        "",
        f"784-512-256-10 MLP, Adam, global batch {BATCH}, {SAMPLES:,} samples ({steps} steps per epoch), "
        f"{parameters:,} parameters ({parameters * 4 / 2**20:.2f} MiB of gradients per all-reduce).",
        "",
        "| ranks x threads | epoch (s) | speed-up |",
        "|---|---:|---:|",
        f"| 1 x 1 | {epoch[1]:.3f} | 1.00 |",
        f"| 2 x 1 | {epoch[2]:.3f} | {epoch[1] / epoch[2]:.2f} |",
        f"| 1 x 2 (no MPI, for comparison) | {epoch['threads']:.3f} | {epoch[1] / epoch['threads']:.2f} |",
        "",
        "On one machine, a rank's threads share the work without an all-reduce: ranks pay where the data or "
        "the compute outgrows one machine.",
        "",
        f"All-reduce of the gradient buffer on 2 ranks of this machine (shared memory): "
        f"{allreduce * 1e3:.3f} ms per step, {allreduce * steps / epoch[2]:.1%} of the 2-rank epoch.",
        "",
        "Estimate for N hosts of one rank each (a model from the 1-rank step time "
        f"{step_one * 1e3:.2f} ms, scaled by rows, plus a ring all-reduce of the buffer; not measured):",
        "",
        "| hosts | 10 GbE step (ms) | 10 GbE speed-up | 100 Gb IB step (ms) | 100 Gb IB speed-up |",
        "|---:|---:|---:|---:|---:|",
    ]
    for hosts in (1, 2, 4, 8, 16, 32):
        ethernet = estimate(step_one, parameters * 4, hosts, 1.25e9, 30e-6)
        infiniband = estimate(step_one, parameters * 4, hosts, 12.5e9, 3e-6)
        lines.append(f"| {hosts} | {ethernet * 1e3:.2f} | {step_one / ethernet:.2f} | {infiniband * 1e3:.2f} | "
                     f"{step_one / infiniband:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
