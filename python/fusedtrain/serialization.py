"""fusedtrain's files: model files (``model.save`` / ``fusedtrain.load``), weight files
(``save_weights`` / ``load_weights``) and training checkpoints (``save_checkpoint`` /
``fit(..., resume=path)``). All three are safetensors files, written atomically. A model
file's contents also exist as bytes in memory (``model_bytes`` / ``load_bytes``: the
scikit-learn estimators pickle through them).

Tensors (float32, C order):
    layers.{i}.kernel        (inputs, units), i being the layer's index in model.layers
    layers.{i}.bias          (units,)
    optimizer.{name}         checkpoints: the optimizer's flat state (m, v, velocity, square_avg)
    callbacks.{k}.{key}.{j}  checkpoints: arrays kept by the k-th stateful callback (the best
                             weights of EarlyStopping(restore_best_weights=True))
Metadata (safetensors' str -> str map):
    format               "fusedtrain.weights", "fusedtrain.model" or "fusedtrain.checkpoint"
    format_version       "1"; a reader refuses a version newer than it knows
    fusedtrain_version   the package version that wrote the file
    architecture         model files and checkpoints: {"class_name": "Sequential", "config": {...}}
    compile              (optional) the optimizer's configuration, the loss and the metrics
    training             checkpoints: epoch, step counters, random generator states, history,
                         callback states

Reading checks the whole file (header, metadata, every tensor's name, dtype, shape and values)
before anything is assigned: a damaged, foreign or mismatched file raises ValueError and leaves
the model as it was. Only regular files are opened, and the header, the architecture and every
string and integer of the metadata are bounded (MAX_HEADER_BYTES, MAX_LAYERS, ...; README,
Reliability), so that no file costs more time or memory than its size warrants."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import secrets
import warnings
from typing import TYPE_CHECKING, Any, BinaryIO, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _files
from . import callbacks as callbacks_module
from . import initializers as initializers_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import regularizers as regularizers_module
from ._version import __version__
from .layers import GELU, Activation, Dense, Dropout, LeakyReLU, Normalization, ReLU, Sigmoid, Softmax, Tanh
from .ops import _checks as check

if TYPE_CHECKING:
    from .models import Sequential

FORMAT_VERSION = 1
WEIGHTS_FORMAT = "fusedtrain.weights"
MODEL_FORMAT = "fusedtrain.model"
CHECKPOINT_FORMAT = "fusedtrain.checkpoint"
_FORMATS = (WEIGHTS_FORMAT, MODEL_FORMAT, CHECKPOINT_FORMAT)

LAYER_CLASSES = {cls.__name__: cls for cls in (Dense, Dropout, Activation, ReLU, LeakyReLU, Sigmoid, Tanh,
                                               GELU, Softmax, Normalization)}
OPTIMIZER_CLASSES = {cls.__name__: cls for cls in (optimizers_module.SGD, optimizers_module.Adam,
                                                   optimizers_module.AdamW, optimizers_module.RMSprop)}
# Layer settings that do not change what a built model computes: a checkpoint may be resumed
# into a model that differs in these.
_RESUME_IGNORED_SETTINGS = ("name", "trainable", "kernel_initializer", "bias_initializer")
# The metadata entries fusedtrain writes itself; save(metadata=...) may add others.
_RESERVED_METADATA = ("format", "format_version", "fusedtrain_version", "architecture", "compile", "training",
                      "inputs")
# Those that hold a short token (at most MAX_NAME_CHARS printable characters), which messages
# quote; the JSON entries are checked as they are decoded, and any other entry (save(metadata=...)'s,
# such as the command line's task with its class labels) is the user's text, no lone surrogate, as
# long as the header holds.
_TOKEN_METADATA = ("format", "format_version", "fusedtrain_version")
# What the built-in callbacks keep (their get_state), key by key: the kinds of value (as
# _value_kind names them) each key may hold, so that resume refuses a damaged state before
# training rather than failing in the middle of an epoch. Another callback's set_state checks
# its own state.
_COUNTER = ("an integer",)
_MEASURE = ("None", "a number", "an integer")  # None: nothing measured yet
_EPOCH = ("None", "an integer")
_FLAG = ("a boolean",)
_WEIGHTS = ("None", "arrays", "an empty list")
CALLBACK_STATE_KINDS = {
    "EarlyStopping": {"wait": _COUNTER, "stopped_epoch": _COUNTER, "best": _MEASURE, "best_epoch": _EPOCH,
                      "stopped": _FLAG, "best_weights": _WEIGHTS},
    "ReduceLROnPlateau": {"best": _MEASURE, "wait": _COUNTER, "cooldown_counter": _COUNTER},
    "ModelCheckpoint": {"best": _MEASURE, "batches_seen": _COUNTER, "epoch": _COUNTER},
}
# In a callback's stored state, stands for a list of arrays kept as tensors "callbacks.{k}.{key}.{j}".
_TENSORS_MARK = "__tensors__"
# One os.write call writes at most this much (some systems refuse single writes above 2 GiB).
_WRITE_CHUNK = 1 << 30


# Atomic writes ----------------------------------------------------------------------------------

def write_atomically(path: Any, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that ``path`` holds either its old or its new contents,
    whatever happens: a temporary file in the same folder is written, flushed to disk with
    fsync, then renamed over ``path``; on any failure it is removed and an OSError naming
    ``path`` says that nothing was saved (a full disk says so). A process killed in the middle
    leaves ``path`` as it was, and possibly the temporary file: a hidden file beside it named
    ``.{name}.{12 hex digits}.tmp``, which nothing reads and which can be deleted."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # A hidden name beside the target (the rename must stay on one file system), short enough
    # for any name limit.
    temporary = os.path.join(folder, f".{os.path.basename(path)[:64]}.{secrets.token_hex(6)}.tmp")
    try:
        # O_EXCL never reuses a file; mode 0o666 leaves the permissions to the umask, as open() does.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:
        raise _not_saved_error(error, path) from error
    try:
        try:
            _write_all(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.remove(temporary)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise _not_saved_error(error, path) from error
        raise
    _sync_folder(folder)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view[:_WRITE_CHUNK])
        view = view[written:]


def _sync_folder(folder: str) -> None:
    """Makes the rename durable where the system can: the file is saved by then, so a folder
    that cannot be opened or synced (Windows cannot) is no error."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        try:
            os.close(descriptor)
        except OSError:
            pass


