"""Sizes above 2^31 elements. On the CPU every kernel indexes with int64_t: one array of
2^31 + 33 float32 (8 GiB) goes through elementwise kernels, a reduction and a row-wise kernel,
and the values beyond index 2^31 are checked; the C++ API refuses sizes whose element count
would overflow int64_t itself. On the GPU the kernels index with int64_t too;
the limits that remain (gridDim.x for the GEMM's tiles and bias_grad's column groups, and 2^62
elements overall) are held by one check that every CUDA binding runs before it launches,
tested here with sizes only, no arrays and no GPU."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import _C, ops

LARGE = 2**31 + 33
# The array itself (8 GiB) and room for the interpreter, NumPy and whatever else is running.
NEEDED_GIB = 10


def _available_gib():
    """MemAvailable of /proc/meminfo in GiB, or None where there is no such file."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return None


def _skip_reason():
    if os.environ.get("FUSEDTRAIN_SANITIZER_RUN"):
        return ("sanitizer run (.ci/sanitize): the 8 GiB array, its AddressSanitizer shadow and its instrumented "
                "passes are left to the normal test run")
    available = _available_gib()
    if available is None:
        return f"needs /proc/meminfo to tell whether {NEEDED_GIB} GiB of memory are available"
    if available < NEEDED_GIB:
        return f"needs {NEEDED_GIB} GiB of available memory for an 8 GiB array, the machine has {available:.1f} GiB"
    return None


@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
def test_cpu_kernels_reach_elements_beyond_2_31(rng):
    # np.zeros maps zero pages: memory is committed as the first kernel writes it.
    x = np.zeros(LARGE, dtype=np.float32)
    # Values on both sides of index 2^31, up to the last element, and a few at the start.
    tail = slice(2**31 - 40, LARGE)
    tail_values = rng.standard_normal(tail.stop - tail.start).astype(np.float32)
    head_values = rng.standard_normal(8).astype(np.float32)
    x[tail] = tail_values
    x[:8] = head_values

    # Elementwise and in place: a size cut to 32 bits would leave the tail untouched (or wrap).
    assert ops.relu(x, out=x) is x
    tail_expected = np.maximum(tail_values, 0)
    np.testing.assert_array_equal(x[tail], tail_expected)
    np.testing.assert_array_equal(x[:8], np.maximum(head_values, 0))

    # A reduction that reads every element (sum of squares) and a scaling that writes them all.
    nonzero = np.concatenate([np.maximum(head_values, 0), tail_expected]).astype(np.float64)
    expected_norm = np.sqrt(np.sum(nonzero**2))
    max_norm = float(expected_norm) / 4
    norm = ops.clip_grad_norm(x, max_norm)
    # Double accumulation of at most 81 nonzero squares: equal to a few float64 ulps.
    assert norm == pytest.approx(expected_norm, rel=1e-12)
    factor = np.float32(max_norm / (norm + 1e-6))
    tail_expected = tail_expected * factor
    np.testing.assert_array_equal(x[tail], tail_expected)

    # Row-wise: 17 columns, so that the last rows start beyond element 2^31. The column sums
    # also read every element between the head and the tail, which must still be zero.
    cols = 17
    rows = LARGE // cols
    assert (rows - 1) * cols > 2**31
    matrix = x[:rows * cols].reshape(rows, cols)
    sums = ops.bias_grad(matrix)
    expected_sums = np.zeros(cols)
    flat_tail = np.arange(tail.start, rows * cols)
    np.add.at(expected_sums, flat_tail % cols, x[tail.start:rows * cols].astype(np.float64))
    np.add.at(expected_sums, np.arange(8) % cols, x[:8].astype(np.float64))
    # A float32 running sum of at most 5 nonzero values per column: a few float32 ulps.
    np.testing.assert_allclose(sums, expected_sums, rtol=1e-6, atol=1e-6)


# ---- the C++ API: element counts beyond int64_t ------------------------------------------------
# Sizes this large cannot come from arrays, so they reach the kernels only through the C++ API
# of the installed package; each entry point must refuse them before forming rows * cols
# (an overflow there is undefined, and used to let softmax run on a wrapped count of 0).

