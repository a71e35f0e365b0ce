// pybind11 shim over the CUDA launchers of cc/gpu/adam_gpu.h, for tests and benchmarks without
// TensorFlow: every argument is a raw device pointer (an int, e.g. torch's data_ptr() or CuPy's
// .data.ptr) and the stream a cudaStream_t as an int (torch's cuda_stream, CuPy's .ptr; 0 is the
// legacy default stream). Each call returns "" or CUDA's error message, as the launchers do.
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "gpu/adam_8bit_gpu.h"
#include "gpu/adam_gpu.h"

namespace py = pybind11;
using tf_adam_op::ScalarPointers;
using tf_adam_op::TensorPointers;
using tf_adam_op::gpu::Dtype;

namespace {

void* Ptr(std::uintptr_t address) { return reinterpret_cast<void*>(address); }

Dtype ParseDtype(const std::string& name) {
  if (name == "float16") return Dtype::kHalf;
  if (name == "bfloat16") return Dtype::kBfloat16;
  if (name == "float32") return Dtype::kFloat;
  if (name == "float64") return Dtype::kDouble;
  throw py::value_error("dtype must be float16, bfloat16, float32 or float64, not " + name);
}

// (beta1_power, beta2_power, powers_are_double, lr, beta1, beta2, epsilon): device pointers; lr to
// epsilon of the compute type (float32, float64 for float64 variables).
using ScalarTuple = std::tuple<std::uintptr_t, std::uintptr_t, bool, std::uintptr_t,
                               std::uintptr_t, std::uintptr_t, std::uintptr_t>;

// weight_decay: a device pointer to the decay scalar (compute type), 0 for none.
ScalarPointers Scalars(const ScalarTuple& s, std::uintptr_t weight_decay) {
  return {Ptr(std::get<0>(s)), Ptr(std::get<1>(s)), std::get<2>(s), Ptr(std::get<3>(s)),
          Ptr(std::get<4>(s)), Ptr(std::get<5>(s)), Ptr(std::get<6>(s)),
          weight_decay ? Ptr(weight_decay) : nullptr};
}

// AMSGrad when vhat pointers are given; the decay convention when a weight decay is.
tf_adam_op::Variant VariantOf(bool nesterov, bool scale_first, bool amsgrad,
                              std::uintptr_t weight_decay, bool weight_decay_times_lr) {
  using tf_adam_op::WeightDecay;
  tf_adam_op::Variant variant;
  variant.nesterov = nesterov;
  variant.scale_first = scale_first;
  variant.amsgrad = amsgrad;
  variant.weight_decay = weight_decay == 0      ? WeightDecay::kNone
                         : weight_decay_times_lr ? WeightDecay::kTimesVarLr
                                                 : WeightDecay::kTimesVar;
  return variant;
}

// 8-bit states: [m_codes, m_absmax, v_codes, v_absmax] (and vhat's two, for AMSGrad), device
// pointers; the launchers fill in the device codebooks.
tf_adam_op::eight_bit::States8bit States(const std::vector<std::uintptr_t>& p) {
  if (p.size() != 4 && p.size() != 6) {
    throw py::value_error("states are m_codes, m_absmax, v_codes, v_absmax (and vhat's two)");
  }
  tf_adam_op::eight_bit::States8bit s{nullptr, nullptr,
                                      static_cast<uint8_t*>(Ptr(p[0])), static_cast<float*>(Ptr(p[1])),
                                      static_cast<uint8_t*>(Ptr(p[2])), static_cast<float*>(Ptr(p[3]))};
  if (p.size() == 6) {
    s.vhat_codes = static_cast<uint8_t*>(Ptr(p[4]));
    s.vhat_absmax = static_cast<float*>(Ptr(p[5]));
  }
  return s;
}

}  // namespace

