"""Data-parallel training over MPI (mpi4py), with the gradients summed by NCCL (CuPy's
``cupy.cuda.nccl``) on GPUs: ``mpiexec -n N python script.py`` or ``mpiexec -n N fusedtrain
train ...``. ``pip install "fusedtrain[mpi]"`` installs mpi4py and an MPI runtime (MPICH's
wheel, with its ``mpiexec``), so a machine needs no system MPI.

A process started by an MPI launcher (its environment names a rank and a world size) joins the
world when fusedtrain first asks for it (``world()``, which ``fit`` calls); ``init()`` does it
explicitly. Anything else, a plain ``python script.py`` included, is a world of one, and nothing
in training changes: mpi4py is not even imported.

In a world of N, ``Sequential.fit`` is synchronous data parallelism:
- Every rank passes the same data (the whole set, typically memory-mapped .npy files, of which
  each rank reads only the rows it uses): the order of the samples is the one a single process
  with the same seed uses (rank 0's generator, broadcast), and each rank takes a contiguous N-th
  of every global batch. Or, with ``fit(..., sharded=True)``, each rank passes only its shard
  (``shard``, ``load_shard``): each shuffles its own rows, and a global batch is every rank's
  next part (the epoch has ceil(total rows / batch_size) steps on every rank).
- Each step, the gradients of the ranks' parts are weighted by their share of the global batch
  and summed over the flat gradient buffer in one all-reduce; every rank applies the same fused
  update, so the weights stay identical (checked at each epoch's end by a CRC of the weights;
  a RuntimeError names the ranks that differ). Rank 0's initial weights are broadcast first.
- The epoch's loss and metrics, the validation values (each rank evaluates its part of the
  validation data) and ``stop_training`` are reduced over the ranks, so callbacks see the same
  logs on every rank and every rank stops at the same epoch; batch-level logs are the rank's own.
- Only rank 0 prints, writes model files (``save``, ``save_weights``, ``save_checkpoint``,
  ``export`` do nothing on the other ranks) and logs (ModelCheckpoint, CSVLogger, TensorBoard,
  MLflowLogger). A checkpoint holds the global state, so it resumes on any number of ranks.
- Dropout draws its masks per rank (each rank's rows are other samples).
- A rank that raises ends the whole job: ``init`` installs an exception hook that prints the
  error with the rank's number and aborts the MPI job (no rank is left waiting in a collective).
  A rank killed by a signal prints nothing; the launcher ends the job and names the process
  (MPICH's ``mpiexec``: its PID and host), so each rank says on joining which process it is
  (``fusedtrain: rank 1 of 2 is process 4242 on node7``, one line on stderr per rank).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import zlib
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import _files

# Environment variables by which MPI launchers (MPICH's hydra, Open MPI, PMIx, Slurm's srun) tell
# a process its world size. Slurm's is the step's task count, which srun sets for the tasks it
# starts: SLURM_NTASKS is set in the whole allocation (salloc's shell, sbatch's script), where a
# plain ``python script.py`` is still a world of one.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_WORLDSIZE", "SLURM_STEP_NUM_TASKS")
_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMIX_LOCAL_RANK", "SLURM_LOCALID")

_lock = threading.Lock()
_world: Optional["World"] = None


class World:
    """The processes that train together: ``rank`` (0 .. size-1), ``size``, and for a world of
    more than one the MPI communicator ``comm`` (mpi4py's COMM_WORLD)."""

    def __init__(self, rank: int = 0, size: int = 1, comm: Any = None):
        self.rank = rank
        self.size = size
        self.comm = comm
        self._nccl = None

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0, the one that prints and writes files."""
        return self.rank == 0

    @property
    def local_rank(self) -> int:
        """This process' index among the ranks on its machine (the launcher's, else the rank)."""
        for name in _LOCAL_RANK_VARIABLES:
            value = os.environ.get(name)
            if value is not None and value.isdigit():
                return int(value)
        return self.rank

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size})"

    # Collectives ---------------------------------------------------------------------------------

    def sum_gradients(self, gradients: Any, backend: Any) -> None:
        """Sums ``gradients`` (the flat buffer, NumPy or CuPy) over the ranks, in place."""
        if self.size == 1:
            return
        if backend.kind == "cuda":
            self._nccl_sum(gradients, backend)
            return
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, gradients, op=MPI.SUM)

    def _nccl_sum(self, gradients: Any, backend: Any) -> None:
        import cupy
        from cupy.cuda import nccl

        if self._nccl is None:
            unique_id = self.comm.bcast(nccl.get_unique_id() if self.is_main else None, root=0)
            with backend.scope():
                self._nccl = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        stream = cupy.cuda.get_current_stream().ptr
        self._nccl.allReduce(gradients.data.ptr, gradients.data.ptr, gradients.size, nccl.NCCL_FLOAT32,
                             nccl.NCCL_SUM, stream)

    def sum(self, values: Sequence[float]) -> List[float]:
        """The element-wise sums over the ranks of a few host numbers (float64)."""
        array = np.asarray(values, dtype=np.float64)
        if self.size == 1:
            return array.tolist()
        from mpi4py import MPI

        total = np.empty_like(array)
        self.comm.Allreduce(array, total, op=MPI.SUM)
        return total.tolist()

    def gather(self, value: Any) -> List[Any]:
        """``value`` of every rank, in rank order, on every rank."""
        if self.size == 1:
            return [value]
        return self.comm.allgather(value)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (picklable objects)."""
        if self.size == 1:
            return value
        return self.comm.bcast(value, root=0)

    def broadcast_array(self, array: np.ndarray) -> None:
        """Rank 0's contents of the host array ``array``, in place on every rank."""
        if self.size > 1:
            self.comm.Bcast(array, root=0)

    def check_identical(self, array: Any, what: str) -> None:
        """RuntimeError unless ``array`` (host bytes) is the same on every rank (a CRC each)."""
        if self.size == 1:
            return
        digests = self.gather(zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B")))
        if len(set(digests)) > 1:
            differing = [rank for rank, digest in enumerate(digests) if digest != digests[0]]
            raise RuntimeError(f"distributed: {what} differ between rank 0 and rank(s) "
                               f"{', '.join(map(str, differing))}; every rank must pass the same data, "
                               f"arguments and model")


def launched_size() -> int:
    """The world size an MPI launcher gave this process (1 when none did)."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return 1


def init() -> World:
    """Joins the MPI world this process was launched in (idempotent) and returns it; a world of
    one when no launcher started it. Installs the hook that ends the job when a rank raises."""
    global _world
    with _lock:
        if _world is not None:
            return _world
        if launched_size() <= 1:
            _world = World()
            return _world
        try:
            from mpi4py import MPI
        except ImportError:
            raise ImportError('distributed training needs mpi4py and an MPI runtime: '
                              'pip install "fusedtrain[mpi]"') from None
        comm = MPI.COMM_WORLD
        world = World(comm.Get_rank(), comm.Get_size(), comm)
        if world.size > 1:
            # A rank killed by a signal cannot say so, and the launcher names its process, not
            # its rank: each rank says which process it is while it can (no collective: a rank
            # may join before the others).
            print(f"fusedtrain: rank {world.rank} of {world.size} is process {os.getpid()} on "
                  f"{MPI.Get_processor_name()}", file=sys.stderr, flush=True)
            _install_abort_hook(world)
        _world = world
        return world


def world() -> World:
    """The current world: init()'s, joined on first use."""
    return _world if _world is not None else init()


def _install_abort_hook(world: World) -> None:
    previous = sys.excepthook

    def abort(kind, value, trace):
        # An exception that ends a rank must end the job: the other ranks would wait for it in
        # their next collective forever.
        print(f"fusedtrain: rank {world.rank} of {world.size} failed ({kind.__name__}: {value}); "
              f"ending the job", file=sys.stderr, flush=True)
        previous(kind, value, trace)
        sys.stderr.flush()
        # The launcher forwards each rank's output asynchronously: a moment for it to arrive.
        time.sleep(0.5)
        world.comm.Abort(1)

    sys.excepthook = abort


# Sharding ------------------------------------------------------------------------------------------

def shard_range(rows: int, rank: Optional[int] = None, size: Optional[int] = None) -> Tuple[int, int]:
    """[start, stop) of ``rank``'s contiguous block of ``rows`` rows (the current world's rank
    and size by default): blocks differ by one row at most, the first ones larger."""
    current = world()
    rank = current.rank if rank is None else rank
    size = current.size if size is None else size
    if not isinstance(size, int) or size < 1 or not isinstance(rank, int) or not 0 <= rank < size:
        raise ValueError(f"rank, size: expected 0 <= rank < size, got rank={rank!r}, size={size!r}")
    base, extra = divmod(int(rows), size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(array: Any, rank: Optional[int] = None, size: Optional[int] = None) -> Any:
    """This rank's block of rows of ``array`` (a view: of a memory-mapped array nothing is read)."""
    start, stop = shard_range(len(array), rank, size)
    return array[start:stop]


def load_shard(path: Any, rank: Optional[int] = None, size: Optional[int] = None) -> np.ndarray:
    """This rank's block of rows of the .npy file ``path``, memory-mapped (rows are read from
    disk when used): what ``fit(..., sharded=True)`` takes for data no machine holds whole.
    Only a regular file is opened: a folder, a FIFO or a device raises ValueError at once."""
    return shard(_map_npy(os.fspath(path)), rank, size)


def _map_npy(path: str) -> np.memmap:
    """The array of the .npy file ``path``, memory-mapped read-only from the descriptor that
    _files.open_regular checked (so the file mapped is the regular file checked)."""
    handle, available = _files.open_regular(path)
    with handle:
        try:
            shape, fortran_order, dtype, offset = _files.npy_layout(handle, available)
        except _files.NpyObjects as error:
            raise ValueError(f"{path}: {error}, which cannot be memory-mapped") from None
        except ValueError as error:
            raise ValueError(f"{path}: not a readable .npy file ({error})") from None
        return np.memmap(handle, dtype=dtype, mode="r", shape=shape, order="F" if fortran_order else "C",
                         offset=offset)