def _is_full_disk(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _not_saved_error(error: OSError, path: str) -> OSError:
    """The error of a failed write_atomically: the same errno (so the same OSError subclass,
    PermissionError for EACCES...), naming ``path`` rather than the temporary file."""
    if _is_full_disk(error):
        reason = "no space left on the device (the disk or the quota is full)"
    else:
        reason = error.strerror or str(error) or type(error).__name__
    return OSError(error.errno, f"not saved: {reason}; the previous file, if any, is unchanged", path)


# Reading ----------------------------------------------------------------------------------------

# The bounds of what a reader accepts (the README's Reliability section states them). Each is
# far above what a real model needs and low enough that a crafted file costs little time and
# memory; the writers refuse to write beyond them, so that every saved file loads.
MAX_HEADER_BYTES = 100_000_000  # safetensors' own reader refuses longer headers
MAX_LAYERS = 10_000
MAX_UNITS = 2**24  # the units of a layer and the model's input size
MAX_NAME_CHARS = check.MAX_NAME_CHARS  # names (layers, model, tensors, metadata keys), versions; printable
MAX_TEXT_CHARS = 131_072  # any other string in the metadata: Python's csv field limit
MAX_NESTING = 64  # JSON arrays and objects in one another
MAX_INTEGER_DIGITS = 309  # every finite float64 written as an integer (class labels can be)
MAX_DIMENSIONS = 32  # of a tensor (NumPy 1.x's limit)
_INTEGER_LIMIT = 10**MAX_INTEGER_DIGITS
# The safetensors dtypes NumPy can hold (little-endian, as safetensors stores them).
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
           "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
# A UTF-16 surrogate on its own: JSON's "\ud800" decodes to one, a string no output encodes.
_SURROGATE = re.compile("[\ud800-\udfff]")


class StoredFile:
    """A safetensors file read and checked: ``tensors`` (name -> read-only array), ``metadata``
    (str -> str), ``format`` (one of fusedtrain's, or None for a foreign file) and ``source``
    (the path, for messages)."""

    def __init__(self, source: str, tensors: Dict[str, np.ndarray], metadata: Dict[str, str],
                 file_format: Optional[str]):
        self.source = source
        self.tensors = tensors
        self.metadata = metadata
        self.format = file_format

    def json(self, key: str, required: bool = True) -> Any:
        """The metadata entry ``key`` decoded from JSON and checked (decode_json); None when
        absent and not required."""
        text = self.metadata.get(key)
        if text is None:
            if required:
                raise ValueError(f"{self.source}: the file's metadata has no {key!r} entry; it is damaged or "
                                 f"was not written by fusedtrain")
            return None
        return decode_json(text, self.source, key)


def _digits(text: str) -> int:
    return len(text) - text.startswith("-")


class _IntegerTooLong(Exception):
    """Raised by the header's JSON decoder on an integer of more than MAX_INTEGER_DIGITS
    digits, before Python converts it (which takes time quadratic in the digits, and fails
    past 4,300)."""

    def __init__(self, digits: int):
        super().__init__(digits)
        self.digits = digits


def _bounded_integer(text: str) -> int:
    digits = _digits(text)
    if digits > MAX_INTEGER_DIGITS:
        raise _IntegerTooLong(digits)
    return int(text)


class _LongInteger:
    """What a metadata entry's JSON decoder gives in place of an integer of more than
    MAX_INTEGER_DIGITS digits, unconverted: json_problem then finds it and names its position."""

    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits


def _integer_or_mark(text: str) -> Any:
    digits = _digits(text)
    return _LongInteger(digits) if digits > MAX_INTEGER_DIGITS else int(text)


def _too_long_message(digits: int) -> str:
    return f"holds an integer of {digits:,} digits, more than the {MAX_INTEGER_DIGITS} a file may hold"


def decode_json(text: str, source: str, key: str) -> Any:
    """The metadata entry ``key`` (JSON ``text``) decoded and checked by json_problem: a
    ValueError naming ``source`` and ``key`` for invalid JSON, and naming the position in it
    too for an integer beyond MAX_INTEGER_DIGITS digits, a string beyond MAX_TEXT_CHARS or
    with a lone surrogate, or nesting beyond MAX_NESTING."""
    where = f"{source}: the {key!r} metadata"
    try:
        value = json.loads(text, parse_int=_integer_or_mark)
    except (json.JSONDecodeError, RecursionError) as error:
        # RecursionError: arrays or objects nested thousands deep.
        raise ValueError(f"{where} is not valid JSON ({error}); the file is damaged") from None
    problem = json_problem(value)
    if problem:
        raise ValueError(f"{where} holds {problem}; the file is damaged")
    return value


def _value_problem(value: Any) -> Optional[str]:
    """What is wrong with a string or an integer of a file's JSON, or None."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            return f"a string of {len(value):,} characters (at most {MAX_TEXT_CHARS:,})"
        surrogate = _SURROGATE.search(value)
        if surrogate:
            return f"a string with a lone surrogate (\\u{ord(surrogate.group()):04x}), which is no character"
    elif isinstance(value, int) and not isinstance(value, bool) and not -_INTEGER_LIMIT < value < _INTEGER_LIMIT:
        return f"an integer of more than {MAX_INTEGER_DIGITS} digits"
    elif isinstance(value, _LongInteger):
        return f"an integer of {value.digits:,} digits (at most {MAX_INTEGER_DIGITS})"
    return None


def _position(path: Tuple[Any, ...]) -> str:
    """A position in a JSON value, as config.layers[3].config.name (long or odd keys quoted)."""
    steps = []
    for step in path:
        if isinstance(step, int):
            steps.append(f"[{step}]")
        else:
            steps.append("." + (step if check.is_name(step) and len(step) <= 40 else check.shown(step, 40)))
    return "".join(steps).lstrip(".") or "the top level"


def json_problem(value: Any) -> Optional[str]:
    """What makes a JSON value unfit for a file, with its position, or None: a string (a key
    included) of more than MAX_TEXT_CHARS characters or with a lone surrogate (no encoding
    can print it), an integer of more than MAX_INTEGER_DIGITS digits, or arrays and objects
    nested more than MAX_NESTING deep. Walks the value without recursion."""
    problem = _value_problem(value)
    if problem:
        return f"{problem} at the top level"
    stack = [(value, ())] if isinstance(value, (dict, list, tuple)) else []
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_NESTING:
            return f"arrays or objects nested more than {MAX_NESTING} deep at {_position(path)}"
        for key, child in (node.items() if isinstance(node, dict) else enumerate(node)):
            problem = _value_problem(key) or _value_problem(child)
            if problem:
                return f"{problem} at {_position(path + (key,))}"
            if isinstance(child, (dict, list, tuple)):
                stack.append((child, path + (key,)))
    return None


def read(path: Any, name: str = "path") -> StoredFile:
    """Reads and checks a safetensors file. A missing file raises FileNotFoundError; anything
    but a path, a TypeError naming the argument ``name``; anything but a regular file (a
    folder, a FIFO, a device), a ValueError before it is opened. The 8-byte header size comes
    first and is bounded by MAX_HEADER_BYTES; the header is then checked whole (every tensor's
    dtype, shape and offsets, which must tile the data that follows exactly) and the file's
    size must be what the header implies, all before any tensor is read. So a wrong path costs
    a few reads, whatever the file's size, and a damaged file raises ValueError naming what is
    wrong."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got {type(path).__name__}") from None
    source = str(path)
    handle, size = _files.open_regular(path)
    with handle:
        return _read_safetensors(handle, size, source)


def _read_safetensors(handle: BinaryIO, size: int, source: str) -> StoredFile:
    unreadable = f"{source}: not a readable safetensors weight file"
    if size < 8:
        raise ValueError(f"{unreadable}: {size} bytes, too short for the 8-byte header size")
    header_size = int.from_bytes(_files.read_exactly(handle, 8, source), "little")
    if header_size > MAX_HEADER_BYTES:
        raise ValueError(f"{unreadable}: the header size field says {header_size:,} bytes, more than the "
                         f"{MAX_HEADER_BYTES:,} a header may hold (another format such as .npz, or a damaged file)")
    if header_size > size - 8:
        raise ValueError(f"{unreadable}: the header size field says {header_size} bytes but only "
                         f"{size - 8} follow (a truncated file, or another format such as .npz)")
    header = _decode_header(_files.read_exactly(handle, header_size, source), unreadable)
    metadata = _header_metadata(header, unreadable)
    file_format = metadata.get("format")
    if isinstance(file_format, str) and file_format.startswith("fusedtrain."):
        _check_token_entries(metadata, source)
        _check_version(metadata, file_format, source)
    else:
        file_format = None
    layout, data_size = _tensor_layout(header, unreadable)
    if data_size != size - 8 - header_size:
        raise ValueError(f"{unreadable}: its header describes {data_size:,} bytes of tensors, but "
                         f"{size - 8 - header_size:,} bytes follow the header (a truncated file, or one with bytes "
                         f"added or removed)")
    data = _files.read_exactly(handle, data_size, source)
    tensors = {name: _tensor(data, name, dtype, shape, begin, end, unreadable)
               for name, dtype, shape, begin, end in layout}
    return StoredFile(source, tensors, metadata, file_format)


