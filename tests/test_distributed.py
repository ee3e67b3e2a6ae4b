"""Data-parallel training (fusedtrain.distributed) under `mpiexec -n 2` on this machine: the weights
after training on 2 ranks equal a single process's with the same global batches, EarlyStopping and
a stop asked for on one rank agree across ranks, a failing or killed rank ends the job naming it,
data that differs between ranks is refused, weights that drift apart end the job, a checkpoint
resumes on any number of ranks, sharded data trains, and rank 0 alone writes files (each rank
runs in a folder of its own, so a write from rank 1 would show). The sharding helpers, the world
of one, the GPU each rank takes and the NCCL path (on the stand-in CuPy; on a GPU where one is
present) run in-process."""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import _C, backends, distributed

WORKER = Path(__file__).with_name("mpi_worker.py")
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or os.environ.get("FUSEDTRAIN_SANITIZER_RUN") == "1",
    reason="no mpiexec (pip install 'fusedtrain[mpi]'), or the sanitizer run, which preloads ASan into every "
           "process (MPICH's launcher too); the plain run covers these")


def environment():
    # One thread per rank: two ranks on two cores. No launcher's variables (a Slurm job's
    # included): the tests start their own worlds.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PMI_", "OMPI_", "PMIX_", "MPI_", "HYDRA_", "SLURM_"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


def run(command, timeout, check):
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment())
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def launch(ranks, *arguments, timeout=120, check=True):
    return run(([MPIEXEC, "-n", str(ranks)] if ranks > 1 else []) + list(arguments), timeout, check)


