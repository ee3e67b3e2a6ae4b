"""Run by tests/test_distributed.py under `mpiexec -n N python mpi_worker.py SCENARIO FOLDER` (and
as a single process, for the reference): each scenario trains the same small models and writes
what rank 0 (or every rank, where the test compares them) ends with into FOLDER."""

import json
import sys

import numpy as np

import fusedtrain as ft
from fusedtrain import callbacks, distributed, layers, optimizers

SCENARIO, FOLDER = sys.argv[1], sys.argv[2]
WORLD = distributed.world()


def data(rows=203, features=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] + 0.3 * x[:, 2] > 0.2)
    return x, y, rng.uniform(0.5, 2.0, rows)


def model(seed=None, device="auto"):
    # Each rank starts from other weights: fit broadcasts rank 0's.
    network = ft.Sequential([layers.Dense(16, activation="relu", kernel_regularizer="l2"), layers.Dense(8, activation="tanh"),
                             layers.Dense(3)], input_dim=6, seed=WORLD.rank if seed is None else seed, device=device)
    network.compile(optimizers.Adam(1e-2, clipnorm=1.0), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return network


def record(name, network, history):
    np.save(f"{FOLDER}/{name}-weights-{WORLD.size}-{WORLD.rank}.npy", network.backend.to_host(network.parameters))
    with open(f"{FOLDER}/{name}-history-{WORLD.size}-{WORLD.rank}.json", "w") as handle:
        json.dump({"history": history.history, "epochs": history.epoch}, handle)


x, y, weights = data()
if SCENARIO == "same":
    network = model()
    history = network.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0, seed=5,
                          sample_weight=weights, callbacks=[callbacks.CSVLogger(f"{FOLDER}/log.csv")])
    record("same", network, history)
elif SCENARIO == "early":
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 3, x.shape[0])  # random labels: the validation loss soon stops improving
    network = model()
    history = network.fit(x, noisy, epochs=60, batch_size=16, validation_split=0.3, verbose=0, seed=2,
                          callbacks=[callbacks.EarlyStopping(patience=2, restore_best_weights=True)])
    record("early", network, history)
elif SCENARIO == "stop-on-one-rank":
    class StopOnRankOne(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if WORLD.rank == 1 and self.params and batch == 3:
                self.model.stop_training = True

    network = model()
    history = network.fit(x, y, epochs=5, batch_size=16, verbose=0, seed=2, callbacks=[StopOnRankOne()])
    record("stop", network, history)
    np.save(f"{FOLDER}/stop-steps-{WORLD.rank}.npy", np.array([network.optimizer.iterations]))
elif SCENARIO == "fail":
    class FailOnRankOne(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if WORLD.rank == 1 and epoch == 1:
                raise RuntimeError("rank one's disk is full")

    model().fit(x, y, epochs=50, batch_size=16, verbose=0, callbacks=[FailOnRankOne()])
elif SCENARIO == "die":
    import os
    import signal

    class DieOnRankOne(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if WORLD.rank == 1 and epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    model().fit(x, y, epochs=50, batch_size=16, verbose=0, callbacks=[DieOnRankOne()])
elif SCENARIO == "diverge":
    class PerturbOnRankOne(callbacks.Callback):
        # After epoch 1's check: the next epoch's end finds the weights differ.
        def on_epoch_end(self, epoch, logs=None):
            if WORLD.rank == 1 and epoch == 0:
                self.model.parameters[0] += 1.0

    model().fit(x, y, epochs=50, batch_size=16, verbose=0, callbacks=[PerturbOnRankOne()])
elif SCENARIO == "writes":
    # Each rank runs in a folder of its own (mpiexec -wdir) and every path is relative: a file
    # written by a rank other than 0 lands in that rank's folder.
    network = model()
    network.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[
        callbacks.CSVLogger("log.csv"), callbacks.ModelCheckpoint("best.safetensors", monitor="loss")])
    network.save("model.safetensors")
    network.save_weights("weights.safetensors")
    network.save_checkpoint("checkpoint.safetensors")
elif SCENARIO in ("standin-cpu", "standin-gpu"):
    device = "cpu"
    if SCENARIO == "standin-gpu":
        # The device path on the stand-in CuPy (tests/standin_cupy.py), its NCCL all-reduce done
        # by MPI on the host memory the stand-in's pointers address.
        import types

        import pytest
        from mpi4py import MPI

        import standin_cupy

        standin_cupy.install(pytest.MonkeyPatch())
        import cupy

        class Communicator:
            def __init__(self, size, unique_id, rank):
                assert (size, rank) == (WORLD.size, WORLD.rank)

            def allReduce(self, send, receive, count, dtype, op, stream):
                assert send == receive and (dtype, op) == (7, 0)
                WORLD.comm.Allreduce(MPI.IN_PLACE, standin_cupy._view(send, (count,)), op=MPI.SUM)

        cupy.cuda.nccl = types.SimpleNamespace(get_unique_id=lambda: b"id", NcclCommunicator=Communicator,
                                               NCCL_FLOAT32=7, NCCL_SUM=0)
        sys.modules["cupy.cuda"] = cupy.cuda
        device = "cuda"
    network = model(device=device)
    history = network.fit(x, y, epochs=3, batch_size=32, validation_split=0.2, verbose=0, seed=5,
                          sample_weight=weights)
    record(SCENARIO, network, history)
elif SCENARIO == "mismatch":
    model().fit(x[: 100 + WORLD.rank], y[: 100 + WORLD.rank], epochs=2, verbose=0)
elif SCENARIO == "checkpoint":
    network = model()
    network.fit(x, y, epochs=2, batch_size=32, verbose=0, seed=7, callbacks=[
        callbacks.ModelCheckpoint(f"{FOLDER}/state.safetensors", save_training_state=True, monitor="loss")])
elif SCENARIO == "resume":
    network = model()
    history = network.fit(x, y, epochs=4, batch_size=32, verbose=0, resume=f"{FOLDER}/state.safetensors",
                          callbacks=[callbacks.ModelCheckpoint(f"{FOLDER}/state.safetensors",
                                                               save_training_state=True, monitor="loss")])
    record("resume", network, history)
elif SCENARIO == "uninterrupted":
    network = model()
    history = network.fit(x, y, epochs=4, batch_size=32, verbose=0, seed=7)
    record("uninterrupted", network, history)
elif SCENARIO == "sharded":
    network = model()
    if WORLD.is_main:
        np.save(f"{FOLDER}/x.npy", x)
    if WORLD.size > 1:
        WORLD.comm.Barrier()
    history = network.fit(distributed.load_shard(f"{FOLDER}/x.npy") if WORLD.size > 1 else x,
                          distributed.shard(y), epochs=4, batch_size=32, verbose=0, seed=3, sharded=True,
                          validation_data=(distributed.shard(x[:60]), distributed.shard(y[:60])))
    record("sharded", network, history)
    np.save(f"{FOLDER}/sharded-steps-{WORLD.size}-{WORLD.rank}.npy", np.array([network.optimizer.iterations]))
else:
    raise SystemExit(f"unknown scenario {SCENARIO}")