REFUSALS_PROGRAM = r"""
#include <fusedtrain/cpu.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>

namespace cpu = fusedtrain::cpu;

// Prints the message of the std::invalid_argument that `call` must throw, or "returned".
template <class Call>
void expect_refusal(Call call) {
  try {
    call();
    std::printf("returned\n");
  } catch (const std::invalid_argument& error) {
    std::printf("%s\n", error.what());
  }
}

int main() {
  const int64_t huge = int64_t{1} << 62;  // times 4 columns: 2^64 elements
  float data[16] = {};
  int64_t indices[4] = {};
  int32_t labels[4] = {};
  const auto none = fusedtrain::Activation::None;
  expect_refusal([&] { cpu::softmax_forward(data, data, huge, 4); });
  expect_refusal([&] { cpu::softmax_backward(data, data, data, huge, 4); });
  const auto sum = fusedtrain::Reduction::Sum;
  expect_refusal([&] { cpu::softmax_cross_entropy_loss(data, labels, nullptr, huge, 4, sum); });
  expect_refusal([&] { cpu::bias_grad(data, data, huge, 4); });
  expect_refusal([&] { cpu::argmax_rows(data, indices, huge, 4); });
  expect_refusal([&] { cpu::count_correct(data, labels, huge, 4); });
  // C of huge x 4; A^T stored huge x 4; C of 4 rows with a leading dimension of huge.
  expect_refusal([&] { cpu::gemm(false, false, huge, 4, 1, 1, data, 1, data, 4, 0, data, 4, nullptr, none, 0); });
  expect_refusal([&] { cpu::gemm(true, false, 4, 4, huge, 1, data, 4, data, 4, 0, data, 4, nullptr, none, 0); });
  expect_refusal([&] { cpu::gemm(false, true, 4, huge, 1, 1, data, 1, data, 1, 0, data, huge, nullptr, none, 0); });
  return 0;
}
"""

REFUSALS_CMAKE = """
cmake_minimum_required(VERSION 3.18)
project(refusals LANGUAGES CXX)
find_package(fusedtrain CONFIG REQUIRED)
add_executable(refusals main.cpp)
target_link_libraries(refusals PRIVATE fusedtrain::kernels)
"""


