"""Data-parallel training (fusedtrain.distributed) under `mpiexec -n 2` on this machine: the weights
after training on 2 ranks equal a single process's with the same global batches, EarlyStopping and
a stop asked for on one rank agree across ranks, a failing rank ends the job naming it, data that
differs between ranks is refused, a checkpoint of a 2-rank run resumes in one process, sharded
data trains, and the CLI under mpiexec writes one model. The sharding helpers, the world of one
and the NCCL path (on the stand-in CuPy; on a GPU where one is present) run in-process."""

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import distributed

WORKER = Path(__file__).with_name("mpi_worker.py")
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or os.environ.get("FUSEDTRAIN_SANITIZER_RUN") == "1",
    reason="no mpiexec (pip install 'fusedtrain[mpi]'), or the sanitizer run, which preloads ASan into every "
           "process (MPICH's launcher too); the plain run covers these")


def environment():
    # One thread per rank: two ranks on two cores.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_", "HYDRA_"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


def launch(ranks, *arguments, timeout=120, check=True):
    command = ([MPIEXEC, "-n", str(ranks)] if ranks > 1 else []) + list(arguments)
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment())
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def scenario(ranks, name, folder, **kwargs):
    return launch(ranks, sys.executable, str(WORKER), name, str(folder), **kwargs)


def load(folder, name, size, rank=0):
    weights = np.load(folder / f"{name}-weights-{size}-{rank}.npy")
    with open(folder / f"{name}-history-{size}-{rank}.json") as handle:
        return weights, json.load(handle)


# ---- under mpiexec ------------------------------------------------------------------------------

@needs_mpi
def test_two_ranks_train_the_weights_one_process_trains(tmp_path):
    scenario(2, "same", tmp_path)
    rank0, history0 = load(tmp_path, "same", 2, 0)
    rank1, history1 = load(tmp_path, "same", 2, 1)
    np.testing.assert_array_equal(rank0, rank1)
    assert history0 == history1
    # The CSV log: rank 0 alone wrote it, one row per epoch.
    with open(tmp_path / "log.csv") as handle:
        assert [line.split(",")[0] for line in handle.read().splitlines()] == ["epoch", "0", "1", "2"]
    single = tmp_path / "single"
    single.mkdir()
    scenario(1, "same", single)
    reference, reference_history = load(single, "same", 1, 0)
    # Same global batches, gradients summed in another order: float32 rounding apart.
    np.testing.assert_allclose(rank0, reference, rtol=1e-4, atol=1e-5)
    for key, values in reference_history["history"].items():
        np.testing.assert_allclose(history0["history"][key], values, rtol=1e-4, atol=1e-5)


@needs_mpi
def test_two_ranks_on_the_device_path_match_two_on_the_cpu(tmp_path):
    # The stand-in CuPy runs the CPU kernels behind the device path, and its NCCL all-reduce is
    # MPI's on the same memory: bit for bit the CPU's result.
    scenario(2, "standin-gpu", tmp_path)
    scenario(2, "standin-cpu", tmp_path)
    for rank in (0, 1):
        device, device_history = load(tmp_path, "standin-gpu", 2, rank)
        cpu, cpu_history = load(tmp_path, "standin-cpu", 2, rank)
        np.testing.assert_array_equal(device, cpu)
        assert device_history == cpu_history


@needs_mpi
def test_early_stopping_stops_every_rank_at_the_same_epoch(tmp_path):
    scenario(2, "early", tmp_path)
    (rank0, history0), (rank1, history1) = load(tmp_path, "early", 2, 0), load(tmp_path, "early", 2, 1)
    assert history0["epochs"] == history1["epochs"] and len(history0["epochs"]) < 60
    np.testing.assert_array_equal(rank0, rank1)


@needs_mpi
def test_a_stop_asked_on_one_rank_stops_both_at_the_same_step(tmp_path):
    scenario(2, "stop-on-one-rank", tmp_path)
    steps = [int(np.load(tmp_path / f"stop-steps-{rank}.npy")[0]) for rank in (0, 1)]
    # Batch 3 (the 4th) ends with the request; the 5th batch's step is agreed to stop.
    assert steps == [4, 4]
    np.testing.assert_array_equal(load(tmp_path, "stop", 2, 0)[0], load(tmp_path, "stop", 2, 1)[0])


