"""Opening the files fusedtrain reads (model, weight and checkpoint files, the command line's
data files, a CSV log that training continues) so that a wrong path costs next to nothing:
only a regular file is opened, and reading stops at the size the caller expects.

A FIFO with no writer would block ``open`` forever, a device such as /dev/zero never ends, and
opening some devices has side effects, so the path is checked with ``os.stat`` before it is
opened. The check and the opening are two steps, and the path may be swapped in between: the
file is therefore opened with O_NONBLOCK (which lets ``open`` return at once on a FIFO) and
checked again, on the open descriptor, with ``os.fstat``."""

from __future__ import annotations

import math
import os
import stat
from typing import BinaryIO, Tuple

import numpy as np

# O_NONBLOCK does not exist on Windows, where opening a named pipe by path does not block.
_NONBLOCKING = getattr(os, "O_NONBLOCK", 0)
_COMMON_FLAGS = _NONBLOCKING | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | _COMMON_FLAGS
_APPEND_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | _COMMON_FLAGS


def kind_of(mode: int) -> str:
    """What a file of ``mode`` (st_mode) is, in words, for the messages."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def not_regular_error(path: str, mode: int, rule: str = "fusedtrain reads only regular files") -> ValueError:
    return ValueError(f"{path}: is {kind_of(mode)}, not a regular file; {rule}")


def _open_checked(path: str, flags: int, opened_as: str, rule: str) -> Tuple[BinaryIO, int]:
    """(``path`` opened with ``flags`` as a binary file of mode ``opened_as``, its size), the
    path checked before and after opening (see the top of this file)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    else:
        if not stat.S_ISREG(mode):
            raise not_regular_error(path, mode, rule)
    descriptor = os.open(path, flags, 0o666)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise not_regular_error(path, status.st_mode, rule)
        if _NONBLOCKING:
            # A regular file ignores O_NONBLOCK; cleared all the same, so the file object
            # behaves as one open() would give.
            os.set_blocking(descriptor, True)
        handle = os.fdopen(descriptor, opened_as)
    except BaseException:
        os.close(descriptor)
        raise
    return handle, status.st_size


def open_regular(path: str) -> Tuple[BinaryIO, int]:
    """(an open binary file, its size in bytes) for the regular file ``path``. Anything else
    (a folder, a FIFO, a device, a socket) raises ValueError naming the path without blocking
    and, but for the race described above, without being opened. A missing or unreadable file
    raises the OSError ``open`` would (FileNotFoundError, PermissionError)."""
    return _open_checked(path, _READ_FLAGS, "rb", "fusedtrain reads only regular files")


def open_appending(path: str, writer: str) -> BinaryIO:
    """The regular file ``path`` open for reading from its start and appending (binary, every
    write goes to the end), created when missing: what a log that is read before it goes on
    needs. Anything else raises ValueError as open_regular does, naming ``writer`` (what appends
    to it); a FIFO swapped in after the check is refused on the open descriptor, never blocks."""
    handle = _open_checked(path, _APPEND_FLAGS, "a+b", f"{writer} appends only to regular files")[0]
    handle.seek(0)  # mode "a" starts at the end; O_APPEND still sends every write there
    return handle


def read_exactly(handle: BinaryIO, count: int, source: str) -> bytearray:
    """The next ``count`` bytes of ``handle``, read into one buffer of that size (no more is
    read); ValueError naming ``source`` when the file ends sooner (it changed while being read)."""
    buffer = bytearray(count)
    view = memoryview(buffer)
    done = 0
    while done < count:
        got = handle.readinto(view[done:])
        if not got:
            raise ValueError(f"{source}: the file ended after {done} of the {count} bytes expected; it changed "
                             f"while being read")
        done += got
    return buffer


class NpyObjects(ValueError):
    """An .npy array of Python objects: a pickle, which fusedtrain never loads."""


def npy_layout(stream: BinaryIO, available: int) -> Tuple[Tuple[int, ...], bool, np.dtype, int]:
    """(shape, Fortran order, dtype, offset of the data) of the .npy data at the start of
    ``stream``, which holds ``available`` bytes, from its header alone. ValueError for a header
    that is not one of format 1.0 or 2.0 (NumPy writes 3.0 only for structured dtypes with
    non-Latin-1 field names) or whose array is not exactly the bytes after it; NpyObjects for
    an array of Python objects."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]}, expected 1.0 or 2.0")
    if dtype.hasobject:
        raise NpyObjects("holds Python objects (a pickled array)")
    offset = stream.tell()
    size = math.prod(shape) * dtype.itemsize
    if size != available - offset:
        raise ValueError(f"its header describes an array of shape {shape} and dtype {dtype}, {size:,} bytes, but "
                         f"{available - offset:,} bytes follow the header (a truncated or damaged file)")
    return shape, fortran_order, dtype, offset
