// The CUDA side of fusedtrain._C: whether it was compiled, what devices the runtime sees, and
// the kernels on device pointers. Arrays arrive as integers (CuPy arrays' data pointers) with
// their sizes, already validated by fusedtrain.ops; each function checks the sizes against the
// kernels' limits (check_sizes), then launches on the given stream (CuPy's current stream) with
// the GIL released. CUDA errors raise RuntimeError naming the CUDA error; a bad label or a size
// beyond the limits ValueError.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "cuda/runtime.h"

namespace fusedtrain::bindings {

namespace py = pybind11;

namespace {

// ---- size limits --------------------------------------------------------------------------------
// The sizes of one CUDA call by name, in argument order.
using Sizes = std::vector<std::pair<std::string, int64_t>>;

const std::string kElementLimit = "the CUDA kernels' limit of 2^62 = " + std::to_string(cuda::kMaxElements);
const std::string kGridLimit = "a CUDA grid's limit of 2^31 - 1 = " + std::to_string(cuda::kMaxGridBlocks) + " blocks";

int64_t size_named(const Sizes& sizes, const std::string& kernel, const char* name) {
  for (const auto& [size_name, value] : sizes) {
    if (size_name == name) return value;
  }
  throw py::value_error("check_sizes: the " + kernel + " kernels need a size named '" + name + "'");
}

// Blocks of `width` that cover `extent`; extent is at most kMaxElements, so nothing overflows.
int64_t blocks_of(int64_t extent, int64_t width) { return (extent + width - 1) / width; }

// A row-major array `array` of `rows` rows with `row_length` elements from one row to the next
// (`row_length_name`) holds at most kMaxElements, asked without forming a product that could
// overflow.
void check_array(const std::string& array, int64_t rows, int64_t row_length, const std::string& row_length_name) {
  if (row_length != 0 && rows > cuda::kMaxElements / row_length) {
    throw py::value_error(row_length_name + ": " + array + " of " + std::to_string(rows) + " rows of " +
                          std::to_string(row_length) + " elements is more than " + kElementLimit);
  }
}

// A grid of `blocks` blocks along gridDim.x fits a launch.
void check_grid(const std::string& names, const std::string& what, int64_t blocks, const std::string& block) {
  if (blocks <= cuda::kMaxGridBlocks) return;
  throw py::value_error(names + ": " + what + " needs " + std::to_string(blocks) + " blocks, one per " + block +
                        ", more than " + kGridLimit);
}

// Operand `matrix` of the GEMM: `rows` x `cols` stored row-major with leading dimension `ld`.
void check_matrix(const char* matrix, const char* ld_name, int64_t rows, int64_t cols, int64_t ld) {
  if (ld < cols) {
    throw py::value_error(std::string(ld_name) + ": " + std::to_string(ld) + " is smaller than the row length of " +
                          matrix + " (" + std::to_string(cols) + ")");
  }
  check_array(matrix, rows, ld, ld_name);
}

// The one size check of the CUDA bindings: every binding calls it before it launches anything,
// and _C.cuda_check_sizes exposes it (in every build, with or without CUDA) so that the limits
// are tested without a GPU. `kernel` names the kernel family and the sizes it takes:
//   "elementwise" n; "rows" and "bias_grad" rows, cols (a rows x cols array);
//   "gemm" m, n, k, lda, ldb, ldc, trans_a, trans_b (0 or 1), as cuda::gemm takes them.
// Every size lies in [0, kMaxElements], every array holds at most kMaxElements elements, and
// the GEMM's tiles of C and bias_grad's column groups fit in gridDim.x; otherwise ValueError
// "<size>: ..." with the limit.
void check_sizes(const std::string& kernel, const Sizes& sizes) {
  for (const auto& [name, value] : sizes) {
    if (value < 0) throw py::value_error(name + ": must be >= 0, got " + std::to_string(value));
    if (value > cuda::kMaxElements) {
      throw py::value_error(name + ": " + std::to_string(value) + " is more than " + kElementLimit);
    }
  }
  if (kernel == "elementwise") {
    size_named(sizes, kernel, "n");
  } else if (kernel == "rows" || kernel == "bias_grad") {
    const int64_t rows = size_named(sizes, kernel, "rows"), cols = size_named(sizes, kernel, "cols");
    check_array("the array", rows, cols, "cols");
    if (kernel == "bias_grad") {
      check_grid("cols", "grad_output of " + std::to_string(cols) + " columns", blocks_of(cols, cuda::kBiasGradColumns),
                 std::to_string(cuda::kBiasGradColumns) + " columns");
    }
  } else if (kernel == "gemm") {
    const int64_t m = size_named(sizes, kernel, "m"), n = size_named(sizes, kernel, "n");
    const int64_t k = size_named(sizes, kernel, "k");
    const bool trans_a = size_named(sizes, kernel, "trans_a") != 0;
    const bool trans_b = size_named(sizes, kernel, "trans_b") != 0;
    // A is stored m x k (k x m when transposed), B k x n (n x k), C m x n, all row-major.
    check_matrix("a", "lda", trans_a ? k : m, trans_a ? m : k, size_named(sizes, kernel, "lda"));
    check_matrix("b", "ldb", trans_b ? n : k, trans_b ? k : n, size_named(sizes, kernel, "ldb"));
    check_matrix("c", "ldc", m, n, size_named(sizes, kernel, "ldc"));
    // C's check bounds m * n by 2^62, so the tile count, about m * n / 2^14, cannot overflow.
    const int64_t tiles = blocks_of(m, cuda::kGemmTile) * blocks_of(n, cuda::kGemmTile);
    const std::string tile = std::to_string(cuda::kGemmTile) + " x " + std::to_string(cuda::kGemmTile);
    check_grid("m, n", "c of " + std::to_string(m) + " x " + std::to_string(n), tiles, tile + " tile");
  } else {
    throw py::value_error("check_sizes: unknown kernel family '" + kernel +
                          "' (expected 'elementwise', 'rows', 'bias_grad' or 'gemm')");
  }
}

}  // namespace

#if FT_WITH_CUDA
namespace {

using Pointer = std::uintptr_t;

template <class T>
T* device(Pointer pointer) {
  return reinterpret_cast<T*>(pointer);
}

Activation to_activation(int activation) {
  require(activation >= 0 && activation <= static_cast<int>(Activation::Gelu), "unknown activation");
  return static_cast<Activation>(activation);
}

Reduction to_reduction(int reduction) {
  require(reduction == 0 || reduction == 1, "unknown reduction");
  return static_cast<Reduction>(reduction);
}

void require_label_bits(int label_bits) { require(label_bits == 32 || label_bits == 64, "labels must be int32 or int64"); }

void bind_kernels(py::module_& m) {
  m.attr("cuda_workspace_bytes") = py::int_(cuda::kWorkspaceBytes);

  m.def(
      "cuda_gemm",
      [](bool trans_a, bool trans_b, int64_t rows, int64_t cols, int64_t inner, float alpha, Pointer a, int64_t lda,
         Pointer b, int64_t ldb, float beta, Pointer c, int64_t ldc, Pointer bias, int activation, float param,
         bool allow_tf32, Pointer stream) {
        Activation act = to_activation(activation);
        check_sizes("gemm", {{"m", rows}, {"n", cols}, {"k", inner}, {"lda", lda}, {"ldb", ldb}, {"ldc", ldc},
                             {"trans_a", trans_a}, {"trans_b", trans_b}});
        py::gil_scoped_release release;
        cuda::gemm(trans_a, trans_b, rows, cols, inner, alpha, device<const float>(a), lda, device<const float>(b), ldb,
                   beta, device<float>(c), ldc, device<const float>(bias), act, param, allow_tf32, stream);
      },
      py::arg("trans_a"), py::arg("trans_b"), py::arg("m"), py::arg("n"), py::arg("k"), py::arg("alpha"), py::arg("a"),
      py::arg("lda"), py::arg("b"), py::arg("ldb"), py::arg("beta"), py::arg("c"), py::arg("ldc"), py::arg("bias"),
      py::arg("activation"), py::arg("param"), py::arg("allow_tf32"), py::arg("stream"));

  m.def(
      "cuda_activation_forward",
      [](int activation, float param, Pointer x, Pointer y, int64_t n, Pointer stream) {
        Activation act = to_activation(activation);
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        cuda::activation_forward(act, param, device<const float>(x), device<float>(y), n, stream);
      },
      py::arg("activation"), py::arg("param"), py::arg("x"), py::arg("out"), py::arg("n"), py::arg("stream"));
  m.def(
      "cuda_activation_backward",
      [](int activation, float param, Pointer grad_output, Pointer x, Pointer grad_input, int64_t n, Pointer stream) {
        Activation act = to_activation(activation);
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        cuda::activation_backward(act, param, device<const float>(grad_output), device<const float>(x),
                                  device<float>(grad_input), n, stream);
      },
      py::arg("activation"), py::arg("param"), py::arg("grad_output"), py::arg("x"), py::arg("out"), py::arg("n"),
      py::arg("stream"));
  m.def(
      "cuda_softmax_forward",
      [](Pointer x, Pointer y, int64_t rows, int64_t cols, Pointer stream) {
        check_sizes("rows", {{"rows", rows}, {"cols", cols}});
        py::gil_scoped_release release;
        cuda::softmax_forward(device<const float>(x), device<float>(y), rows, cols, stream);
      },
      py::arg("x"), py::arg("out"), py::arg("rows"), py::arg("cols"), py::arg("stream"));
  m.def(
      "cuda_softmax_backward",
      [](Pointer grad_output, Pointer x, Pointer grad_input, int64_t rows, int64_t cols, Pointer stream) {
        check_sizes("rows", {{"rows", rows}, {"cols", cols}});
        py::gil_scoped_release release;
        cuda::softmax_backward(device<const float>(grad_output), device<const float>(x), device<float>(grad_input),
                               rows, cols, stream);
      },
      py::arg("grad_output"), py::arg("x"), py::arg("out"), py::arg("rows"), py::arg("cols"), py::arg("stream"));

  m.def(
      "cuda_mse_loss",
      [](Pointer pred, Pointer target, Pointer grad, int64_t n, int reduction, Pointer workspace, Pointer result,
         Pointer stream) {
        Reduction red = to_reduction(reduction);
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        return cuda::mse_loss(device<const float>(pred), device<const float>(target), device<float>(grad), n, red,
                              device<void>(workspace), device<double>(result), stream);
      },
      py::arg("pred"), py::arg("target"), py::arg("grad"), py::arg("n"), py::arg("reduction"), py::arg("workspace"),
      py::arg("result"), py::arg("stream"));
  m.def(
      "cuda_binary_cross_entropy_loss",
      [](Pointer logits, Pointer target, Pointer grad, int64_t n, int reduction, Pointer workspace, Pointer result,
         Pointer stream) {
        Reduction red = to_reduction(reduction);
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        return cuda::binary_cross_entropy_loss(device<const float>(logits), device<const float>(target),
                                               device<float>(grad), n, red, device<void>(workspace),
                                               device<double>(result), stream);
      },
      py::arg("logits"), py::arg("target"), py::arg("grad"), py::arg("n"), py::arg("reduction"), py::arg("workspace"),
      py::arg("result"), py::arg("stream"));
  m.def(
      "cuda_softmax_cross_entropy_loss",
      [](Pointer logits, Pointer labels, int label_bits, Pointer grad, int64_t rows, int64_t classes, int reduction,
         Pointer workspace, Pointer result, Pointer stream) {
        Reduction red = to_reduction(reduction);
        require_label_bits(label_bits);
        check_sizes("rows", {{"rows", rows}, {"cols", classes}});
        py::gil_scoped_release release;
        if (label_bits == 32) {
          return cuda::softmax_cross_entropy_loss(device<const float>(logits), device<const int32_t>(labels),
                                                  device<float>(grad), rows, classes, red, device<void>(workspace),
                                                  device<double>(result), stream);
        }
        return cuda::softmax_cross_entropy_loss(device<const float>(logits), device<const int64_t>(labels),
                                                device<float>(grad), rows, classes, red, device<void>(workspace),
                                                device<double>(result), stream);
      },
      py::arg("logits"), py::arg("labels"), py::arg("label_bits"), py::arg("grad"), py::arg("rows"),
      py::arg("classes"), py::arg("reduction"), py::arg("workspace"), py::arg("result"), py::arg("stream"));

  m.def(
      "cuda_bias_grad",
      [](Pointer grad_output, Pointer out, int64_t rows, int64_t cols, Pointer workspace, Pointer stream) {
        check_sizes("bias_grad", {{"rows", rows}, {"cols", cols}});
        py::gil_scoped_release release;
        cuda::bias_grad(device<const float>(grad_output), device<float>(out), rows, cols, device<void>(workspace),
                        stream);
      },
      py::arg("grad_output"), py::arg("out"), py::arg("rows"), py::arg("cols"), py::arg("workspace"),
      py::arg("stream"));
  m.def(
      "cuda_argmax_rows",
      [](Pointer x, Pointer out, int64_t rows, int64_t cols, Pointer stream) {
        check_sizes("rows", {{"rows", rows}, {"cols", cols}});
        py::gil_scoped_release release;
        cuda::argmax_rows(device<const float>(x), device<int64_t>(out), rows, cols, stream);
      },
      py::arg("x"), py::arg("out"), py::arg("rows"), py::arg("cols"), py::arg("stream"));
  m.def(
      "cuda_count_correct",
      [](Pointer scores, Pointer labels, int label_bits, int64_t rows, int64_t cols, Pointer workspace,
         Pointer result, Pointer stream) {
        require_label_bits(label_bits);
        check_sizes("rows", {{"rows", rows}, {"cols", cols}});
        py::gil_scoped_release release;
        if (label_bits == 32) {
          return cuda::count_correct(device<const float>(scores), device<const int32_t>(labels), rows, cols,
                                     device<void>(workspace), device<double>(result), stream);
        }
        return cuda::count_correct(device<const float>(scores), device<const int64_t>(labels), rows, cols,
                                   device<void>(workspace), device<double>(result), stream);
      },
      py::arg("scores"), py::arg("labels"), py::arg("label_bits"), py::arg("rows"), py::arg("cols"),
      py::arg("workspace"), py::arg("result"), py::arg("stream"));
  m.def(
      "cuda_sum_of_squares",
      [](Pointer x, int64_t n, bool accumulate, Pointer workspace, Pointer stream) {
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        cuda::sum_of_squares(device<const float>(x), n, accumulate, device<void>(workspace), stream);
      },
      py::arg("x"), py::arg("n"), py::arg("accumulate"), py::arg("workspace"), py::arg("stream"));
  m.def(
      "cuda_clip_scale",
      [](Pointer x, int64_t n, double max_norm, Pointer workspace, Pointer stream) {
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        cuda::clip_scale(device<float>(x), n, max_norm, device<const void>(workspace), stream);
      },
      py::arg("x"), py::arg("n"), py::arg("max_norm"), py::arg("workspace"), py::arg("stream"));
  m.def(
      "cuda_read_result",
      [](Pointer workspace, Pointer stream) {
        py::gil_scoped_release release;
        return cuda::read_result(device<void>(workspace), stream);
      },
      py::arg("workspace"), py::arg("stream"));

  m.def(
      "cuda_sgd_step",
      [](Pointer param, Pointer grad, Pointer velocity, int64_t n, float lr, float momentum, bool nesterov,
         float weight_decay, Pointer stream) {
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        cuda::sgd_step(device<float>(param), device<const float>(grad), device<float>(velocity), n, lr, momentum,
                       nesterov, weight_decay, stream);
      },
      py::arg("param"), py::arg("grad"), py::arg("velocity"), py::arg("n"), py::arg("lr"), py::arg("momentum"),
      py::arg("nesterov"), py::arg("weight_decay"), py::arg("stream"));
  m.def(
      "cuda_adam_step",
      [](Pointer param, Pointer grad, Pointer m_state, Pointer v_state, int64_t n, int64_t step, float lr, float beta1,
         float beta2, float eps, float weight_decay, bool decoupled, Pointer stream) {
        require(step >= 1, "adam_step: step counts from 1");
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        cuda::adam_step(device<float>(param), device<const float>(grad), device<float>(m_state),
                        device<float>(v_state), n, step, lr, beta1, beta2, eps, weight_decay, decoupled, stream);
      },
      py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"), py::arg("n"), py::arg("step"), py::arg("lr"),
      py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"),
      py::arg("stream"));
  m.def(
      "cuda_rmsprop_step",
      [](Pointer param, Pointer grad, Pointer square_avg, int64_t n, float lr, float alpha, float eps,
         float weight_decay, Pointer stream) {
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        cuda::rmsprop_step(device<float>(param), device<const float>(grad), device<float>(square_avg), n, lr, alpha,
                           eps, weight_decay, stream);
      },
      py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("n"), py::arg("lr"), py::arg("alpha"),
      py::arg("eps"), py::arg("weight_decay"), py::arg("stream"));

  m.def(
      "cuda_dropout_forward",
      [](Pointer x, Pointer out, Pointer mask, int64_t n, float rate, uint64_t seed, uint64_t step, Pointer stream) {
        require(rate >= 0.0f && rate < 1.0f, "dropout: rate must be in [0, 1)");
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        cuda::dropout_forward(device<const float>(x), device<float>(out), device<uint8_t>(mask), n, rate, seed, step,
                              stream);
      },
      py::arg("x"), py::arg("out"), py::arg("mask"), py::arg("n"), py::arg("rate"), py::arg("seed"), py::arg("step"),
      py::arg("stream"));
  m.def(
      "cuda_dropout_backward",
      [](Pointer grad_output, Pointer mask, Pointer out, int64_t n, float rate, Pointer stream) {
        require(rate >= 0.0f && rate < 1.0f, "dropout: rate must be in [0, 1)");
        check_sizes("elementwise", {{"n", n}});
        py::gil_scoped_release release;
        cuda::dropout_backward(device<const float>(grad_output), device<const uint8_t>(mask), device<float>(out), n,
                               rate, stream);
      },
      py::arg("grad_output"), py::arg("mask"), py::arg("out"), py::arg("n"), py::arg("rate"), py::arg("stream"));
}

}  // namespace
#endif

void bind_cuda(py::module_& m) {
  m.attr("cuda_compiled") = py::bool_(FT_WITH_CUDA != 0);
  m.def(
      "cuda_check_sizes",
      [](const std::string& kernel, const py::kwargs& sizes) {
        Sizes named;
        for (const auto& [name, value] : sizes) {
          const std::string size_name = py::cast<std::string>(name);
          if (!py::isinstance<py::int_>(value)) {
            throw py::type_error(size_name + ": expected an integer, got " + py::repr(value).cast<std::string>());
          }
          try {
            named.emplace_back(size_name, value.cast<int64_t>());
          } catch (const py::cast_error&) {
            throw py::value_error(size_name + ": " + py::str(value).cast<std::string>() + " is outside int64_t");
          }
        }
        check_sizes(kernel, named);
      },
      py::arg("kernel"),
      "Raises ValueError where the CUDA kernels of `kernel` ('elementwise', 'rows', 'bias_grad' or 'gemm') cannot "
      "take the sizes given by name (the check every CUDA binding runs first).");
#if FT_WITH_CUDA
  m.def("cuda_query", [] {
    cuda::DeviceReport report = cuda::query_devices();
    py::list names;
    for (int device = 0; device < report.device_count; ++device) {
      names.append(cuda::describe_device(device));
    }
    return py::dict(py::arg("device_count") = report.device_count, py::arg("error") = report.error,
                    py::arg("driver") = report.driver, py::arg("devices") = names);
  });
  bind_kernels(m);
#else
  m.def("cuda_query", [] {
    return py::dict(py::arg("device_count") = 0,
                    py::arg("error") = "fusedtrain was built without CUDA (no nvcc found at build time)",
                    py::arg("driver") = "", py::arg("devices") = py::list());
  });
#endif
}

}  // namespace fusedtrain::bindings