def test_cpp_api_refuses_element_counts_beyond_int64(tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not on PATH")
    (tmp_path / "main.cpp").write_text(REFUSALS_PROGRAM)
    (tmp_path / "CMakeLists.txt").write_text(REFUSALS_CMAKE)
    build = tmp_path / "build"
    for command in ([cmake, "-S", tmp_path, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                     f"-Dfusedtrain_DIR={ft.get_cmake_dir()}"],
                    [cmake, "--build", build]):
        result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([str(build / "refusals")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    huge = 2**62
    assert result.stdout.splitlines() == [
        f"fusedtrain::cpu::softmax_forward: x of {huge} rows x cols = 4 has more elements than int64_t can count",
        f"fusedtrain::cpu::softmax_backward: x of {huge} rows x cols = 4 has more elements than int64_t can count",
        f"fusedtrain::cpu::softmax_cross_entropy_loss: logits of {huge} rows x classes = 4 has more elements than "
        f"int64_t can count",
        f"fusedtrain::cpu::bias_grad: grad_output of {huge} rows x cols = 4 has more elements than int64_t can count",
        f"fusedtrain::cpu::argmax_rows: x of {huge} rows x cols = 4 has more elements than int64_t can count",
        f"fusedtrain::cpu::count_correct: scores of {huge} rows x cols = 4 has more elements than int64_t can count",
        f"fusedtrain::cpu::gemm: c of {huge} rows x ldc = 4 has more elements than int64_t can count",
        f"fusedtrain::cpu::gemm: a of {huge} rows x lda = 4 has more elements than int64_t can count",
        f"fusedtrain::cpu::gemm: c of 4 rows x ldc = {huge} has more elements than int64_t can count",
    ]


# ---- the CUDA kernels' size limits, checked without a GPU -----------------------------------

MAX_ELEMENTS = 2**62
MAX_GRID = 2**31 - 1


def _gemm_sizes(m, n, k, trans_a=False, trans_b=False, **leading):
    """The sizes cuda_gemm takes for dense row-major operands; `leading` overrides lda/ldb/ldc."""
    sizes = dict(m=m, n=n, k=k, lda=m if trans_a else k, ldb=k if trans_b else n, ldc=n,
                 trans_a=int(trans_a), trans_b=int(trans_b))
    sizes.update(leading)
    return sizes


def test_element_counts_up_to_2_62_pass():
    _C.cuda_check_sizes("elementwise", n=0)
    _C.cuda_check_sizes("elementwise", n=MAX_ELEMENTS)
    _C.cuda_check_sizes("rows", rows=2**31, cols=2**31)
    _C.cuda_check_sizes("rows", rows=MAX_ELEMENTS, cols=0)
    _C.cuda_check_sizes("rows", rows=0, cols=MAX_ELEMENTS)
    _C.cuda_check_sizes("rows", rows=2**33 + 1, cols=3)


def test_element_counts_beyond_2_62_are_refused():
    with pytest.raises(ValueError, match=r"^n: 4611686018427387905 is more than the CUDA kernels' limit of 2\^62"):
        _C.cuda_check_sizes("elementwise", n=MAX_ELEMENTS + 1)
    with pytest.raises(ValueError, match=r"^cols: the array of 2147483649 rows of 2147483648 elements is more than "
                                         r"the CUDA kernels' limit of 2\^62 = 4611686018427387904"):
        _C.cuda_check_sizes("rows", rows=2**31 + 1, cols=2**31)
    with pytest.raises(ValueError, match=r"^rows: must be >= 0, got -1"):
        _C.cuda_check_sizes("rows", rows=-1, cols=4)
    with pytest.raises(ValueError, match=r"^n: 18446744073709551616 is outside int64_t"):
        _C.cuda_check_sizes("elementwise", n=2**64)
    with pytest.raises(TypeError, match=r"^n: expected an integer, got 3.0"):
        _C.cuda_check_sizes("elementwise", n=3.0)


def test_bias_grad_column_groups_fit_the_grid():
    # One block per 32 columns along gridDim.x.
    _C.cuda_check_sizes("bias_grad", rows=1, cols=32 * MAX_GRID)
    with pytest.raises(ValueError, match=r"^cols: grad_output of 68719476705 columns needs 2147483648 blocks, one "
                                         r"per 32 columns, more than a CUDA grid's limit of 2\^31 - 1"):
        _C.cuda_check_sizes("bias_grad", rows=1, cols=32 * MAX_GRID + 1)
    # The plain row kernels walk rows in a grid-stride loop: no such limit.
    _C.cuda_check_sizes("rows", rows=1, cols=32 * MAX_GRID + 1)


def test_gemm_tiles_fit_the_grid():
    # One block per 128 x 128 tile of C along gridDim.x: 2^31 - 1 tiles in one column of tiles
    # pass, one row more does not; a square C hits the limit at 2^31 tiles.
    _C.cuda_check_sizes("gemm", **_gemm_sizes(128 * MAX_GRID, 1, 1))
    with pytest.raises(ValueError, match=r"^m, n: c of 274877906817 x 1 needs 2147483648 blocks, one per 128 x 128 "
                                         r"tile, more than a CUDA grid's limit of 2\^31 - 1 = 2147483647 blocks"):
        _C.cuda_check_sizes("gemm", **_gemm_sizes(128 * MAX_GRID + 1, 1, 1))
    _C.cuda_check_sizes("gemm", **_gemm_sizes(2**22, 2**23 - 128, 1))
    with pytest.raises(ValueError, match=r"^m, n: c of 8388608 x 8388608 needs 4294967296 blocks"):
        _C.cuda_check_sizes("gemm", **_gemm_sizes(2**23, 2**23, 1))


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_gemm_leading_dimensions(trans_a, trans_b):
    m, n, k = 5, 3, 7
    _C.cuda_check_sizes("gemm", **_gemm_sizes(m, n, k, trans_a, trans_b))
    # Each leading dimension must cover the row it strides over: m or k for A, k or n for B, n for C.
    a_row, b_row = (m if trans_a else k), (k if trans_b else n)
    with pytest.raises(ValueError, match=rf"^lda: {a_row - 1} is smaller than the row length of a \({a_row}\)"):
        _C.cuda_check_sizes("gemm", **_gemm_sizes(m, n, k, trans_a, trans_b, lda=a_row - 1))
    with pytest.raises(ValueError, match=rf"^ldb: {b_row - 1} is smaller than the row length of b \({b_row}\)"):
        _C.cuda_check_sizes("gemm", **_gemm_sizes(m, n, k, trans_a, trans_b, ldb=b_row - 1))
    with pytest.raises(ValueError, match=rf"^ldc: {n - 1} is smaller than the row length of c \({n}\)"):
        _C.cuda_check_sizes("gemm", **_gemm_sizes(m, n, k, trans_a, trans_b, ldc=n - 1))


def test_gemm_operands_up_to_2_62_elements():
    # A of 2^31 x 2^31 is the largest square operand; its leading dimension counts, not k.
    _C.cuda_check_sizes("gemm", **_gemm_sizes(2**31, 1, 2**31, ldc=2**31))
    with pytest.raises(ValueError, match=r"^lda: a of 2147483648 rows of 2147483649 elements is more than"):
        _C.cuda_check_sizes("gemm", **_gemm_sizes(2**31, 1, 2**31, lda=2**31 + 1))
    with pytest.raises(ValueError, match=r"^ldb: b of 4611686018427387904 rows of 2 elements"):
        _C.cuda_check_sizes("gemm", **_gemm_sizes(1, 2, MAX_ELEMENTS))
    with pytest.raises(ValueError, match=r"^ldc: c of 4611686018427387904 rows of 2 elements"):
        _C.cuda_check_sizes("gemm", **_gemm_sizes(MAX_ELEMENTS, 2, 0))


def test_unknown_families_and_missing_sizes():
    with pytest.raises(ValueError, match="unknown kernel family 'conv'"):
        _C.cuda_check_sizes("conv", n=1)
    with pytest.raises(ValueError, match="the gemm kernels need a size named 'trans_b'"):
        _C.cuda_check_sizes("gemm", m=1, n=1, k=1, lda=1, ldb=1, ldc=1, trans_a=0)
    with pytest.raises(ValueError, match="the rows kernels need a size named 'cols'"):
        _C.cuda_check_sizes("rows", rows=1)


# Every CUDA binding with one size beyond its limit: the check runs before anything reaches the
# GPU (the pointers, all 0, are never used), with or without a GPU.
TOO_MANY = MAX_ELEMENTS + 1
OVERSIZED_CALLS = {
    "cuda_gemm": ((False, False, 2**23, 2**23, 1, 1.0, 0, 1, 0, 2**23, 0.0, 0, 2**23, 0, 0, 0.0, False, 0),
                  r"^m, n: c of 8388608 x 8388608 needs 4294967296 blocks"),
    "cuda_activation_forward": ((1, 0.0, 0, 0, TOO_MANY, 0), "^n: "),
    "cuda_activation_backward": ((1, 0.0, 0, 0, 0, -1, 0), "^n: must be >= 0"),
    "cuda_softmax_forward": ((0, 0, 2**31 + 1, 2**31, 0), "^cols: the array of 2147483649 rows"),
    "cuda_softmax_backward": ((0, 0, 0, -2, 3, 0), "^rows: must be >= 0"),
    "cuda_mse_loss": ((0, 0, 0, TOO_MANY, 0, 0, 0, 0), "^n: "),
    "cuda_binary_cross_entropy_loss": ((0, 0, 0, -5, 0, 0, 0, 0), "^n: must be >= 0"),
    "cuda_softmax_cross_entropy_loss": ((0, 0, 32, 0, 2**40, 2**40, 0, 0, 0, 0), "^cols: the array of 1099511627776 rows"),
    "cuda_bias_grad": ((0, 0, 1, 32 * MAX_GRID + 1, 0, 0), "^cols: grad_output of 68719476705 columns"),
    "cuda_argmax_rows": ((0, 0, 2**40, 2**40, 0), "^cols: the array"),
    "cuda_count_correct": ((0, 0, 64, -1, 3, 0, 0, 0), "^rows: must be >= 0"),
    "cuda_sum_of_squares": ((0, TOO_MANY, False, 0, 0), "^n: "),
    "cuda_clip_scale": ((0, -1, 1.0, 0, 0), "^n: must be >= 0"),
    "cuda_sgd_step": ((0, 0, 0, TOO_MANY, 0.1, 0.0, False, 0.0, 0), "^n: "),
    "cuda_adam_step": ((0, 0, 0, 0, -1, 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 0), "^n: must be >= 0"),
    "cuda_rmsprop_step": ((0, 0, 0, TOO_MANY, 0.1, 0.99, 1e-8, 0.0, 0), "^n: "),
    "cuda_dropout_forward": ((0, 0, 0, -1, 0.5, 1, 1, 0), "^n: must be >= 0"),
    "cuda_dropout_backward": ((0, 0, 0, TOO_MANY, 0.5, 0), "^n: "),
}


def test_every_launching_binding_is_listed():
    launching = {name for name in dir(_C) if name.startswith("cuda_")} - {
        "cuda_compiled", "cuda_query", "cuda_workspace_bytes", "cuda_check_sizes", "cuda_read_result"}
    if _C.cuda_compiled:
        assert launching == set(OVERSIZED_CALLS)
    else:
        assert launching == set()


@pytest.mark.skipif(not _C.cuda_compiled, reason="fusedtrain was built without CUDA")
@pytest.mark.parametrize("name", sorted(OVERSIZED_CALLS))
def test_every_cuda_binding_checks_its_sizes_first(name):
    arguments, message = OVERSIZED_CALLS[name]
    with pytest.raises(ValueError, match=message):
        getattr(_C, name)(*arguments)