PYBIND11_MODULE(adam_gpu_harness, module) {
  module.doc() = "TF-free harness over tf_adam_op's CUDA kernels (tests/gpu_kernels)";
  module.attr("MAX_TENSORS_PER_LAUNCH") = tf_adam_op::gpu::kMaxTensorsPerLaunch;

  module.def("cuda_version", &tf_adam_op::gpu::CudaVersion,
             "The CUDA runtime the kernels were built with, e.g. '13.0'");

  module.def(
      "launch_dense",
      [](std::uintptr_t stream, const std::string& dtype, bool nesterov, std::uintptr_t var,
         std::uintptr_t m, std::uintptr_t v, std::uintptr_t grad, int64_t n,
         const ScalarTuple& scalars, std::uintptr_t vhat, std::uintptr_t weight_decay,
         bool weight_decay_times_lr) {
        TensorPointers t{Ptr(var), Ptr(m), Ptr(v), Ptr(grad), n, vhat ? Ptr(vhat) : nullptr};
        const auto variant = VariantOf(nesterov, false, vhat != 0, weight_decay,
                                       weight_decay_times_lr);
        py::gil_scoped_release released;
        return tf_adam_op::gpu::LaunchDense(Ptr(stream), ParseDtype(dtype), variant, t,
                                            Scalars(scalars, weight_decay));
      },
      py::arg("stream"), py::arg("dtype"), py::arg("nesterov"), py::arg("var"), py::arg("m"),
      py::arg("v"), py::arg("grad"), py::arg("n"), py::arg("scalars"), py::kw_only(),
      py::arg("vhat") = 0, py::arg("weight_decay") = 0, py::arg("weight_decay_times_lr") = false,
      "vhat: AMSGrad's array (0: plain Adam); weight_decay: the decay scalar (0: none)");

  module.def(
      "launch_multi",
      [](std::uintptr_t stream, const std::string& dtype, bool nesterov,
         const std::vector<std::tuple<std::uintptr_t, std::uintptr_t, std::uintptr_t,
                                      std::uintptr_t, int64_t>>& tensors,
         const ScalarTuple& scalars, const std::vector<std::uintptr_t>& vhats,
         std::uintptr_t weight_decay, bool weight_decay_times_lr) {
        if (!vhats.empty() && vhats.size() != tensors.size()) {
          throw py::value_error("vhats must be empty or hold one pointer per tensor");
        }
        std::vector<TensorPointers> pointers;
        pointers.reserve(tensors.size());
        for (const auto& [var, m, v, grad, size] : tensors) {
          pointers.push_back({Ptr(var), Ptr(m), Ptr(v), Ptr(grad), size});
        }
        for (size_t i = 0; i < vhats.size(); ++i) pointers[i].vhat = Ptr(vhats[i]);
        const auto variant = VariantOf(nesterov, false, !vhats.empty(), weight_decay,
                                       weight_decay_times_lr);
        py::gil_scoped_release released;
        return tf_adam_op::gpu::LaunchMulti(Ptr(stream), ParseDtype(dtype), variant, pointers,
                                            Scalars(scalars, weight_decay));
      },
      py::arg("stream"), py::arg("dtype"), py::arg("nesterov"), py::arg("tensors"),
      py::arg("scalars"), py::kw_only(), py::arg("vhats") = std::vector<std::uintptr_t>(),
      py::arg("weight_decay") = 0, py::arg("weight_decay_times_lr") = false,
      "tensors: [(var, m, v, grad, size)]; vhats: AMSGrad's arrays, one per tensor, or none");

  module.def(
      "launch_sparse",
      [](std::uintptr_t stream, const std::string& dtype, bool lazy, bool scale_first,
         std::uintptr_t var, std::uintptr_t m, std::uintptr_t v, int64_t rows, int64_t row_size,
         std::uintptr_t grad, std::uintptr_t v_term, std::uintptr_t order,
         std::uintptr_t segment_starts, std::uintptr_t unique_rows, int64_t unique,
         std::uintptr_t summed, const ScalarTuple& scalars, std::uintptr_t vhat,
         std::uintptr_t weight_decay, bool weight_decay_times_lr) {
        const tf_adam_op::gpu::SparseSegments segments{
            static_cast<const int64_t*>(Ptr(order)), static_cast<const int64_t*>(Ptr(segment_starts)),
            static_cast<const int64_t*>(Ptr(unique_rows)), unique};
        const auto variant = VariantOf(false, scale_first, vhat != 0, weight_decay,
                                       weight_decay_times_lr);
        py::gil_scoped_release released;
        return tf_adam_op::gpu::LaunchSparse(Ptr(stream), ParseDtype(dtype), lazy, variant,
                                             Ptr(var), Ptr(m), Ptr(v), vhat ? Ptr(vhat) : nullptr,
                                             rows, row_size, Ptr(grad),
                                             v_term ? Ptr(v_term) : nullptr, segments, Ptr(summed),
                                             Scalars(scalars, weight_decay));
      },
      py::arg("stream"), py::arg("dtype"), py::arg("lazy"), py::arg("scale_first"), py::arg("var"),
      py::arg("m"), py::arg("v"), py::arg("rows"), py::arg("row_size"), py::arg("grad"),
      py::arg("v_term"), py::arg("order"), py::arg("segment_starts"), py::arg("unique_rows"),
      py::arg("unique"), py::arg("summed"), py::arg("scalars"), py::kw_only(), py::arg("vhat") = 0,
      py::arg("weight_decay") = 0, py::arg("weight_decay_times_lr") = false,
      "order, segment_starts, unique_rows: device int64 (see SparseSegments); v_term 0 for none");

  module.def(
      "launch_dense_8bit",
      [](std::uintptr_t stream, const std::string& dtype, bool nesterov, std::uintptr_t var,
         std::uintptr_t grad, int64_t n, const std::vector<std::uintptr_t>& states,
         const ScalarTuple& scalars, std::uintptr_t weight_decay, bool weight_decay_times_lr) {
        const auto variant = VariantOf(nesterov, false, states.size() == 6, weight_decay,
                                       weight_decay_times_lr);
        const auto s = States(states);
        py::gil_scoped_release released;
        return tf_adam_op::gpu::LaunchDense8bit(Ptr(stream), ParseDtype(dtype), variant, Ptr(var),
                                                Ptr(grad), n, s, Scalars(scalars, weight_decay));
      },
      py::arg("stream"), py::arg("dtype"), py::arg("nesterov"), py::arg("var"), py::arg("grad"),
      py::arg("n"), py::arg("states"), py::arg("scalars"), py::kw_only(),
      py::arg("weight_decay") = 0, py::arg("weight_decay_times_lr") = false,
      "8-bit states: [m_codes, m_absmax, v_codes, v_absmax (, vhat_codes, vhat_absmax)]");

  module.def(
      "launch_sparse_8bit",
      [](std::uintptr_t stream, const std::string& dtype, bool lazy, std::uintptr_t var,
         const std::vector<std::uintptr_t>& states, int64_t rows, int64_t row_size,
         std::uintptr_t grad, std::uintptr_t order, std::uintptr_t segment_starts,
         std::uintptr_t unique_rows, int64_t unique, std::uintptr_t blocks, int64_t n_blocks,
         std::uintptr_t summed, const ScalarTuple& scalars) {
        const tf_adam_op::gpu::SparseSegments segments{
            static_cast<const int64_t*>(Ptr(order)), static_cast<const int64_t*>(Ptr(segment_starts)),
            static_cast<const int64_t*>(Ptr(unique_rows)), unique};
        const auto variant = VariantOf(false, false, states.size() == 6, 0, false);
        const auto s = States(states);
        py::gil_scoped_release released;
        return tf_adam_op::gpu::LaunchSparse8bit(
            Ptr(stream), ParseDtype(dtype), lazy, variant, Ptr(var), s, rows, row_size, Ptr(grad),
            nullptr, segments, static_cast<const int64_t*>(Ptr(blocks)), n_blocks, Ptr(summed),
            Scalars(scalars, 0));
      },
      py::arg("stream"), py::arg("dtype"), py::arg("lazy"), py::arg("var"), py::arg("states"),
      py::arg("rows"), py::arg("row_size"), py::arg("grad"), py::arg("order"),
      py::arg("segment_starts"), py::arg("unique_rows"), py::arg("unique"), py::arg("blocks"),
      py::arg("n_blocks"), py::arg("summed"), py::arg("scalars"),
      "blocks: device int64, the blocks of 256 to update (lazy: those holding a named row)");

  module.def(
      "launch_advance_powers",
      [](std::uintptr_t stream, std::uintptr_t beta1_power, std::uintptr_t beta2_power,
         bool powers_are_double, std::uintptr_t beta1, std::uintptr_t beta2,
         bool betas_are_double) {
        py::gil_scoped_release released;
        return tf_adam_op::gpu::LaunchAdvancePowers(Ptr(stream), Ptr(beta1_power), Ptr(beta2_power),
                                                    powers_are_double, Ptr(beta1), Ptr(beta2),
                                                    betas_are_double);
      });

  module.def("copy_device_to_device", [](std::uintptr_t stream, std::uintptr_t dst,
                                         std::uintptr_t src, size_t bytes) {
    py::gil_scoped_release released;
    return tf_adam_op::gpu::CopyDeviceToDevice(Ptr(stream), Ptr(dst), Ptr(src), bytes);
  });

  // The harness's own: waiting for a stream, for tests of what is on which stream.
  module.def("synchronize_stream", [](std::uintptr_t stream) {
    py::gil_scoped_release released;
    const cudaError_t status = cudaStreamSynchronize(static_cast<cudaStream_t>(Ptr(stream)));
    return status == cudaSuccess ? std::string() : std::string(cudaGetErrorString(status));
  });
}
