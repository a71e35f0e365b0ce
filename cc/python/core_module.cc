// tf_adam_op._core: the Adam update rule of the op kernels, applied in place to NumPy arrays.
// Links no TensorFlow (only Eigen's half/bfloat16 headers), so it serves as a second reference in
// the tests and as a graph-free Adam step for users.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>
#include <utility>

#include "core/adam_update_rule.h"
#include "core/blockwise_8bit.h"
#include "core/codebook_pieces.h"
#include "core/low_precision.h"
#include "python/bandwidth_probe.h"

namespace py = pybind11;

namespace tf_adam_op {
namespace {

struct Hyperparameters {
  double beta1_power, beta2_power, lr, beta1, beta2, epsilon, weight_decay;
};

template <typename T>
void ApplyAdamTyped(py::array& var, py::array& m, py::array& v, py::array* vhat,
                    const py::array& grad, const Hyperparameters& h, const Variant& variant) {
  using C = OpMathT<T>;
  // Python floats are rounded to the arithmetic type once, as TF does when it converts them.
  AdamStep<C> step = MakeAdamStep<C>(C(h.beta1_power), C(h.beta2_power), C(h.lr), C(h.beta1),
                                     C(h.beta2), C(h.epsilon));
  step.weight_decay = C(h.weight_decay);
  T* var_data = static_cast<T*>(var.mutable_data());
  T* m_data = static_cast<T*>(m.mutable_data());
  T* v_data = static_cast<T*>(v.mutable_data());
  T* vhat_data = vhat != nullptr ? static_cast<T*>(vhat->mutable_data()) : nullptr;
  const T* grad_data = static_cast<const T*>(grad.data());
  const int64_t size = var.size();
  py::gil_scoped_release release;
  AdamUpdateRange<T>(variant, var_data, m_data, v_data, vhat_data, grad_data, 0, size, step);
}

void CheckOperand(const py::array& array, const char* name, const py::array& var, bool writable) {
  if (!array.dtype().is(var.dtype())) {
    throw py::type_error(std::string(name) + " has dtype " + py::str(array.dtype()).cast<std::string>() +
                         " but var has " + py::str(var.dtype()).cast<std::string>());
  }
  if (array.ndim() != var.ndim() ||
      !std::equal(array.shape(), array.shape() + array.ndim(), var.shape())) {
    throw py::value_error(std::string("var and ") + name + " do not have the same shape: " +
                          py::str(var.attr("shape")).cast<std::string>() + " vs " +
                          py::str(array.attr("shape")).cast<std::string>());
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + " must be C-contiguous");
  }
  if (writable && !array.writeable()) {
    throw py::value_error(std::string(name) + " must be writeable (it is updated in place)");
  }
  // The kernels read and write the machine's byte order: a byte-swapped array would be garbage.
  if (!array.dtype().attr("isnative").cast<bool>()) {
    throw py::value_error(std::string(name) + " is not in the machine's byte order (dtype " +
                          py::str(array.dtype()).cast<std::string>() +
                          "): convert it with .astype(" + name + ".dtype.newbyteorder('='))");
  }
}

// Whether two C-contiguous arrays share any byte (a view such as m = var[:] counts).
bool Overlap(const py::array& a, const py::array& b) {
  const char* a_begin = static_cast<const char*>(a.data());
  const char* b_begin = static_cast<const char*>(b.data());
  const py::ssize_t a_bytes = a.nbytes(), b_bytes = b.nbytes();
  if (a_bytes == 0 || b_bytes == 0) return false;
  return a_begin < b_begin + b_bytes && b_begin < a_begin + a_bytes;
}

// var, m, v, vhat and grad must not share memory: the update reads each while it writes the others.
void CheckNoAliasing(const std::vector<std::pair<const char*, const py::array*>>& arrays) {
  for (size_t i = 0; i < arrays.size(); ++i) {
    for (size_t j = i + 1; j < arrays.size(); ++j) {
      if (Overlap(*arrays[i].second, *arrays[j].second)) {
        throw py::value_error(std::string(arrays[i].first) + " and " + arrays[j].first +
                              " share memory; var, m, v, vhat and grad must be distinct arrays");
      }
    }
  }
}

void ApplyAdam(py::array var, py::array m, py::array v, py::array grad, double beta1_power,
               double beta2_power, double lr, double beta1, double beta2, double epsilon,
               bool use_nesterov, std::optional<py::array> vhat,
               std::optional<double> weight_decay, bool weight_decay_times_lr) {
  CheckOperand(var, "var", var, /*writable=*/true);
  CheckOperand(m, "m", var, /*writable=*/true);
  CheckOperand(v, "v", var, /*writable=*/true);
  CheckOperand(grad, "grad", var, /*writable=*/false);
  std::vector<std::pair<const char*, const py::array*>> arrays = {
      {"var", &var}, {"m", &m}, {"v", &v}, {"grad", &grad}};
  py::array* vhat_array = vhat ? &*vhat : nullptr;
  if (vhat_array != nullptr) {
    CheckOperand(*vhat_array, "vhat", var, /*writable=*/true);
    arrays.push_back({"vhat", vhat_array});
  }
  CheckNoAliasing(arrays);
  Variant variant;
  variant.nesterov = use_nesterov;
  variant.amsgrad = vhat_array != nullptr;
  variant.weight_decay = !weight_decay          ? WeightDecay::kNone
                         : weight_decay_times_lr ? WeightDecay::kTimesVarLr
                                                 : WeightDecay::kTimesVar;
  const Hyperparameters h{beta1_power, beta2_power, lr, beta1, beta2, epsilon,
                          weight_decay.value_or(0.0)};
  const std::string dtype = py::str(var.dtype().attr("name"));
  if (dtype == "float32") {
    ApplyAdamTyped<float>(var, m, v, vhat_array, grad, h, variant);
  } else if (dtype == "float64") {
    ApplyAdamTyped<double>(var, m, v, vhat_array, grad, h, variant);
  } else if (dtype == "float16") {
    ApplyAdamTyped<Eigen::half>(var, m, v, vhat_array, grad, h, variant);
  } else if (dtype == "bfloat16") {  // ml_dtypes.bfloat16, TF's NumPy bfloat16
    ApplyAdamTyped<Eigen::bfloat16>(var, m, v, vhat_array, grad, h, variant);
  } else {
    throw py::type_error("apply_adam supports float16, bfloat16, float32 and float64, got " +
                         dtype);
  }
}

const eight_bit::Codebook& BookOf(bool is_signed) {
  return is_signed ? eight_bit::SignedCodebook() : eight_bit::UnsignedCodebook();
}

// Flat float32 values -> (codes, absmax per block of 256), the kernels' encoder.
// C: the arithmetic type the kernels encode a state in (float, or double for float64 variables).
template <typename C>
std::pair<py::array_t<uint8_t>, py::array_t<float>> QuantizeBlockwise(
    py::array_t<C, py::array::c_style | py::array::forcecast> x, bool is_signed) {
  const int64_t n = x.size();
  py::array_t<uint8_t> codes(n);
  py::array_t<float> absmax(eight_bit::BlockCount(n));
  const C* data = x.data();
  for (int64_t b = 0; b < eight_bit::BlockCount(n); ++b) {
    const int64_t offset = b * eight_bit::kBlockSize;
    const int64_t count = std::min<int64_t>(eight_bit::kBlockSize, n - offset);
    absmax.mutable_data()[b] = eight_bit::EncodeBlock<C>(BookOf(is_signed), data + offset, count,
                                                         codes.mutable_data() + offset);
  }
  return {codes, absmax};
}

}  // namespace
}  // namespace tf_adam_op