@needs_mpi
@pytest.mark.parametrize("name, message", [
    ("fail", "rank 1 of 2 failed (RuntimeError: rank one's disk is full); ending the job"),
    # A rank killed by a signal prints nothing: the launcher ends the others (no hang) and says so.
    ("die", "BAD TERMINATION"),
    ("mismatch", "distributed: rank 1 has samples=101 but rank 0 has 100; pass the same data on every rank"),
])
def test_a_failing_rank_or_different_data_ends_the_job(tmp_path, name, message):
    result = scenario(2, name, tmp_path, check=False, timeout=60)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


@needs_mpi
def test_a_checkpoint_of_two_ranks_resumes_in_one_process(tmp_path):
    scenario(2, "checkpoint", tmp_path)
    scenario(1, "resume", tmp_path)
    resumed, history = load(tmp_path, "resume", 1, 0)
    assert history["epochs"] == [0, 1, 2, 3]  # the checkpoint's history, then epochs 2 and 3
    scenario(2, "uninterrupted", tmp_path)
    uninterrupted, full = load(tmp_path, "uninterrupted", 2, 0)
    np.testing.assert_allclose(resumed, uninterrupted, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(history["history"]["loss"], full["history"]["loss"], rtol=1e-4)


@needs_mpi
def test_sharded_data_trains_with_the_global_steps(tmp_path):
    scenario(2, "sharded", tmp_path)
    (rank0, history0), (rank1, history1) = load(tmp_path, "sharded", 2, 0), load(tmp_path, "sharded", 2, 1)
    np.testing.assert_array_equal(rank0, rank1)
    assert history0 == history1
    steps = int(np.load(tmp_path / "sharded-steps-2-0.npy")[0])
    assert steps == 4 * -(-203 // 32)
    losses = history0["history"]["loss"]
    assert losses[-1] < losses[0] and np.isfinite(history0["history"]["val_loss"]).all()


@needs_mpi
def test_the_cli_under_mpiexec_writes_one_model(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=(x[:, 0] - x[:, 1] > 0).astype(np.int64))
    command = [sys.executable, "-m", "fusedtrain", "train", str(tmp_path / "data.npz"), "--epochs", "8",
               "--patience", "3", "--verbose", "0", "--no-plot"]
    result = launch(2, *command, "--out", str(tmp_path / "two" / "model.safetensors"))
    assert result.stdout.count("accuracy  samples") == 1  # rank 0 alone reported
    assert sorted(os.listdir(tmp_path / "two")) == ["history.json", "model.safetensors"]
    launch(1, *command, "--out", str(tmp_path / "one" / "model.safetensors"))
    two, one = ft.load(tmp_path / "two" / "model.safetensors"), ft.load(tmp_path / "one" / "model.safetensors")
    for first, second in zip(two.get_weights(), one.get_weights()):
        np.testing.assert_allclose(first, second, rtol=1e-4, atol=1e-5)


# ---- in this process ----------------------------------------------------------------------------

def test_a_plain_process_is_a_world_of_one_without_mpi():
    code = ("import sys, fusedtrain as ft, numpy as np\n"
            "from fusedtrain import distributed, layers\n"
            "m = ft.Sequential([layers.Dense(2)], input_dim=3, seed=0); m.compile('sgd', 'mse')\n"
            "m.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)\n"
            "w = distributed.world(); print(w.rank, w.size, w.is_main, 'mpi4py' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment(), timeout=60)
    assert result.stdout.split() == ["0", "1", "True", "False"]


def test_shards_cover_every_row_once():
    for rows in (0, 1, 7, 100, 203):
        for size in (1, 2, 3, 8):
            ranges = [distributed.shard_range(rows, rank, size) for rank in range(size)]
            assert ranges[0][0] == 0 and ranges[-1][1] == rows
            assert all(stop == start for (_, stop), (start, _) in zip(ranges, ranges[1:]))
            sizes = [stop - start for start, stop in ranges]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    array = np.arange(20).reshape(10, 2)
    np.testing.assert_array_equal(distributed.shard(array, 1, 3), array[4:7])
    with pytest.raises(ValueError, match=r"^rank, size: expected 0 <= rank < size, got rank=3, size=3"):
        distributed.shard_range(10, 3, 3)


def test_load_shard_maps_only_the_rows_of_the_rank(tmp_path):
    array = np.arange(30, dtype=np.float32).reshape(15, 2)
    np.save(tmp_path / "x.npy", array)
    part = distributed.load_shard(tmp_path / "x.npy", 1, 2)
    assert isinstance(part.base, np.memmap) or isinstance(part, np.memmap)
    np.testing.assert_array_equal(part, array[8:])


def test_the_loader_splits_each_global_batch_between_the_ranks():
    x = np.arange(23, dtype=np.float32).reshape(-1, 1)
    y = np.arange(23)
    rng = lambda: np.random.default_rng(4)
    # The batches are views of reused buffers: copies kept.
    whole = [batch[1].copy() for batch in ft.data.BatchLoader(x, y, 8, rng=rng())]
    parts = [[batch[1].copy() for batch in ft.data.BatchLoader(x, y, 8, rng=rng(), part=(rank, 3))]
             for rank in range(3)]
    for index, batch in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([part[index] for part in parts]), batch)
    steps = [batch[1].size for batch in ft.data.BatchLoader(x, y, 8, shuffle=False, steps=5)]
    assert steps == [5, 5, 5, 4, 4]


class _Comm:
    """A one-rank communicator (what mpi4py's COMM_WORLD offers the NCCL set-up)."""

    def bcast(self, value, root=0):
        return value


def test_the_nccl_all_reduce_on_the_stand_in(monkeypatch):
    import standin_cupy

    standin_cupy.install(monkeypatch)
    import cupy

    calls = []

    class Communicator:
        def __init__(self, size, unique_id, rank):
            calls.append(("init", size, unique_id, rank))

        def allReduce(self, send, receive, count, dtype, op, stream):
            calls.append(("allReduce", send, receive, count, dtype, op, stream))

    nccl = types.SimpleNamespace(get_unique_id=lambda: b"id", NcclCommunicator=Communicator, NCCL_FLOAT32=7,
                                 NCCL_SUM=0)
    cupy.cuda.nccl = nccl
    monkeypatch.setitem(sys.modules, "cupy.cuda", cupy.cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", nccl)
    model = ft.Sequential([ft.layers.Dense(3)], input_dim=4, device="cuda")
    model.build(4)
    world = distributed.World(0, 1, _Comm())
    world._nccl_sum(model.gradients, model.backend)
    world._nccl_sum(model.gradients, model.backend)
    assert calls[0] == ("init", 1, b"id", 0)
    pointer = model.gradients.data.ptr
    assert calls[1:] == [("allReduce", pointer, pointer, 15, 7, 0, standin_cupy.STREAM)] * 2


def test_the_nccl_all_reduce_on_a_gpu():
    report = ft.info()
    if not (report["cuda_compiled"] and report["gpu_found"] and report["cupy"]):
        pytest.skip("no usable GPU and CuPy")
    import cupy

    try:
        from cupy.cuda import nccl
    except ImportError as error:
        pytest.skip(f"CuPy without NCCL ({error}; pip install nvidia-nccl-cu13)")
    if not getattr(nccl, "available", True):
        pytest.skip("CuPy without NCCL (pip install nvidia-nccl-cu13)")

    model = ft.Sequential([ft.layers.Dense(3)], input_dim=4, device="cuda")
    model.build(4)
    model.gradients[...] = cupy.arange(15, dtype=cupy.float32)
    world = distributed.World(0, 1, _Comm())
    world._nccl_sum(model.gradients, model.backend)
    cupy.cuda.get_current_stream().synchronize()
    np.testing.assert_array_equal(cupy.asnumpy(model.gradients), np.arange(15, dtype=np.float32))