def _decode_header(raw: bytearray, unreadable: str) -> Dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_int=_bounded_integer)
    except _IntegerTooLong as error:
        raise ValueError(f"{unreadable}: its header {_too_long_message(error.digits)}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError(f"{unreadable}: its header is not JSON (another format, or a damaged file)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{unreadable}: its header is not a JSON object")
    return header


def _header_metadata(header: Dict[str, Any], unreadable: str) -> Dict[str, str]:
    metadata = header.get("__metadata__") or {}
    if not (isinstance(metadata, dict)
            and all(isinstance(key, str) and isinstance(value, str) for key, value in metadata.items())):
        raise ValueError(f"{unreadable}: its __metadata__ is not a map of strings to strings")
    for key, value in metadata.items():
        if not check.is_name(key):
            raise ValueError(f"{unreadable}: its __metadata__ has the key {check.shown(key)}, not a name of at "
                             f"most {MAX_NAME_CHARS} printable characters")
        if _SURROGATE.search(value):
            raise ValueError(f"{unreadable}: its __metadata__ entry {key!r} holds a lone surrogate, which is no "
                             f"character")
    return metadata


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_layout(header: Dict[str, Any], unreadable: str) -> Tuple[List[Tuple[str, str, List[int], int, int]], int]:
    """([(name, dtype, shape, begin, end)] for each tensor of the header, the size of the data
    they take). As safetensors requires, each tensor's offsets hold exactly its bytes and the
    tensors, in the order of their offsets, follow each other from byte 0 without gaps or
    overlaps."""
    layout = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not check.is_name(name):
            raise ValueError(f"{unreadable}: its header names a tensor {check.shown(name)}, not a name of at most "
                             f"{MAX_NAME_CHARS} printable characters")
        if not isinstance(entry, dict):
            raise ValueError(f"{unreadable}: the header entry of tensor {name!r} is not a JSON object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ValueError(f"{unreadable}: tensor {name!r} has the dtype {check.shown(dtype)}; fusedtrain reads "
                             f"{', '.join(_DTYPES)}")
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMENSIONS and all(_is_count(extent) for extent in shape)):
            raise ValueError(f"{unreadable}: tensor {name!r} has the shape {check.shown(shape)}, not a list of at "
                             f"most {MAX_DIMENSIONS} sizes >= 0")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(offset) for offset in offsets)
                and offsets[0] <= offsets[1]):
            raise ValueError(f"{unreadable}: tensor {name!r} has the data_offsets {check.shown(offsets)}, not "
                             f"[begin, end] with 0 <= begin <= end")
        begin, end = offsets
        size = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize
        if size != end - begin:
            raise ValueError(f"{unreadable}: tensor {name!r} ({dtype}, shape {check.shown(shape)}) takes {size} "
                             f"bytes, but its data_offsets [{begin}, {end}] hold {end - begin}")
        layout.append((name, dtype, shape, begin, end))
    layout.sort(key=lambda item: (item[3], item[4]))
    position = 0
    for name, _, _, begin, end in layout:
        if begin != position:
            raise ValueError(f"{unreadable}: tensor {name!r} starts at byte {begin} of the data, expected "
                             f"{position} (the tensors must follow each other without gaps or overlaps)")
        position = end
    return layout, position


