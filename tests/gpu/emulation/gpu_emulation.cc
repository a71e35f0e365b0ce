// _gpu_emulation.emulate_gpu_*: the CUDA kernels' bodies (gpu/adam_gpu_bodies.h) run on the CPU over
// NumPy arrays, a whole grid of `threads` threads one after another, with the launchers' own
// argument arrangement (multi-tensor chunks, packed sparse segments) and their order of launches.
// A test-only module: the GPU kernels' index arithmetic, checked against the CPU kernels on any
// machine. Built beside the package (CMakeLists.txt), never installed; tests/helpers.py loads it.
#include <pybind11/pybind11.h>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "core/adam_update_rule.h"
#include "core/low_precision.h"
#include "core/update_arguments.h"
#include "core/blockwise_8bit.h"
#include "gpu/adam_8bit_gpu_bodies.h"
#include "gpu/adam_gpu_bodies.h"
#include "kernels/cpu_8bit_sparse.h"  // BlocksOfRows
#include "kernels/sparse_segments.h"

namespace py = pybind11;

namespace tf_adam_op {
namespace {

using gpu::GridPosition;

// Every thread of a grid of `threads`, one after another.
template <typename Body>
void RunGrid(int64_t threads, Body body) {
  if (threads < 1) throw py::value_error("threads must be at least 1");
  for (int64_t thread = 0; thread < threads; ++thread) body(GridPosition{thread, threads});
}

// The step's scalars, handed to the bodies as the kernels get them: from memory, read through
// LoadStep (lr, beta1, beta2, epsilon in the compute type C; the powers float or double).
struct Hyper {
  double beta1_power, beta2_power, lr, beta1, beta2, epsilon;
  bool powers_are_double;
  std::optional<double> weight_decay;