PYBIND11_MODULE(_core, module) {
  module.doc() = "The tf_adam_op update rule on NumPy arrays (no TensorFlow linked).";
  module.def("apply_adam", &tf_adam_op::ApplyAdam, py::arg("var"), py::arg("m"), py::arg("v"),
             py::arg("grad"), py::arg("beta1_power"), py::arg("beta2_power"), py::arg("lr"),
             py::arg("beta1"), py::arg("beta2"), py::arg("epsilon"), py::kw_only(),
             py::arg("use_nesterov") = false, py::arg("vhat") = py::none(),
             py::arg("weight_decay") = py::none(), py::arg("weight_decay_times_lr") = false,
             "One Adam step in place on var, m and v (and vhat: AMSGrad), with the op kernel's "
             "arithmetic and rounding; weight_decay: decoupled, var * wd (or var * wd * lr).");
  module.def(
      "bandwidth_probe",
      [](int64_t num_elements, int threads, int repeats) {
        py::gil_scoped_release release;
        return tf_adam_op::BandwidthProbe(num_elements, threads, repeats);
      },
      py::arg("num_elements"), py::arg("threads"), py::arg("repeats") = 5,
      "Seconds per pass of a stream with an Adam step's traffic (28 bytes per float32 element).");
  module.def(
      "dynamic_map",
      [](bool is_signed) {
        const float* map = is_signed ? tf_adam_op::eight_bit::kSignedDynamicMap
                                     : tf_adam_op::eight_bit::kUnsignedDynamicMap;
        return py::array_t<float>(256, map);
      },
      py::arg("signed"), "bitsandbytes' dynamic map the 8-bit states use (signed: m; else v).");
  module.def("quantize_blockwise", &tf_adam_op::QuantizeBlockwise<float>, py::arg("x"),
             py::arg("signed"),
             "Flat float32 values -> (uint8 codes, float32 absmax per block of 256): the encoder "
             "of the 8-bit states.");
  module.def("quantize_blockwise_float64", &tf_adam_op::QuantizeBlockwise<double>, py::arg("x"),
             py::arg("signed"),
             "quantize_blockwise in float64, as the kernels encode a float64 variable's states "
             "(the absmax rounded to float32, the values scaled in float64).");
  module.def(
      "codebook_is_exact",
      [](bool is_signed) { return tf_adam_op::BookOf(is_signed).exact; }, py::arg("signed"),
      "Whether every cell of the encoder's table holds at most one midpoint (its exactness).");
  module.def(
      "codebook_pieces_fit",
      [](bool is_signed) { return tf_adam_op::eight_bit::PiecesOf(is_signed).fits; },
      py::arg("signed"),
      "Whether the map's midpoints fit the affine pieces the AVX-512 encoder computes codes with.");
  module.def("build_info", []() {
    py::dict info;
    info["tf_version"] = TF_ADAM_OP_TF_VERSION;
    info["compiler"] = TF_ADAM_OP_COMPILER;
    info["cuda_kernels_built"] = static_cast<bool>(TF_ADAM_OP_CUDA_BUILT);
    return info;
  });
}