def _tensor(data: bytearray, name: str, dtype: str, shape: List[int], begin: int, end: int,
            unreadable: str) -> np.ndarray:
    """A read-only array of the tensor's bytes: a view of ``data``, or an aligned copy where the
    offset does not fall on a multiple of the item size."""
    kind = np.dtype(_DTYPES[dtype])
    try:
        array = np.frombuffer(data, dtype=kind, count=(end - begin) // kind.itemsize, offset=begin)
        if begin % kind.itemsize:
            array = array.copy()
        array = array.reshape(shape)
    except (ValueError, OverflowError) as error:
        # A shape NumPy cannot hold, such as (0, 2**64).
        raise ValueError(f"{unreadable}: tensor {name!r} of shape {check.shown(shape)} cannot be held in an array "
                         f"({error})") from None
    array.flags.writeable = False
    return array


def _token_problem(value: str) -> Optional[str]:
    """What makes ``value``, the format or a version entry, unfit for a file, or None: more
    than MAX_NAME_CHARS characters, or one that is not printable (a control character, a line
    break, a lone surrogate)."""
    if len(value) > MAX_NAME_CHARS:
        return f"{len(value):,} characters (at most {MAX_NAME_CHARS:,})"
    if not value.isprintable():
        index, character = next((index, character) for index, character in enumerate(value)
                                if not character.isprintable())
        return f"a character that is not printable ({character!r}) at index {index}"
    return None


def _check_token_entries(metadata: Dict[str, str], source: str) -> None:
    """Refuses a fusedtrain file whose format or version entries are not short printable
    strings: messages quote them. The JSON entries are checked as they are decoded
    (decode_json); the others only for lone surrogates, as every entry is (_header_metadata)."""
    for key in _TOKEN_METADATA:
        value = metadata.get(key)
        problem = None if value is None else _token_problem(value)
        if problem:
            raise ValueError(f"{source}: the metadata's {key!r} entry holds {problem}; the file is damaged")


def _check_version(metadata: Dict[str, str], file_format: str, source: str) -> None:
    # Weight files written before format_version existed are version 1.
    text = metadata.get("format_version", "1")
    try:
        version = int(text)
    except ValueError:
        version = 0
    if version < 1:
        raise ValueError(f"{source}: the metadata's format_version {check.shown(text, 40)} is not a positive "
                         f"integer; the file is damaged")
    if version > FORMAT_VERSION:
        writer = metadata.get("fusedtrain_version", "a newer version")
        if len(writer) > 40:
            writer = f"{writer[:40]}... ({len(writer):,} characters)"
        raise ValueError(f"{source}: written by fusedtrain {writer} in file format version {version}; this "
                         f"fusedtrain ({__version__}) reads format versions up to {FORMAT_VERSION}. Upgrade "
                         f"fusedtrain (pip install --upgrade fusedtrain) to read it")
    if file_format not in _FORMATS:
        raise ValueError(f"{source}: unknown fusedtrain file kind {check.shown(file_format, 40)}; expected one of "
                         f"{', '.join(_FORMATS)}")


# Weights ----------------------------------------------------------------------------------------

def layer_tensors(model) -> Dict[str, np.ndarray]:
    """The model's parameters by file name, "layers.{i}.kernel" / "layers.{i}.bias"."""
    return {f"layers.{index}.{name}": value
            for index, layer in enumerate(model.layers) for name, value in layer._parameters.items()}


def _layer_index(key: str) -> Optional[int]:
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit():
        return int(parts[1])
    return None


def check_weights(model, tensors: Dict[str, np.ndarray], source: str, num_layers: Optional[int] = None,
                  ignored_prefixes: Sequence[str] = ()) -> Tuple[int, Dict[str, np.ndarray]]:
    """Checks that ``tensors`` hold the parameters of ``model.layers[:num_layers]`` (all layers
    when None): every name present, none unknown, float32, the right shapes, finite values.
    Names under ``ignored_prefixes``, and with ``num_layers`` the tensors of later layers, are
    skipped. Returns the input size and the arrays to assign; changes nothing."""
    count = len(model.layers)
    prefix = num_layers is not None
    num_layers = check.integer(num_layers, "num_layers", low=1, high=count) if prefix else count
    input_dim = model.input_dim
    if input_dim is None:
        kernels = [f"layers.{index}.kernel" for index, layer in enumerate(model.layers[:num_layers])
                   if isinstance(layer, Dense)]
        first = next((key for key in kernels if key in tensors), None)
        if first is None or tensors[first].ndim != 2:
            raise ValueError(f"{source}: holds no kernel from which to infer the model's input size")
        input_dim = int(tensors[first].shape[0])
    expected = {f"layers.{index}.{name}": shape for index, name, shape in model._parameter_entries(input_dim)
                if index < num_layers}
    present = {}
    unexpected = []
    for key, value in tensors.items():
        if any(key.startswith(prefix) for prefix in ignored_prefixes):
            continue
        index = _layer_index(key)
        if key in expected:
            present[key] = value
        elif not (prefix and index is not None and index >= num_layers):
            unexpected.append(key)
    missing = [key for key in expected if key not in present]
    if missing or unexpected:
        raise ValueError(f"{source}: the tensors do not match this model: missing {missing or 'none'}, "
                         f"unexpected {sorted(unexpected) or 'none'}")
    arrays = {}
    for key, shape in expected.items():
        arrays[key] = _checked_parameter(model, _layer_index(key), key.split(".")[2], present[key], key, shape,
                                         source)
    return input_dim, arrays


def _checked_parameter(model, index: int, name: str, tensor: np.ndarray, key: str, shape: Tuple[int, ...],
                       source: str) -> np.ndarray:
    """_checked_tensor for the parameter ``name`` of ``model.layers[index]``, and the layer's own
    check of its values (a Normalization layer's variance may not be negative)."""
    _checked_tensor(tensor, key, shape, source)
    problem = model.layers[index].weight_problem(name, tensor)
    if problem:
        raise ValueError(f"{source}: {key} {problem}")
    return tensor


def _checked_tensor(tensor: np.ndarray, key: str, shape: Tuple[int, ...], source: str) -> np.ndarray:
    if tensor.dtype != np.float32:
        raise ValueError(f"{source}: {key} has dtype {tensor.dtype}, expected float32")
    if tensor.shape != tuple(shape):
        raise ValueError(f"{source}: {key} has shape {tensor.shape}, expected {tuple(shape)}")
    if not np.isfinite(tensor).all():
        raise ValueError(f"{source}: {key} holds NaN or infinite values")
    return tensor


def assign_weights(model, input_dim: int, arrays: Dict[str, np.ndarray]) -> None:
    """Builds ``model`` for ``input_dim`` if needed and copies in arrays checked by check_weights."""
    model.build(input_dim)
    targets = layer_tensors(model)
    for key, value in arrays.items():
        model.backend.assign(targets[key], value)


def weights_metadata(file_format: str) -> Dict[str, str]:
    return {"format": file_format, "format_version": str(FORMAT_VERSION), "fusedtrain_version": __version__}


def save_weights(model, path: Any) -> None:
    tensors = {key: np.ascontiguousarray(model.backend.to_host(value))
               for key, value in layer_tensors(model).items()}
    write_atomically(path, _encode(tensors, weights_metadata(WEIGHTS_FORMAT)))


def load_weights(model, path: Any, num_layers: Optional[int] = None) -> None:
    stored = read(path)
    # A model file or a checkpoint holds the same layer tensors; a checkpoint's others are skipped.
    ignored = ("optimizer.", "callbacks.") if stored.format == CHECKPOINT_FORMAT else ()
    input_dim, arrays = check_weights(model, stored.tensors, stored.source, num_layers, ignored)
    assign_weights(model, input_dim, arrays)


# Architecture and compile settings --------------------------------------------------------------

def model_config(model) -> Dict[str, Any]:
    """The architecture as JSON-compatible data: {"class_name": "Sequential", "config": {...}}.
    ValueError for a model that a file cannot describe, so that every file saved loads: a
    layer, initializer or regularizer of a class of its own, or a model beyond the bounds of
    the file format (MAX_LAYERS, MAX_UNITS, names)."""
    beyond = "save_weights stores the weights of any model"
    if len(model.layers) > MAX_LAYERS:
        raise ValueError(f"layers: the model has {len(model.layers):,} layers; a model file holds at most "
                         f"{MAX_LAYERS:,}; {beyond}")
    check.name(model.name, "name")
    if model.input_dim is not None and model.input_dim > MAX_UNITS:
        raise ValueError(f"input_dim: {model.input_dim:,} features; a model file holds models of at most "
                         f"{MAX_UNITS:,}; {beyond}")
    for index, layer in enumerate(model.layers):
        if LAYER_CLASSES.get(type(layer).__name__) is not type(layer):
            raise ValueError(f"layers[{index}]: a model file stores the built-in layer types only "
                             f"({', '.join(LAYER_CLASSES)}), not {type(layer).__name__}; {beyond}")
        check.name(layer.name, f"layers[{index}].name")
        if isinstance(layer, Dense):
            if layer.units > MAX_UNITS:
                raise ValueError(f"layers[{index}]: {layer.units:,} units; a model file holds layers of at most "
                                 f"{MAX_UNITS:,}; {beyond}")
            for attribute, module in (("kernel_initializer", initializers_module),
                                      ("bias_initializer", initializers_module),
                                      ("kernel_regularizer", regularizers_module)):
                value = getattr(layer, attribute)
                if value is not None and module.CLASSES.get(type(value).__name__) is not type(value):
                    raise ValueError(f"layers[{index}].{attribute}: a model file stores the built-in classes only "
                                     f"({', '.join(module.CLASSES)}), not {type(value).__name__}; {beyond}")
    return {"class_name": "Sequential",
            "config": {"name": model.name, "input_dim": model.input_dim, "seed": model.seed,
                       "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                                  for layer in model.layers]}}


def _mapping(value: Any, where: str, source: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{source}: {where}: expected a JSON object, got {type(value).__name__}")
    return value


def _layer_entries(architecture: Any, source: str) -> Tuple[Dict[str, Any], List[Tuple[str, Dict[str, Any]]]]:
    """(the model's config, [(class name, config)] per layer), structure checked."""
    architecture = _mapping(architecture, "architecture", source)
    if architecture.get("class_name") != "Sequential":
        raise ValueError(f"{source}: architecture: unknown model type {check.shown(architecture.get('class_name'))}; "
                         f"this fusedtrain knows 'Sequential'")
    config = _mapping(architecture.get("config"), "architecture config", source)
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: architecture: expected a non-empty list of layers, got {check.shown(entries)}")
    if len(entries) > MAX_LAYERS:
        raise ValueError(f"{source}: architecture: {len(entries):,} layers, more than the {MAX_LAYERS:,} a model "
                         f"file may hold; the file is damaged or was not written by fusedtrain")
    _check_size(config.get("input_dim"), "architecture: input_dim", source)
    layers = []
    for index, entry in enumerate(entries):
        entry = _mapping(entry, f"layer {index}", source)
        class_name = entry.get("class_name")
        if not isinstance(class_name, str) or class_name not in LAYER_CLASSES:
            what = "the abstract base class" if class_name == "Layer" else "the unknown type"
            raise ValueError(f"{source}: layer {index} has {what} {check.shown(class_name)}; this fusedtrain "
                             f"({__version__}) knows {', '.join(LAYER_CLASSES)}")
        layer_config = _mapping(entry.get("config"), f"layer {index} config", source)
        where = f"layer {index} ({class_name})"
        for key in ("units", "input_dim"):
            _check_size(layer_config.get(key), f"{where}: {key}", source)
        shape = layer_config.get("input_shape")
        for extent in shape if isinstance(shape, list) else [shape]:
            _check_size(extent, f"{where}: input_shape", source)
        layers.append((class_name, layer_config))
    return config, layers


def _check_size(value: Any, where: str, source: str) -> None:
    """Refuses a layer width or an input size beyond MAX_UNITS (other values are left to the
    constructors' own checks)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_UNITS:
        raise ValueError(f"{source}: {where} is {value:,}, more than the {MAX_UNITS:,} a model file may hold; the "
                         f"file is damaged or was not written by fusedtrain")


def model_from_config(architecture: Any, source: str, device: str = "auto") -> "Sequential":
    """A new, unbuilt Sequential from model_config's data; ValueError for anything invalid."""
    from .models import Sequential

    config, entries = _layer_entries(architecture, source)
    layers = []
    for index, (class_name, layer_config) in enumerate(entries):
        try:
            layers.append(LAYER_CLASSES[class_name].from_config(layer_config))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: layer {index} ({class_name}): invalid configuration: {error}") from None
    name = config.get("name", "sequential")
    if not isinstance(name, str):
        raise ValueError(f"{source}: architecture: the model name must be a string, got {check.shown(name)}")
    try:
        model = Sequential(layers, input_dim=config.get("input_dim"), seed=config.get("seed"), name=name,
                           device=device)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: architecture: invalid model settings: {error}") from None
    if model.input_dim is None:
        raise ValueError(f"{source}: architecture: the input size (input_dim) is missing")
    return model


def compile_config(model) -> Optional[Dict[str, Any]]:
    """The optimizer, loss and metrics as JSON-compatible data, or None when the model is not
    compiled or uses a class a file cannot name (a custom loss, metric or optimizer)."""
    if not model.compiled:
        return None
    optimizer = model.optimizer
    custom = []
    if OPTIMIZER_CLASSES.get(type(optimizer).__name__) is not type(optimizer):
        custom.append(f"optimizer {type(optimizer).__name__}")
    if not _named(losses_module, model.loss):
        custom.append(f"loss {type(model.loss).__name__}")
    custom += [f"metric {type(metric).__name__}" for metric in model.metrics if not _named(metrics_module, metric)]
    if custom:
        # stacklevel: the caller of model.save / model.save_checkpoint.
        warnings.warn(f"the compile settings are not saved: {', '.join(custom)} cannot be named in a file; "
                      f"compile the loaded model yourself", UserWarning, stacklevel=5)
        return None
    return {"optimizer": {"class_name": type(optimizer).__name__, "config": optimizer.get_config()},
            "loss": model.loss.name, "metrics": [metric.name for metric in model.metrics]}


def _named(module: Any, value: Any) -> bool:
    """Whether ``module.get(value.name)`` gives back an object of value's class."""
    try:
        return type(module.get(value.name)) is type(value)
    except (TypeError, ValueError):
        return False


def compile_arguments(config: Any, source: str):
    """(optimizer, loss, metrics) from compile_config's data; ValueError for anything invalid."""
    config = _mapping(config, "compile", source)
    try:
        entry = _mapping(config.get("optimizer"), "compile optimizer", source)
        class_name = entry.get("class_name")
        if not isinstance(class_name, str) or class_name not in OPTIMIZER_CLASSES:
            raise ValueError(f"unknown optimizer {class_name!r}; expected one of {', '.join(OPTIMIZER_CLASSES)}")
        optimizer = OPTIMIZER_CLASSES[class_name].from_config(_mapping(entry.get("config"), "optimizer config",
                                                                      source))
        loss = losses_module.get(config.get("loss"))
        names = config.get("metrics", [])
        if not isinstance(names, list):
            raise ValueError(f"metrics: expected a list, got {names!r}")
        return optimizer, loss, [metrics_module.get(name) for name in names]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: invalid compile settings: {error}") from None


# Model files ------------------------------------------------------------------------------------

def _model_metadata(model, file_format: str) -> Dict[str, str]:
    metadata = weights_metadata(file_format)
    metadata["architecture"] = _json_entry(model_config(model), "architecture")
    settings = compile_config(model)
    if settings is not None:
        metadata["compile"] = _json_entry(settings, "compile")
    inputs = inputs_config(model)
    if inputs is not None:
        metadata["inputs"] = _json_entry(inputs, "inputs")
    return metadata


def _json_entry(value: Any, key: str) -> str:
    """``value`` as the JSON text of the metadata entry ``key``; ValueError when it holds what
    a reader refuses (json_problem), so that no file is saved that cannot be loaded."""
    text = json.dumps(value)
    problem = json_problem(value)
    if problem:
        raise ValueError(f"{key}: holds {problem}, which a fusedtrain file cannot store (the bounds are in the "
                         f"README's Reliability section)")
    return text


def _encode(tensors: Dict[str, np.ndarray], metadata: Dict[str, str]) -> bytes:
    """The bytes of a safetensors file; ValueError when its header would exceed
    MAX_HEADER_BYTES, which no reader would accept. safetensors' encoder may refuse such a
    header itself (SafetensorError "header too large", as version 0.8 does): the same
    ValueError then, and the size is checked here all the same."""
    from safetensors import SafetensorError
    from safetensors.numpy import save as encode

    try:
        data = encode(tensors, metadata=metadata)
        header_size = int.from_bytes(data[:8], "little")
    except SafetensorError as error:
        if "header too large" not in str(error):
            raise
        header_size = None
    if header_size is None or header_size > MAX_HEADER_BYTES:
        size = "" if header_size is None else f" ({header_size:,} bytes)"
        raise ValueError(f"the file's header would take more than the {MAX_HEADER_BYTES:,} bytes a reader accepts"
                         f"{size}: a training history, class labels, a table preprocessor or metadata entries too "
                         f"large; nothing was saved")
    return data


def inputs_config(model) -> Optional[Dict[str, Any]]:
    """What the model knows about its inputs and outputs beyond the architecture: the
    DataFrame column names, the class labels and the table preprocessor (None when none)."""
    preprocessor = model.preprocessor if model.preprocessor is not None and model.preprocessor.fitted else None
    if model.feature_names is None and model.class_labels is None and preprocessor is None:
        return None
    return {"feature_names": model.feature_names, "class_labels": model.class_labels,
            "preprocessor": None if preprocessor is None else preprocessor.to_config()}


def restore_inputs(model, config: Any, source: str) -> None:
    """Sets what inputs_config wrote on a rebuilt model; ValueError for anything invalid."""
    from .tables import TablePreprocessor

    config = _mapping(config, "inputs", source)
    names = config.get("feature_names")
    if names is not None:
        if not (isinstance(names, list) and all(isinstance(name, str) for name in names)
                and len(set(names)) == len(names) and len(names) == model.input_dim):
            raise ValueError(f"{source}: inputs: feature_names must be {model.input_dim} distinct column names")
    labels = config.get("class_labels")
    if labels is not None:
        if model.compiled:
            classes = {model.output_dim if model.loss.task == "multiclass" else 2}
        else:
            classes = {model.output_dim, 2}
        kinds = {type(label) for label in labels} if isinstance(labels, list) else set()
        if not (isinstance(labels, list) and len(labels) in classes and len(kinds) == 1
                and kinds <= {str, int, float} and len(set(labels)) == len(labels)):
            raise ValueError(f"{source}: inputs: class_labels must be {' or '.join(map(str, sorted(classes)))} "
                             f"distinct labels of one kind")
    preprocessor = config.get("preprocessor")
    if preprocessor is not None:
        try:
            preprocessor = TablePreprocessor.from_config(preprocessor)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: inputs: {error}") from None
        if len(preprocessor.feature_names) != model.input_dim:
            raise ValueError(f"{source}: inputs: the preprocessor gives {len(preprocessor.feature_names)} features, "
                             f"but the model takes {model.input_dim}")
    model.feature_names, model.class_labels, model.preprocessor = names, labels, preprocessor


def model_bytes(model, metadata: Optional[Dict[str, str]] = None) -> bytes:
    """The contents of the model file ``save`` writes (architecture, compile settings, inputs
    and weights, as safetensors bytes). ``metadata``: further str -> str entries for the
    file's metadata (the command line records the task and class labels there); fusedtrain's
    own keys are reserved."""
    entries = _model_metadata(model, MODEL_FORMAT)
    for key, value in (metadata or {}).items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise TypeError(f"metadata: expected str keys and values, got {check.shown(key)}: {type(value).__name__}")
        if key in _RESERVED_METADATA:
            raise ValueError(f"metadata: {key!r} is one of fusedtrain's own entries ({', '.join(_RESERVED_METADATA)})")
        check.name(key, "metadata: a key")
        if _SURROGATE.search(value):
            raise ValueError(f"metadata: the entry {key!r} holds a lone surrogate, which no file can store")
        entries[key] = value
    tensors = {key: np.ascontiguousarray(model.backend.to_host(value))
               for key, value in layer_tensors(model).items()}
    return _encode(tensors, entries)


def save(model, path: Any, metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes a model file (model_bytes' contents) atomically."""
    write_atomically(path, model_bytes(model, metadata))


def load(path: Any, compile: bool = True, device: str = "auto") -> "Sequential":
    """Rebuilds the model saved by ``model.save(path)`` (or held in a training checkpoint):
    the architecture from the file's metadata, then the weights. With ``compile`` (the
    default) and compile settings in the file, the model comes back compiled with the same
    loss, metrics and optimizer configuration (a fresh optimizer: use ``fit(...,
    resume=path)`` on a checkpoint to restore the optimizer's state too), so that predict
    returns probabilities for a classifier exactly as before saving. The whole file is checked
    first; anything invalid raises ValueError. ``device``: where the model is rebuilt, as
    Sequential's (a file written on one device loads on any)."""
    return model_from_file(read(path), compile, device)


def load_bytes(data: bytes, source: str = "model bytes", compile: bool = True,
               device: str = "auto") -> "Sequential":
    """The model held in ``data`` (model_bytes' contents, a model file read into memory), as
    ``load`` rebuilds it; ``source`` names the data in error messages."""
    return model_from_file(parse(data, source), compile, device)


def parse(data: bytes, source: str = "data") -> StoredFile:
    """Checks safetensors bytes held in memory as ``read`` checks a file; ``source`` names them
    in error messages."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes (a safetensors file's contents), got {type(data).__name__}")
    return _read_safetensors(io.BytesIO(data), len(data), source)


def model_from_file(stored: StoredFile, compile: bool = True, device: str = "auto") -> "Sequential":
    """The model a file read by ``read`` (or ``parse``) holds (see load)."""
    source = stored.source
    if stored.format not in (MODEL_FORMAT, CHECKPOINT_FORMAT):
        kind = "a weight file (save_weights)" if stored.format == WEIGHTS_FORMAT else "not a fusedtrain model file"
        raise ValueError(f"{source}: {kind}, without the architecture; build the model in code and call "
                         f"model.load_weights(path)")
    model = model_from_config(stored.json("architecture"), source, device)
    ignored = ("optimizer.", "callbacks.") if stored.format == CHECKPOINT_FORMAT else ()
    input_dim, arrays = check_weights(model, stored.tensors, source, ignored_prefixes=ignored)
    settings = stored.json("compile", required=False) if compile else None
    arguments = None if settings is None else compile_arguments(settings, source)
    assign_weights(model, input_dim, arrays)
    if arguments is not None:
        try:
            model.compile(*arguments)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: invalid compile settings: {error}") from None
    inputs = stored.json("inputs", required=False)
    if inputs is not None:
        restore_inputs(model, inputs, source)
    return model


# Training checkpoints ---------------------------------------------------------------------------

def _callback_states(callbacks: Sequence[Any]) -> List[Tuple[Any, Dict[str, Any]]]:
    """(callback, state) for each callback that keeps a state, in order."""
    pairs = []
    for callback in callbacks:
        state = callback.get_state()
        if state is not None:
            pairs.append((callback, state))
    return pairs


def save_checkpoint(model, path: Any) -> None:
    run = model._run
    if run is not None and run.in_epoch:
        raise RuntimeError("save_checkpoint: training is in the middle of an epoch (or stopped inside one); a "
                           "checkpoint is taken at the end of an epoch (ModelCheckpoint(save_training_state="
                           "True) or a callback's on_epoch_end) or outside fit. save_weights and save keep the "
                           "current weights.")
    optimizer = model.optimizer
    optimizer.build(model.parameters.size, model.backend)
    tensors = {key: np.ascontiguousarray(model.backend.to_host(value))
               for key, value in layer_tensors(model).items()}
    tensors.update({f"optimizer.{name}": np.ascontiguousarray(model.backend.to_host(value))
                    for name, value in optimizer.state.items()})
    states = []
    for position, (callback, state) in enumerate(_callback_states(run.callbacks if run is not None else ())):
        stored_state = {}
        for key, value in state.items():
            if isinstance(value, (list, tuple)) and value and all(isinstance(item, np.ndarray) for item in value):
                for item_index, item in enumerate(value):
                    tensors[f"callbacks.{position}.{key}.{item_index}"] = np.ascontiguousarray(item)
                stored_state[key] = {_TENSORS_MARK: len(value)}
            else:
                stored_state[key] = value
        states.append({"class_name": type(callback).__name__, "state": stored_state})
    training = {
        "epoch": run.next_epoch if run is not None else 0,
        "stopped": bool(model.stop_training) if run is not None else False,
        "optimizer": type(optimizer).__name__,
        "iterations": optimizer.iterations,
        "learning_rate": optimizer.learning_rate,
        "train_step": model._train_step,
        "fit_count": model._fit_count,
        "entropy": model._entropy,
        "dropout_seeds": [layer.run_seed if isinstance(layer, Dropout) else None for layer in model.layers],
        "shuffle_rng": run.rng.bit_generator.state if run is not None else None,
        "history": {"epoch": list(run.history.epoch), "history": run.history.history} if run is not None else None,
        "fit": dict(run.arguments) if run is not None else None,
        "callbacks": states,
    }
    metadata = _model_metadata(model, CHECKPOINT_FORMAT)
    try:
        metadata["training"] = _json_entry(training, "save_checkpoint: the training state")
    except TypeError as error:
        raise TypeError(f"save_checkpoint: the training state holds a value JSON cannot store ({error}); a "
                        f"callback's get_state or the logs returned something other than numbers, strings, "
                        f"booleans, None and lists of arrays") from None
    write_atomically(path, _encode(tensors, metadata))


# Counters (epochs, steps) are 64-bit integers in the kernels and in NumPy.
_COUNTER_LIMIT = 2**63 - 1


def _integer(value: Any, where: str, source: str, allow_none: bool = False,
             high: Optional[int] = _COUNTER_LIMIT) -> Optional[int]:
    """A training state's integer in [0, high] (any size when high is None)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (high is not None and value > high):
        bound = "an integer >= 0" + (f" and <= {high}" if high is not None else "")
        raise ValueError(f"{source}: training state: {where} must be {bound}, got {check.shown(value)}")
    return value


class Checkpoint:
    """A training checkpoint read and checked on its own (read_checkpoint); ``check`` then
    matches it against a model and callbacks, ``restore`` and ``restore_callbacks`` apply it."""

    def __init__(self, stored: StoredFile):
        source = self.source = stored.source
        if stored.format != CHECKPOINT_FORMAT:
            kind = stored.format or "a foreign safetensors file"
            raise ValueError(f"{source}: not a training checkpoint ({kind}); resume needs a file written by "
                             f"save_checkpoint or ModelCheckpoint(save_training_state=True)")
        self.stored = stored
        self.architecture = stored.json("architecture")
        # An unbuilt model of the checkpoint's architecture: it checks the layers and lays out
        # the parameters without allocating them.
        self.probe = model_from_config(self.architecture, source, "cpu")
        self.input_dim = self.probe.input_dim
        _, self.weights = check_weights(self.probe, stored.tensors, source,
                                        ignored_prefixes=("optimizer.", "callbacks."))
        self.compile_settings = stored.json("compile", required=False)
        training = _mapping(stored.json("training"), "training state", source)
        required = ("epoch", "stopped", "optimizer", "iterations", "learning_rate", "train_step", "fit_count",
                    "entropy", "dropout_seeds", "shuffle_rng", "history", "fit", "callbacks")
        missing = [key for key in required if key not in training]
        if missing:
            raise ValueError(f"{source}: training state: missing {missing}; the file is damaged")
        self.epoch = _integer(training["epoch"], "epoch", source)
        if not isinstance(training["stopped"], bool):
            raise ValueError(f"{source}: training state: stopped must be true or false")
        self.stopped = training["stopped"]
        self.optimizer_class = training["optimizer"]
        if not isinstance(self.optimizer_class, str) or self.optimizer_class not in OPTIMIZER_CLASSES:
            raise ValueError(f"{source}: training state: optimizer {check.shown(self.optimizer_class)} is not one of "
                             f"{', '.join(OPTIMIZER_CLASSES)}; the file is damaged")
        self.iterations = _integer(training["iterations"], "iterations", source)
        learning_rate = training["learning_rate"]
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)):
            raise ValueError(f"{source}: training state: learning_rate must be a number >= 0, got "
                             f"{check.shown(learning_rate)}")
        try:
            # The optimizer's own check, here rather than in the middle of restore.
            self.learning_rate = check.real(learning_rate, "learning_rate", low=0.0)
        except ValueError as error:
            raise ValueError(f"{source}: training state: {error}") from None
        self.train_step = _integer(training["train_step"], "train_step", source)
        self.fit_count = _integer(training["fit_count"], "fit_count", source)
        # The model's seed, or 128 bits of fresh entropy: any size (within the digits bound).
        self.entropy = _integer(training["entropy"], "entropy", source, high=None)
        seeds = training["dropout_seeds"]
        if not isinstance(seeds, list):
            raise ValueError(f"{source}: training state: dropout_seeds must be a list")
        self.dropout_seeds = [_integer(seed, "dropout_seeds", source, allow_none=True, high=2**64 - 1)
                              for seed in seeds]
        self.shuffle_rng = training["shuffle_rng"]
        if self.shuffle_rng is not None:
            try:
                np.random.default_rng().bit_generator.state = self.shuffle_rng
            except (TypeError, ValueError, KeyError, OverflowError) as error:
                # OverflowError: a field beyond its C type (has_uint32 >= 2**31).
                raise ValueError(f"{source}: training state: shuffle_rng is not a PCG64 generator state "
                                 f"({error})") from None
        self.history = self._history(training["history"])
        self.fit_arguments = training["fit"]
        if self.fit_arguments is not None:
            _mapping(self.fit_arguments, "training state fit", source)
        self.callbacks = self._callbacks(training["callbacks"])
        self.optimizer_state = {key[len("optimizer."):]: value for key, value in stored.tensors.items()
                                if key.startswith("optimizer.")}

    def _history(self, history: Any) -> Optional[Tuple[List[int], Dict[str, list]]]:
        if history is None:
            return None
        history = _mapping(history, "training state history", self.source)
        epochs, values = history.get("epoch"), history.get("history")
        if not (isinstance(epochs, list) and isinstance(values, dict)
                and all(isinstance(value, list) for value in values.values())):
            raise ValueError(f"{self.source}: training state: history must hold a list of epochs and a map of "
                             f"lists")
        epochs = [_integer(epoch, "history epoch", self.source) for epoch in epochs]
        # The epochs a run recorded, in order, all before the one the checkpoint continues at; a
        # quantity logged from some epoch on has at most one value per epoch.
        if any(later <= earlier for earlier, later in zip(epochs, epochs[1:])) or (epochs and epochs[-1] >= self.epoch):
            raise ValueError(f"{self.source}: training state: the history's epochs {epochs} are not increasing "
                             f"epochs before epoch {self.epoch}")
        longer = sorted(name for name, value in values.items() if len(value) > len(epochs))
        if longer:
            raise ValueError(f"{self.source}: training state: the history holds more values of {longer} than "
                             f"epochs ({len(epochs)})")
        return epochs, values

    def _callbacks(self, entries: Any) -> List[Tuple[str, Dict[str, Any]]]:
        if not isinstance(entries, list):
            raise ValueError(f"{self.source}: training state: callbacks must be a list")
        tensors = self.stored.tensors
        used = set()
        result = []
        for position, entry in enumerate(entries):
            entry = _mapping(entry, f"callback {position}", self.source)
            class_name, state = entry.get("class_name"), _mapping(entry.get("state"), "callback state",
                                                                  self.source)
            if not isinstance(class_name, str):
                raise ValueError(f"{self.source}: training state: callback {position} has no class name")
            if not check.is_name(class_name) or _is_abstract_callback(class_name):
                raise ValueError(f"{self.source}: training state: callback {position} names the class "
                                 f"{check.shown(class_name)}, which is no concrete callback class; the file is damaged")
            restored = {}
            for key, value in state.items():
                if isinstance(value, dict) and set(value) == {_TENSORS_MARK}:
                    # At most every tensor of the file: a larger count is damage (and a long list).
                    count = _integer(value[_TENSORS_MARK], f"callback {position} {key}", self.source,
                                     high=len(tensors))
                    names = [f"callbacks.{position}.{key}.{index}" for index in range(count)]
                    absent = [name for name in names if name not in tensors]
                    if absent:
                        raise ValueError(f"{self.source}: the tensors {absent} of callback {class_name} are missing")
                    used.update(names)
                    value = [tensors[name] for name in names]
                restored[key] = value
            result.append((class_name, restored))
        extra = sorted(key for key in tensors if key.startswith("callbacks.") and key not in used)
        if extra:
            raise ValueError(f"{self.source}: the tensors do not match this checkpoint: unexpected {extra}")
        return result

    def check(self, model, callbacks: Sequence[Any]) -> None:
        """Raises ValueError unless this checkpoint can be resumed into ``model`` (its layers,
        input size, compiled optimizer or the checkpoint's compile settings) with
        ``callbacks``. Changes nothing."""
        source = self.source
        theirs = [(entry["class_name"], _comparable(entry["config"]))
                  for entry in model_config(self.probe)["config"]["layers"]]
        try:
            ours = [(entry["class_name"], _comparable(entry["config"]))
                    for entry in model_config(model)["config"]["layers"]]
        except ValueError as error:
            raise ValueError(f"resume: {error}") from None
        if theirs != ours:
            difference = next((index for index, (a, b) in enumerate(zip(theirs, ours)) if a != b),
                              min(len(theirs), len(ours)))
            raise ValueError(f"{source}: the checkpoint's model differs from this one at layer {difference}: "
                             f"{_describe(theirs, difference)} in the file, {_describe(ours, difference)} here")
        input_dim = self.input_dim
        if model.input_dim is not None and model.input_dim != input_dim:
            raise ValueError(f"{source}: the checkpoint's model takes {input_dim} features, this one "
                             f"{model.input_dim}")
        if len(self.dropout_seeds) != len(model.layers):
            raise ValueError(f"{source}: training state: dropout_seeds has {len(self.dropout_seeds)} entries for "
                             f"{len(model.layers)} layers")
        self._check_optimizer(model)
        self._check_callbacks(callbacks)

    def optimizer_for(self, model):
        """The optimizer resume will use: the model's, or one from the checkpoint's settings."""
        if model.compiled:
            return model.optimizer
        if self.compile_settings is None:
            raise ValueError(f"{self.source}: the model is not compiled and the checkpoint holds no compile "
                             f"settings; compile the model before resuming")
        return compile_arguments(self.compile_settings, self.source)[0]

    def _check_optimizer(self, model) -> None:
        optimizer = self.optimizer_for(model)
        if type(optimizer).__name__ != self.optimizer_class:
            raise ValueError(f"{self.source}: the checkpoint holds the state of a {self.optimizer_class} "
                             f"optimizer, the model is compiled with {type(optimizer).__name__}")
        size = sum(int(np.prod(array.shape)) for array in self.weights.values())
        if optimizer.built and optimizer.size != size:
            raise ValueError(f"{self.source}: the optimizer already holds state for {optimizer.size} parameters, "
                             f"the checkpoint's model has {size}")
        probe = type(optimizer).from_config(optimizer.get_config())
        probe.build(size)
        expected = probe.state
        if set(expected) != set(self.optimizer_state):
            raise ValueError(f"{self.source}: the optimizer's state buffers are "
                             f"{sorted('optimizer.' + name for name in expected)}, the checkpoint holds "
                             f"{sorted('optimizer.' + name for name in self.optimizer_state)}")
        for name, buffer in expected.items():
            _checked_tensor(self.optimizer_state[name], f"optimizer.{name}", buffer.shape, self.source)

    def _check_callbacks(self, callbacks: Sequence[Any]) -> None:
        ours = _callback_states(callbacks)
        if [type(callback).__name__ for callback, _ in ours] != [name for name, _ in self.callbacks]:
            raise ValueError(f"{self.source}: the checkpoint holds the state of the callbacks "
                             f"{[name for name, _ in self.callbacks]}, but fit was given "
                             f"{[type(callback).__name__ for callback, _ in ours]}; pass the same callbacks "
                             f"(new objects are fine) to resume")
        entries = self.probe._parameter_entries(self.input_dim)
        for (callback, fresh), (class_name, state) in zip(ours, self.callbacks):
            if set(fresh) != set(state):
                raise ValueError(f"{self.source}: the state of {class_name} holds {sorted(state)}, expected "
                                 f"{sorted(fresh)}")
            builtin = type(callback) is getattr(callbacks_module, class_name, None)
            kinds = CALLBACK_STATE_KINDS.get(class_name, {}) if builtin else {}
            for key, value in state.items():
                allowed = kinds.get(key)
                if allowed is not None and _value_kind(value) not in allowed:
                    raise ValueError(f"{self.source}: training state: {class_name}.{key} is "
                                     f"{_value_kind(value)}, expected {' or '.join(allowed)}; the file is damaged")
                # The weights a built-in callback keeps may be an empty list (a model of
                # activation layers only); a user's callback may keep an empty list of anything.
                if _value_kind(value) == "arrays" or (allowed is _WEIGHTS and value == []):
                    # The arrays a callback keeps are copies of the model's weights.
                    if len(value) != len(entries):
                        raise ValueError(f"{self.source}: {class_name}.{key} holds {len(value)} arrays, the model "
                                         f"has {len(entries)} weights")
                    for position, (array, (index, name, shape)) in enumerate(zip(value, entries)):
                        _checked_parameter(self.probe, index, name, array, f"callbacks {class_name}.{key}"
                                           f"[{position}]", shape, self.source)

    def prepare(self, model) -> None:
        """Builds the model for the checkpoint's input size and compiles it from the checkpoint's
        settings if it is not compiled (after check)."""
        model.build(self.input_dim)
        if not model.compiled:
            model.compile(*compile_arguments(self.compile_settings, self.source))

    def restore(self, model) -> Optional[np.random.Generator]:
        """Sets the weights, the optimizer state and the model's counters (after check and
        prepare); returns the shuffling generator at its saved state (None when the checkpoint
        was taken before any training)."""
        assign_weights(model, self.input_dim, self.weights)
        optimizer = model.optimizer
        optimizer.build(model.parameters.size, model.backend)
        optimizer.load_state(self.optimizer_state, self.iterations)
        optimizer.learning_rate = self.learning_rate
        model._train_step = self.train_step
        model._fit_count = self.fit_count
        model._entropy = self.entropy
        for layer, seed in zip(model.layers, self.dropout_seeds):
            if isinstance(layer, Dropout) and seed is not None:
                layer.run_seed = seed
        if self.shuffle_rng is None:
            return None
        generator = np.random.default_rng()
        generator.bit_generator.state = self.shuffle_rng
        return generator

    def restore_callbacks(self, history, callbacks: Sequence[Any]) -> None:
        """Restores the history and the callbacks' states (after on_train_begin)."""
        if self.history is not None:
            history.epoch = list(self.history[0])
            history.history = {name: list(values) for name, values in self.history[1].items()}
        for (callback, _), (_, state) in zip(_callback_states(callbacks), self.callbacks):
            callback.set_state(state)

    def warn_on_different_arguments(self, arguments: Dict[str, Any]) -> None:
        """Warns when fit's data or arguments differ from the checkpointed run's: training goes
        on, but it will not reproduce an uninterrupted run."""
        if self.fit_arguments is None:
            return
        changed = [f"{key} {self.fit_arguments.get(key)!r} -> {value!r}" for key, value in arguments.items()
                   if key != "epochs" and self.fit_arguments.get(key) != value]
        if changed:
            warnings.warn(f"resume: {', '.join(changed)} (checkpoint -> this fit); training continues but will not "
                          f"reproduce an uninterrupted run", UserWarning, stacklevel=3)


def _is_abstract_callback(class_name: str) -> bool:
    """Whether ``class_name`` names fusedtrain's Callback base class or one of its private,
    abstract classes: no callback given to fit can be of such a class."""
    found = getattr(callbacks_module, class_name, None)
    return found is callbacks_module.Callback or (class_name.startswith("_") and isinstance(found, type))


def _value_kind(value: Any) -> str:
    """The kind of a stored callback state value, as CALLBACK_STATE_KINDS names them."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        # Beyond this a counter is no count, and a "best" value overflows float arithmetic.
        return "an integer" if abs(value) < 2**63 else "an integer out of range"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, np.ndarray) for item in value):
        return "arrays"
    if isinstance(value, (list, tuple)):
        return "a list" if value else "an empty list"
    return "a mapping" if isinstance(value, dict) else type(value).__name__


def _comparable(config: Dict[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in config.items() if key not in _RESUME_IGNORED_SETTINGS}


def _describe(layers: List[Tuple[str, Dict[str, Any]]], index: int) -> str:
    if index >= len(layers):
        return "no layer"
    name, config = layers[index]
    return f"{name} {config}"


def read_checkpoint(path: Any) -> Checkpoint:
    return Checkpoint(read(path, "resume"))