  template <typename C>
  AdamStep<C> Step() const {
    const float powers_float[2] = {static_cast<float>(beta1_power), static_cast<float>(beta2_power)};
    const double powers_double[2] = {beta1_power, beta2_power};
    const C scalars[4] = {C(lr), C(beta1), C(beta2), C(epsilon)};
    const void* beta1_p = powers_are_double ? static_cast<const void*>(&powers_double[0])
                                            : static_cast<const void*>(&powers_float[0]);
    const void* beta2_p = powers_are_double ? static_cast<const void*>(&powers_double[1])
                                            : static_cast<const void*>(&powers_float[1]);
    const C decay = C(weight_decay.value_or(0.0));
    return LoadStep<C>(ScalarPointers{beta1_p, beta2_p, powers_are_double, &scalars[0],
                                      &scalars[1], &scalars[2], &scalars[3],
                                      weight_decay ? &decay : nullptr});
  }
};

// The variant of a call: AMSGrad when vhat arrays are given, the decay when weight_decay is.
Variant VariantOf(bool nesterov, bool scale_first, bool amsgrad, const Hyper& h,
                  bool weight_decay_times_lr) {
  Variant variant;
  variant.nesterov = nesterov;
  variant.scale_first = scale_first;
  variant.amsgrad = amsgrad;
  variant.weight_decay = !h.weight_decay          ? WeightDecay::kNone
                         : weight_decay_times_lr ? WeightDecay::kTimesVarLr
                                                 : WeightDecay::kTimesVar;
  return variant;
}

template <typename T>
T* Data(py::array& a) { return static_cast<T*>(a.mutable_data()); }

template <typename T>
void MultiTyped(std::vector<py::array>& vars, std::vector<py::array>& ms, std::vector<py::array>& vs,
                std::vector<py::array>* vhats, const std::vector<py::array>& grads, const Hyper& h,
                const Variant& variant, int64_t threads) {
  using C = OpMathT<T>;
  std::vector<TensorPointers> tensors;
  for (size_t i = 0; i < vars.size(); ++i) {
    tensors.push_back({vars[i].mutable_data(), ms[i].mutable_data(), vs[i].mutable_data(),
                       grads[i].data(), static_cast<int64_t>(vars[i].size()),
                       vhats != nullptr ? (*vhats)[i].mutable_data() : nullptr});
  }
  const AdamStep<C> step = h.Step<C>();
  WithDenseRule(variant, [&](auto rule) {
    gpu::ForEachMultiLaunch<T>(tensors, [&](const gpu::MultiArgs<T>& args) {
      RunGrid(threads, [&](GridPosition g) { gpu::MultiBody<T, decltype(rule)>(g, args, step); });
      return std::string();
    });
  });
}

template <typename T>
void DenseTyped(py::array& var, py::array& m, py::array& v, py::array* vhat, const py::array& grad,
                const Hyper& h, const Variant& variant, int64_t threads) {
  using C = OpMathT<T>;
  const AdamStep<C> step = h.Step<C>();
  const auto* g_data = static_cast<const T*>(grad.data());
  T* vhat_data = vhat != nullptr ? Data<T>(*vhat) : nullptr;
  WithDenseRule(variant, [&](auto rule) {
    RunGrid(threads, [&](GridPosition g) {
      gpu::DenseBody<T, decltype(rule)>(g, Data<T>(var), Data<T>(m), Data<T>(v), vhat_data, g_data,
                                        var.size(), step);
    });
  });
}

// As the GPU functor and LaunchSparse do: segments sorted on the host and packed into one array,
// the duplicate rows (and v terms, when given: `v_term` is None or an array laid out as grad)
// summed, then the lazy or all-rows update.
template <typename T>
void SparseTyped(py::array& var, py::array& m, py::array& v, py::array* vhat, const py::array& grad,
                 const py::object& v_term, const py::array_t<int64_t>& indices, const Hyper& h,
                 bool lazy, const Variant& variant, int64_t threads) {
  using C = OpMathT<T>;
  const int64_t n = indices.size();
  const int64_t rows = var.ndim() == 0 ? 1 : var.shape(0);
  const int64_t row_size = rows == 0 ? 0 : var.size() / rows;
  const SortedSegments sorted = SortIntoSegments(indices.data(), n);
  const std::vector<int64_t> packed =
      gpu::PackSegments(sorted.order, sorted.segment_starts, sorted.unique_rows);
  const gpu::SparseSegments s = gpu::PackedSegmentsAt(packed.data(), n, sorted.unique());
  std::vector<C> summed(static_cast<size_t>(s.unique * row_size));
  const auto* grad_data = static_cast<const T*>(grad.data());
  RunGrid(threads, [&](GridPosition g) {
    gpu::SumSegmentsBody<T>(g, grad_data, s, row_size, summed.data());
  });
  std::vector<C> summed_v_term;
  if (!v_term.is_none()) {
    const py::array v_term_array = v_term.cast<py::array>();
    if (!v_term_array.dtype().is(grad.dtype()) || v_term_array.size() != grad.size()) {
      throw py::value_error("v_term must be laid out as grad (same dtype and size)");
    }
    summed_v_term.resize(summed.size());
    const auto* v_term_data = static_cast<const T*>(v_term_array.data());
    RunGrid(threads, [&](GridPosition g) {
      gpu::SumSegmentsBody<T>(g, v_term_data, s, row_size, summed_v_term.data());
    });
  }
  const C* v_terms = v_term.is_none() ? nullptr : summed_v_term.data();
  const AdamStep<C> step = h.Step<C>();
  T *var_t = Data<T>(var), *m_t = Data<T>(m), *v_t = Data<T>(v);
  T* vhat_t = vhat != nullptr ? Data<T>(*vhat) : nullptr;
  const C* sums = summed.data();
  WithSparseRule(variant, [&](auto rule) {
    using R = decltype(rule);
    RunGrid(threads, [&](GridPosition g) {
      if (lazy) {
        gpu::SparseLazyBody<T, R>(g, var_t, m_t, v_t, vhat_t, row_size, s, sums, v_terms, step);
      } else {
        gpu::SparseAllRowsBody<T, R>(g, var_t, m_t, v_t, vhat_t, rows, row_size, s, sums, v_terms,
                                     step);
      }
    });
  });
}

// 8-bit states as the launchers get them: [m_codes, m_absmax, v_codes, v_absmax] and, for AMSGrad,
// [vhat_codes, vhat_absmax] after them (uint8 codes of var's size, float32 scales).
eight_bit::States8bit StatesOf(std::vector<py::array>& states) {
  if (states.size() != 4 && states.size() != 6) {
    throw py::value_error("states are m_codes, m_absmax, v_codes, v_absmax (and vhat's two)");
  }
  auto codes = [&](int k) { return static_cast<uint8_t*>(states[k].mutable_data()); };
  auto scales = [&](int k) { return static_cast<float*>(states[k].mutable_data()); };
  eight_bit::States8bit s{&eight_bit::SignedCodebook(), &eight_bit::UnsignedCodebook(), codes(0),
                          scales(1), codes(2), scales(3)};
  if (states.size() == 6) {
    s.vhat_codes = codes(4);
    s.vhat_absmax = scales(5);
  }
  return s;
}

template <typename T>
void Dense8bitTyped(py::array& var, const py::array& grad, std::vector<py::array>& states,
                    const Hyper& h, const Variant& variant, int64_t threads) {
  using C = OpMathT<T>;
  const AdamStep<C> step = h.Step<C>();
  const eight_bit::States8bit s = StatesOf(states);
  WithDenseRule(variant, [&](auto rule) {
    RunGrid(threads, [&](GridPosition g) {
      gpu::Dense8bitBody<T, decltype(rule)>(g, Data<T>(var), static_cast<const T*>(grad.data()), s,
                                            var.size(), step);
    });
  });
}

// As a GPU sparse 8-bit update would run: segments and sums as SparseTyped, the blocks to update
// listed on the host (lazy: BlocksOfRows; otherwise all), then one thread per listed block.
template <typename T>
void Sparse8bitTyped(py::array& var, const py::array& grad, const py::object& v_term,
                     const py::array_t<int64_t>& indices, std::vector<py::array>& states,
                     const Hyper& h, bool lazy, const Variant& variant, int64_t threads) {
  using C = OpMathT<T>;
  const int64_t n = indices.size();
  const int64_t rows = var.shape(0);
  const int64_t row_size = rows == 0 ? 0 : var.size() / rows;
  const SortedSegments sorted = SortIntoSegments(indices.data(), n);
  const std::vector<int64_t> packed =
      gpu::PackSegments(sorted.order, sorted.segment_starts, sorted.unique_rows);
  const gpu::SparseSegments seg = gpu::PackedSegmentsAt(packed.data(), n, sorted.unique());
  std::vector<C> summed(static_cast<size_t>(seg.unique * row_size));
  RunGrid(threads, [&](GridPosition g) {
    gpu::SumSegmentsBody<T>(g, static_cast<const T*>(grad.data()), seg, row_size, summed.data());
  });
  std::vector<C> summed_v_term;
  if (!v_term.is_none()) {
    const py::array term = v_term.cast<py::array>();
    summed_v_term.resize(summed.size());
    RunGrid(threads, [&](GridPosition g) {
      gpu::SumSegmentsBody<T>(g, static_cast<const T*>(term.data()), seg, row_size,
                              summed_v_term.data());
    });
  }
  std::vector<int64_t> blocks;
  if (lazy) {
    blocks = BlocksOfRows(sorted.unique_rows, row_size);
  } else {
    for (int64_t b = 0; b < eight_bit::BlockCount(rows * row_size); ++b) blocks.push_back(b);
  }
  const eight_bit::States8bit s = StatesOf(states);
  const AdamStep<C> step = h.Step<C>();
  const C* v_terms = v_term.is_none() ? nullptr : summed_v_term.data();
  WithSparseRule(variant, [&](auto rule) {
    RunGrid(threads, [&](GridPosition g) {
      gpu::Sparse8bitBody<T, decltype(rule)>(g, Data<T>(var), s, rows, row_size, blocks.data(),
                                             static_cast<int64_t>(blocks.size()), seg,
                                             summed.data(), v_terms, lazy, step);
    });
  });
}

// One dispatch over the NumPy dtype for each entry point.
template <typename Call>
void ByDtype(const py::array& var, Call call) {
  const std::string dtype = py::str(var.dtype().attr("name"));
  if (dtype == "float32") return call(float());
  if (dtype == "float64") return call(double());
  if (dtype == "float16") return call(Eigen::half());
  if (dtype == "bfloat16") return call(Eigen::bfloat16());
  throw py::type_error("the emulated kernels take float16, bfloat16, float32 and float64, got " +
                       dtype);
}

}  // namespace

void DefineGpuEmulation(py::module_& module) {
  // The arrays must be C-contiguous, of one dtype, var, m and v updated in place; no other checks
  // (the ops check their inputs before any kernel runs).
  module.def(
      "emulate_gpu_dense",
      [](py::array var, py::array m, py::array v, py::array grad, double beta1_power,
         double beta2_power, double lr, double beta1, double beta2, double epsilon,
         bool use_nesterov, bool powers_are_double, std::optional<py::array> vhat,
         std::optional<double> weight_decay, bool weight_decay_times_lr, int64_t threads) {
        const Hyper h{beta1_power, beta2_power, lr,  beta1,
                      beta2,       epsilon,     powers_are_double, weight_decay};
        const Variant variant = VariantOf(use_nesterov, false, vhat.has_value(), h,
                                          weight_decay_times_lr);
        ByDtype(var, [&](auto t) {
          DenseTyped<decltype(t)>(var, m, v, vhat ? &*vhat : nullptr, grad, h, variant, threads);
        });
      },
      py::arg("var"), py::arg("m"), py::arg("v"), py::arg("grad"), py::arg("beta1_power"),
      py::arg("beta2_power"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
      py::arg("epsilon"), py::kw_only(), py::arg("use_nesterov") = false,
      py::arg("powers_are_double") = false, py::arg("vhat") = py::none(),
      py::arg("weight_decay") = py::none(), py::arg("weight_decay_times_lr") = false,
      py::arg("threads"),
      "The dense GPU kernel's body over a grid of `threads` threads, on the CPU, in place.");
  module.def(
      "emulate_gpu_multi",
      [](std::vector<py::array> vars, std::vector<py::array> ms, std::vector<py::array> vs,
         std::vector<py::array> grads, double beta1_power, double beta2_power, double lr,
         double beta1, double beta2, double epsilon, bool use_nesterov, bool powers_are_double,
         std::optional<std::vector<py::array>> vhats, std::optional<double> weight_decay,
         bool weight_decay_times_lr, int64_t threads) {
        if (vars.empty() || ms.size() != vars.size() || vs.size() != vars.size() ||
            grads.size() != vars.size() || (vhats && vhats->size() != vars.size())) {
          throw py::value_error("vars, ms, vs, grads (and vhats) must be lists of one non-zero length");
        }
        const Hyper h{beta1_power, beta2_power, lr,  beta1,
                      beta2,       epsilon,     powers_are_double, weight_decay};
        const Variant variant = VariantOf(use_nesterov, false, vhats.has_value(), h,
                                          weight_decay_times_lr);
        ByDtype(vars[0], [&](auto t) {
          MultiTyped<decltype(t)>(vars, ms, vs, vhats ? &*vhats : nullptr, grads, h, variant,
                                  threads);
        });
      },
      py::arg("vars"), py::arg("ms"), py::arg("vs"), py::arg("grads"), py::arg("beta1_power"),
      py::arg("beta2_power"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
      py::arg("epsilon"), py::kw_only(), py::arg("use_nesterov") = false,
      py::arg("powers_are_double") = false, py::arg("vhats") = py::none(),
      py::arg("weight_decay") = py::none(), py::arg("weight_decay_times_lr") = false,
      py::arg("threads"),
      "The multi-tensor GPU launches (48 tensors each) over grids of `threads`, on the CPU.");
  module.def(
      "emulate_gpu_sparse",
      [](py::array var, py::array m, py::array v, py::array grad, py::array_t<int64_t> indices,
         double beta1_power, double beta2_power, double lr, double beta1, double beta2,
         double epsilon, bool lazy, bool scale_first, bool powers_are_double, py::object v_term,
         std::optional<py::array> vhat, std::optional<double> weight_decay,
         bool weight_decay_times_lr, int64_t threads) {
        const Hyper h{beta1_power, beta2_power, lr,  beta1,
                      beta2,       epsilon,     powers_are_double, weight_decay};
        const Variant variant = VariantOf(false, scale_first, vhat.has_value(), h,
                                          weight_decay_times_lr);
        ByDtype(var, [&](auto t) {
          SparseTyped<decltype(t)>(var, m, v, vhat ? &*vhat : nullptr, grad, v_term, indices, h,
                                   lazy, variant, threads);
        });
      },
      py::arg("var"), py::arg("m"), py::arg("v"), py::arg("grad"), py::arg("indices"),
      py::arg("beta1_power"), py::arg("beta2_power"), py::arg("lr"), py::arg("beta1"),
      py::arg("beta2"), py::arg("epsilon"), py::kw_only(), py::arg("lazy") = false,
      py::arg("scale_first") = false, py::arg("powers_are_double") = false,
      py::arg("v_term") = py::none(), py::arg("vhat") = py::none(),
      py::arg("weight_decay") = py::none(), py::arg("weight_decay_times_lr") = false,
      py::arg("threads"),
      "The sparse GPU kernels (segment sums, then lazy or all-rows update) over grids of "
      "`threads`, on the CPU, in place; indices must be valid (the op checks them first).");
  module.def(
      "emulate_gpu_dense_8bit",
      [](py::array var, py::array grad, std::vector<py::array> states, double beta1_power,
         double beta2_power, double lr, double beta1, double beta2, double epsilon,
         bool use_nesterov, std::optional<double> weight_decay, bool weight_decay_times_lr,
         int64_t threads) {
        const Hyper h{beta1_power, beta2_power, lr, beta1, beta2, epsilon, false, weight_decay};
        const Variant variant = VariantOf(use_nesterov, false, states.size() == 6, h,
                                          weight_decay_times_lr);
        ByDtype(var, [&](auto t) {
          Dense8bitTyped<decltype(t)>(var, grad, states, h, variant, threads);
        });
      },
      py::arg("var"), py::arg("grad"), py::arg("states"), py::arg("beta1_power"),
      py::arg("beta2_power"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
      py::arg("epsilon"), py::kw_only(), py::arg("use_nesterov") = false,
      py::arg("weight_decay") = py::none(), py::arg("weight_decay_times_lr") = false,
      py::arg("threads"),
      "The dense 8-bit GPU kernel's body (one thread per block of 256) over a grid, on the CPU.");
  module.def(
      "emulate_gpu_sparse_8bit",
      [](py::array var, py::array grad, py::array_t<int64_t> indices, std::vector<py::array> states,
         double beta1_power, double beta2_power, double lr, double beta1, double beta2,
         double epsilon, bool lazy, bool dense_rule, py::object v_term,
         std::optional<double> weight_decay, bool weight_decay_times_lr, int64_t threads) {
        const Hyper h{beta1_power, beta2_power, lr, beta1, beta2, epsilon, false, weight_decay};
        Variant variant = VariantOf(false, false, states.size() == 6, h, weight_decay_times_lr);
        variant.dense_rule = dense_rule;
        ByDtype(var, [&](auto t) {
          Sparse8bitTyped<decltype(t)>(var, grad, v_term, indices, states, h, lazy, variant,
                                       threads);
        });
      },
      py::arg("var"), py::arg("grad"), py::arg("indices"), py::arg("states"),
      py::arg("beta1_power"), py::arg("beta2_power"), py::arg("lr"), py::arg("beta1"),
      py::arg("beta2"), py::arg("epsilon"), py::kw_only(), py::arg("lazy") = false,
      py::arg("dense_rule") = false, py::arg("v_term") = py::none(),
      py::arg("weight_decay") = py::none(), py::arg("weight_decay_times_lr") = false,
      py::arg("threads"),
      "The sparse 8-bit GPU kernels (segment sums, then one thread per listed block), on the CPU.");
}

}  // namespace tf_adam_op

PYBIND11_MODULE(_gpu_emulation, module) {
  module.doc() = "The CUDA kernels' bodies run on the CPU (tests only)";
  tf_adam_op::DefineGpuEmulation(module);
}