def launch_in_folders(folders, *arguments, timeout=120):
    """One rank per folder, each run there (mpiexec's -wdir): relative paths name a rank's own files."""
    command = [MPIEXEC]
    for index, folder in enumerate(folders):
        command += ([":"] if index else []) + ["-n", "1", "-wdir", str(folder)] + list(arguments)
    return run(command, timeout, True)


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
    # Rank 1's weights changed after epoch 1's check; epoch 2's finds them.
    ("diverge", "RuntimeError: distributed: the weights after epoch 2 differ between rank 0 and rank(s) 1; "
                "every rank must pass the same data, arguments and model"),
])
def test_a_failing_rank_or_different_data_ends_the_job(tmp_path, name, message):
    result = scenario(2, name, tmp_path, check=False, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output
    if name == "die":
        # MPICH names the killed process by PID and host; the line each rank printed on joining
        # names the rank of that PID.
        killed = re.findall(r"PID (\d+) RUNNING AT", output)
        joined = dict(re.findall(r"fusedtrain: rank (\d) of 2 is process (\d+) on ", output))
        assert sorted(joined) == ["0", "1"] and killed == [joined["1"]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    scenario(2, "uninterrupted", folder)
    return load(folder, "uninterrupted", 2, 0)


@needs_mpi
@pytest.mark.parametrize("saved, resumed", [(2, 1), (1, 2), (2, 2)])
def test_a_checkpoint_resumes_on_any_number_of_ranks(tmp_path, uninterrupted, saved, resumed):
    scenario(saved, "checkpoint", tmp_path)
    scenario(resumed, "resume", tmp_path)
    weights, history = load(tmp_path, "resume", resumed, 0)
    assert history["epochs"] == [0, 1, 2, 3]  # the checkpoint's history, then epochs 2 and 3
    if resumed > 1:
        np.testing.assert_array_equal(load(tmp_path, "resume", resumed, 1)[0], weights)
    # The same global batches, summed over other numbers of ranks: float32 rounding apart.
    reference, full = uninterrupted
    np.testing.assert_allclose(weights, reference, rtol=1e-4, atol=1e-5)
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


def rank_folders(tmp_path):
    folders = [tmp_path / "rank0", tmp_path / "rank1"]
    for folder in folders:
        folder.mkdir()
    return folders


@needs_mpi
def test_rank_zero_alone_writes_the_model_files_and_logs(tmp_path):
    rank0, rank1 = rank_folders(tmp_path)
    launch_in_folders([rank0, rank1], sys.executable, str(WORKER), "writes", ".")
    assert sorted(os.listdir(rank0)) == ["best.safetensors", "checkpoint.safetensors", "log.csv",
                                         "model.safetensors", "weights.safetensors"]
    assert os.listdir(rank1) == []


@needs_mpi
def test_the_cli_under_mpiexec_writes_one_model(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=(x[:, 0] - x[:, 1] > 0).astype(np.int64))
    command = [sys.executable, "-m", "fusedtrain", "train", str(tmp_path / "data.npz"), "--epochs", "8",
               "--patience", "3", "--verbose", "0"]
    rank0, rank1 = rank_folders(tmp_path)
    # --out a relative path: where each rank would write it, in its own folder.
    result = launch_in_folders([rank0, rank1], *command, "--out", "model.safetensors")
    assert result.stdout.count("accuracy  samples") == 1  # rank 0 alone reported
    written = ["history.json", "model.safetensors"]
    plotted = "plot     model.png" in result.stdout  # not where matplotlib is missing
    assert sorted(os.listdir(rank0)) == sorted(written + ["model.png"] * plotted)
    assert os.listdir(rank1) == []
    launch(1, *command, "--no-plot", "--out", str(tmp_path / "one" / "model.safetensors"))
    two, one = ft.load(rank0 / "model.safetensors"), ft.load(tmp_path / "one" / "model.safetensors")
    for first, second in zip(two.get_weights(), one.get_weights()):
        np.testing.assert_allclose(first, second, rtol=1e-4, atol=1e-5)


# ---- in this process ----------------------------------------------------------------------------

@pytest.mark.parametrize("variables", [
    {},
    # A plain process inside a Slurm allocation (salloc's shell, sbatch's script): the job's task
    # count is set, but no srun or mpiexec started this process.
    {"SLURM_NTASKS": "4", "SLURM_NPROCS": "4", "SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "2",
     "SLURM_TASKS_PER_NODE": "2(x2)"},
], ids=["plain", "in-a-slurm-allocation"])
def test_a_plain_process_is_a_world_of_one_without_mpi(variables):
    code = ("import sys, fusedtrain as ft, numpy as np\n"
            "from fusedtrain import distributed, layers\n"
            "m = ft.Sequential([layers.Dense(2)], input_dim=3, seed=0); m.compile('sgd', 'mse')\n"
            "m.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)\n"
            "w = distributed.world(); print(w.rank, w.size, w.is_main, 'mpi4py' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**environment(), **variables}, timeout=60)
    assert result.stdout.split() == ["0", "1", "True", "False"], result.stderr


def clear_launcher_variables(monkeypatch):
    for name in distributed._SIZE_VARIABLES + distributed._LOCAL_RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_world_size_comes_from_a_launch_not_from_a_slurm_allocation(monkeypatch):
    clear_launcher_variables(monkeypatch)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert distributed.launched_size() == 1  # the allocation's, not a launch
    for name in ("SLURM_STEP_NUM_TASKS", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.setenv(name, "3")
        assert distributed.launched_size() == 3, name
        monkeypatch.delenv(name)


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
    np.save(tmp_path / "f.npy", np.asfortranarray(array))
    np.testing.assert_array_equal(distributed.load_shard(tmp_path / "f.npy", 0, 2), array[:8])
    np.save(tmp_path / "empty.npy", array[:0])
    assert distributed.load_shard(tmp_path / "empty.npy", 1, 2).shape == (0, 2)


def test_load_shard_refuses_what_is_not_a_regular_npy_file(tmp_path):
    with pytest.raises(ValueError, match=r": is a folder, not a regular file; fusedtrain reads only regular files$"):
        distributed.load_shard(tmp_path, 0, 2)
    with pytest.raises(ValueError, match=r"^/dev/null: is a character device, not a regular file"):
        distributed.load_shard("/dev/null", 0, 2)
    with open(tmp_path / "objects.npy", "wb") as handle:
        np.save(handle, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects\.npy: holds Python objects"):
        distributed.load_shard(tmp_path / "objects.npy", 0, 2)
    np.save(tmp_path / "x.npy", np.arange(30, dtype=np.float32).reshape(15, 2))
    data = (tmp_path / "x.npy").read_bytes()
    for name, changed, follow in (("cut", data[:-8], 112), ("long", data + b"\0" * 8, 128)):
        (tmp_path / f"{name}.npy").write_bytes(changed)
        with pytest.raises(ValueError, match=rf"{name}\.npy: not a readable \.npy file \(its header describes an "
                                             rf"array of shape \(15, 2\) and dtype float32, 120 bytes, but {follow} "
                                             rf"bytes follow the header"):
            distributed.load_shard(tmp_path / f"{name}.npy", 0, 2)
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ValueError, match=r"text\.npy: not a readable \.npy file"):
        distributed.load_shard(tmp_path / "text.npy", 0, 2)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_load_shard_refuses_a_fifo_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            distributed.load_shard(fifo, 0, 2)
        except ValueError as error:
            outcome.append(str(error))

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():
        # Blocked in open() waiting for a writer: one that opens and closes frees it.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("load_shard waited for a writer to open the FIFO")
    assert outcome == [f"{fifo}: is a FIFO (named pipe), not a regular file; fusedtrain reads only regular files"]


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    import standin_cupy

    standin_cupy.install(monkeypatch)
    monkeypatch.setattr(_C, "cuda_query", lambda: {"device_count": 4, "error": "", "driver": "13.0",
                                                    "devices": ["stand-in GPU (sm_90, 16384 MiB)"] * 4})
    clear_launcher_variables(monkeypatch)
    # Rank 6 of 8 (the world as init would join it, without MPI), 4 GPUs on each machine.
    monkeypatch.setattr(distributed, "_world", distributed.World(6, 8))
    monkeypatch.setenv("PMI_SIZE", "8")
    assert [backends.resolve(device).name for device in ("cuda", "auto")] == ["cuda:2", "cuda:2"]
    assert backends.resolve("cuda:1").name == "cuda:1"  # a GPU named by the user is kept
    # The launcher's local rank, not the global rank: MPICH's hydra, Open MPI, Slurm.
    for name, local_rank, gpu in (("MPI_LOCALRANKID", "1", "cuda:1"), ("OMPI_COMM_WORLD_LOCAL_RANK", "3", "cuda:3"),
                                  ("SLURM_LOCALID", "5", "cuda:1")):
        monkeypatch.setenv(name, local_rank)
        assert backends.resolve("cuda").name == gpu, name
        monkeypatch.delenv(name)
    # No launch: GPU 0, whatever the world object says.
    monkeypatch.delenv("PMI_SIZE")
    assert backends.resolve("cuda").name == "cuda:0"


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
