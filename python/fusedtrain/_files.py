"""Opening the files fusedtrain reads (model, weight and checkpoint files, the command line's
data files) so that a wrong path costs next to nothing: only a regular file is opened, and
reading stops at the size the caller expects.

A FIFO with no writer would block ``open`` forever, a device such as /dev/zero never ends, and
opening some devices has side effects, so the path is checked with ``os.stat`` before it is
opened. The check and the opening are two steps, and the path may be swapped in between: the
file is therefore opened with O_NONBLOCK (which lets ``open`` return at once on a FIFO) and
checked again, on the open descriptor, with ``os.fstat``."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Tuple

# O_NONBLOCK does not exist on Windows, where opening a named pipe by path does not block.
_NONBLOCKING = getattr(os, "O_NONBLOCK", 0)
_READ_FLAGS = os.O_RDONLY | _NONBLOCKING | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


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


def not_regular_error(path: str, mode: int) -> ValueError:
    return ValueError(f"{path}: is {kind_of(mode)}, not a regular file; fusedtrain reads only regular files")


def open_regular(path: str) -> Tuple[BinaryIO, int]:
    """(an open binary file, its size in bytes) for the regular file ``path``. Anything else
    (a folder, a FIFO, a device, a socket) raises ValueError naming the path without blocking
    and, but for the race described above, without being opened. A missing or unreadable file
    raises the OSError ``open`` would (FileNotFoundError, PermissionError)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise not_regular_error(path, mode)
    descriptor = os.open(path, _READ_FLAGS)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise not_regular_error(path, status.st_mode)
        if _NONBLOCKING:
            # A regular file ignores O_NONBLOCK; cleared all the same, so the file object
            # behaves as one open() would give.
            os.set_blocking(descriptor, True)
        handle = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    return handle, status.st_size


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
