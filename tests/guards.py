"""Bounds for the tests of hostile inputs, so that a regression fails fast instead of hanging
the suite or eating the machine's memory: ``bounded`` guards a block of this process (SIGALRM
turns a hang into TimeoutError, a lowered soft RLIMIT_AS turns a runaway allocation into
MemoryError), ``run_bounded`` runs a script in a fresh Python under both bounds."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

try:
    import resource
except ImportError:  # Windows
    resource = None

# Where the bounds can be set: a POSIX system with /proc (Linux), FIFOs and /dev/zero.
SUPPORTED = (resource is not None and hasattr(signal, "setitimer") and hasattr(os, "mkfifo")
             and os.path.exists("/proc/self/status") and os.path.exists("/dev/zero"))
needs_bounds = pytest.mark.skipif(not SUPPORTED, reason="needs Linux: /proc, RLIMIT_AS, setitimer, FIFOs, /dev/zero")

# How much a guarded block may add to the address space: far more than reading a small file
# needs, far less than reading an 8 GiB file or /dev/zero would take.
MEMORY = 1 << 30


def address_space() -> int:
    """The process's virtual memory size in bytes (VmSize)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmSize line")


def _timed_out(signum, frame):
    raise TimeoutError("the guarded call ran past its time bound (a hang?)")


@contextlib.contextmanager
def bounded(seconds: float = 10.0, memory: int = MEMORY):
    """Runs the block with at most ``seconds`` of wall time and ``memory`` more bytes of address
    space. A blocking system call (open on a FIFO) is interrupted by the alarm, whose handler
    raises, so the call does not resume."""
    previous_handler = signal.signal(signal.SIGALRM, _timed_out)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = address_space() + memory
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous_handler)


# Imports first (pandas too: the table readers import it on first use), then the bound on the
# address space, then the script.
_PRELUDE = textwrap.dedent("""
    import json, os, resource, sys, time
    import numpy as np
    import pandas
    try:
        import pyarrow.parquet
    except ImportError:
        pass
    import fusedtrain as ft
    from fusedtrain import cli, layers, serialization

    def _address_space():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    _soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + int(os.environ["GUARD_MEMORY"]), _hard))
""")


def run_bounded(script: str, *arguments: str, memory: int = MEMORY, timeout: float = 60.0):
    """Runs ``script`` in a new Python (after the imports of _PRELUDE, under an address space
    ``memory`` bytes larger than theirs) with ``arguments`` as sys.argv[1:], and returns what
    it printed last, decoded from JSON. The timeout (imports included) turns a hang into a
    failure."""
    environment = dict(os.environ, GUARD_MEMORY=str(memory))
    result = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(script), *arguments],
                            capture_output=True, text=True, timeout=timeout, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def split_file(contents):
    """A safetensors file's (header as JSON, the bytes after it)."""
    size = int.from_bytes(contents[:8], "little")
    return json.loads(contents[8:8 + size]), contents[8 + size:]


def join_file(header, body, text=None):
    """A safetensors file from a header (or its text as given) and the bytes after it."""
    encoded = (text if text is not None else json.dumps(header)).encode("utf-8", "surrogatepass")
    return len(encoded).to_bytes(8, "little") + encoded + body
