"""Times training on the GPU: a 784-512-256-10 MLP (relu, Adam, sparse categorical
cross-entropy) trained by fusedtrain with device="cuda", against the same model in PyTorch CUDA
eager mode on the same GPU and against fusedtrain's own CPU epoch on 2 threads:

    python bench/bench_training_gpu.py                  # batches 256 and 4096, 60,000 samples
    python bench/bench_training_gpu.py --quick          # 6,000 samples, a few seconds
    python bench/bench_training_gpu.py --out bench/results/training_gpu.md

Each figure is the median of several timed epochs after a warm-up epoch, the GPU synchronised
before the clock stops; a step is an epoch's time over its batches. The data (random features,
labels from a random linear teacher) lives on the GPU for both libraries, as fit keeps it.
ratio = reference time / fusedtrain time: above 1.0, fusedtrain is faster. The CPU epoch is
timed on a tenth of the samples and scaled (it is linear in the samples). Without a usable GPU
(or CuPy) it says so in one line and exits 0; without PyTorch its column says so."""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

import fusedtrain as ft
from fusedtrain import backends

SIZES = (784, 512, 256, 10)


def _data(samples: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, SIZES[0])).astype(np.float32)
    teacher = rng.standard_normal((SIZES[0], SIZES[-1])).astype(np.float32)
    return x, np.argmax(x @ teacher, axis=1).astype(np.int64)


def _model(device: str) -> ft.Sequential:
    model = ft.Sequential([ft.layers.Dense(SIZES[1], activation="relu"), ft.layers.Dense(SIZES[2], activation="relu"),
                           ft.layers.Dense(SIZES[3])], input_dim=SIZES[0], device=device, seed=0)
    model.compile(ft.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model


def _median_seconds(run, repeats: int, synchronize) -> float:
    run()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_fusedtrain(cupy, x, y, batch_size: int, repeats: int, device: str) -> float:
    model = _model(device)
    if device == "cpu":
        data_x, data_y = x, y
    else:
        data_x, data_y = cupy.asarray(x), cupy.asarray(y)

    def epoch():
        model.fit(data_x, data_y, epochs=1, batch_size=batch_size, verbose=0, seed=1)

    synchronize = (lambda: None) if device == "cpu" else cupy.cuda.get_current_stream().synchronize
    return _median_seconds(epoch, repeats, synchronize)


def time_torch(x, y, batch_size: int, repeats: int) -> Optional[float]:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    model = torch.nn.Sequential(torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.ReLU(),
                                torch.nn.Linear(SIZES[1], SIZES[2]), torch.nn.ReLU(),
                                torch.nn.Linear(SIZES[2], SIZES[3])).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_function = torch.nn.CrossEntropyLoss()
    data_x, data_y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    generator = torch.Generator(device=device).manual_seed(1)

    def epoch():
        order = torch.randperm(data_x.shape[0], device=device, generator=generator)
        for start in range(0, data_x.shape[0], batch_size):
            indices = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(data_x[indices]), data_y[indices])
            loss.backward()
            optimizer.step()

    return _median_seconds(epoch, repeats, torch.cuda.synchronize)


def run(quick: bool) -> List[str]:
    import cupy

    samples = 6000 if quick else 60000
    repeats = 2 if quick else 3
    x, y = _data(samples)
    lines = []
    gpu_name = ft.info().get("gpus", ["?"])[0]
    lines.append(f"# GPU training: {'-'.join(map(str, SIZES))} MLP, Adam, {samples:,} samples per epoch")
    lines.append("")
    lines.append(f"{datetime.date.today().isoformat()}, {gpu_name}, {platform.processor() or platform.machine()}; "
                 f"`python bench/bench_training_gpu.py{' --quick' if quick else ''}`; FP32 (no TF32) on both sides.")
    lines.append("")
    lines.append("| batch | fusedtrain GPU step (us) | PyTorch CUDA eager step (us) | ratio | fusedtrain GPU epoch (s) "
                 "| fusedtrain CPU epoch, 2 threads (s) | GPU speed-up over CPU |")
    lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    ft.set_num_threads(2)
    cpu_rows = max(samples // 10, 4096)
    for batch_size in (256, 4096):
        steps = -(-samples // batch_size)
        gpu_epoch = time_fusedtrain(cupy, x, y, batch_size, repeats, "cuda")
        torch_epoch = time_torch(x, y, batch_size, repeats)
        cpu_part = time_fusedtrain(cupy, x[:cpu_rows], y[:cpu_rows], batch_size, 1, "cpu")
        cpu_epoch = cpu_part * samples / cpu_rows
        torch_text = "no PyTorch CUDA" if torch_epoch is None else f"{torch_epoch / steps * 1e6:.1f}"
        ratio = "" if torch_epoch is None else f"{torch_epoch / gpu_epoch:.2f}"
        lines.append(f"| {batch_size} | {gpu_epoch / steps * 1e6:.1f} | {torch_text} | {ratio} | {gpu_epoch:.3f} | "
                     f"{cpu_epoch:.2f} | {cpu_epoch / gpu_epoch:.1f}x |")
    lines.append("")
    lines.append("Goals: a step faster than PyTorch CUDA eager (ratio > 1) at both batch sizes, and an "
                 "epoch at least 10x faster than the 2-thread CPU epoch.")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6,000 samples and fewer repeats")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    problem = backends.cuda_problem(0)
    if problem is not None:
        print(f"bench_training_gpu: skipped: {problem}")
        return 0
    text = "\n".join(run(args.quick))
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
