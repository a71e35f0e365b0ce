// SparseApplyAdamV1 / ResourceSparseApplyAdamV1: the OpKernel, the CPU functor, the registrations.
#define EIGEN_USE_THREADS

#include "kernels/sparse_apply_adam_v1.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "kernels/adam_kernel_common.h"
#include "kernels/apply_adam_v1.h"  // the dtype list
#include "kernels/training_variables.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace tf_adam_op {

using CPUDevice = Eigen::ThreadPoolDevice;
using ::tensorflow::DataTypeToEnum;
using ::tensorflow::DT_RESOURCE;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::TensorShape;
using ::tensorflow::TensorShapeUtils;

namespace {

constexpr int kIndicesInput = kGradInput + 1;

// The gradient with duplicate indices summed: row unique_rows[k] gets summed[k * row_size ...].
// Sums run in input order from zero, as stock's unsorted_segment_sum does, so they round alike.
template <typename C>
struct SummedGradient {
  std::vector<int64_t> unique_rows;  // ascending
  std::vector<C> summed;
};

template <typename T, typename Tindex, typename C = OpMathT<T>>
SummedGradient<C> SumDuplicates(const T* grad, const Tindex* indices, int64_t n, int64_t row_size) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), int64_t{0});
  // Stable: the positions of one index stay in input order, which is the summation order.
  std::stable_sort(order.begin(), order.end(),
                   [indices](int64_t a, int64_t b) { return indices[a] < indices[b]; });
  SummedGradient<C> result;
  for (int64_t start = 0; start < n;) {
    const int64_t row = static_cast<int64_t>(indices[order[start]]);
    result.unique_rows.push_back(row);
    const size_t offset = result.summed.size();
    result.summed.resize(offset + row_size, C(0));
    C* sum = result.summed.data() + offset;
    int64_t end = start;
    for (; end < n && static_cast<int64_t>(indices[order[end]]) == row; ++end) {
      const T* g = grad + order[end] * row_size;
      for (int64_t j = 0; j < row_size; ++j) sum[j] = sum[j] + static_cast<C>(g[j]);
    }
    start = end;
  }
  return result;
}

}  // namespace

namespace functor {

template <typename T, typename Tindex>
struct SparseApplyAdamV1<CPUDevice, T, Tindex> {
  using C = OpMathT<T>;
  using Scalar = typename tensorflow::TTypes<C>::ConstScalar;

  absl::Status operator()(tensorflow::OpKernelContext* ctx, const CPUDevice& d,
                          typename tensorflow::TTypes<T>::Matrix var,
                          typename tensorflow::TTypes<T>::Matrix m,
                          typename tensorflow::TTypes<T>::Matrix v, Scalar beta1_power,
                          Scalar beta2_power, Scalar lr, Scalar beta1, Scalar beta2, Scalar epsilon,
                          typename tensorflow::TTypes<T>::ConstMatrix grad,
                          typename tensorflow::TTypes<Tindex>::ConstVec indices, bool lazy,
                          bool scale_first) const {
    const int64_t rows = var.dimension(0);
    const int64_t row_size = var.dimension(1);
    const int64_t n = indices.size();
    // Every index before any write: a bad one anywhere leaves var, m and v untouched.
    for (int64_t i = 0; i < n; ++i) {
      const Tindex index = indices(i);
      if (index < 0 || static_cast<int64_t>(index) >= rows) {
        return absl::InvalidArgumentError(absl::StrCat("indices[", i, "] = ", index,
                                                       " is not in [0, ", rows, ")"));
      }
    }
    const AdamStep<C> step =
        MakeAdamStep(beta1_power(), beta2_power(), lr(), beta1(), beta2(), epsilon());
    const SummedGradient<C> g = SumDuplicates<T, Tindex>(grad.data(), indices.data(), n, row_size);
    T* var_data = var.data();
    T* m_data = m.data();
    T* v_data = v.data();
    const int64_t* unique_rows = g.unique_rows.data();
    const int64_t unique = static_cast<int64_t>(g.unique_rows.size());
    const C* summed = g.summed.data();
    auto row = [=](int64_t r, const C* grad_row) {
      AdamSparseRow<T, C>(scale_first, var_data + r * row_size, m_data + r * row_size, v_data + r * row_size,
                          grad_row, row_size, step);
    };
    const Eigen::TensorOpCost row_cost(3 * sizeof(T) * row_size, 3 * sizeof(T) * row_size,
                                       20 * row_size);
    if (lazy) {  // only the named rows
      ShardedFor(d, unique, unique * row_size, row_cost, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) row(unique_rows[k], summed + k * row_size);
      });
      return absl::OkStatus();
    }
    // Every row decays; the named ones also get their gradient. Each shard finds its first named
    // row by binary search, then walks rows and named rows together.
    ShardedFor(d, rows, rows * row_size, row_cost, [&](int64_t begin, int64_t end) {
      int64_t k = std::lower_bound(unique_rows, unique_rows + unique, begin) - unique_rows;
      for (int64_t r = begin; r < end; ++r) {
        const bool named = k < unique && unique_rows[k] == r;
        row(r, named ? summed + k * row_size : nullptr);
        if (named) ++k;
      }
    });
    return absl::OkStatus();
  }
};

}  // namespace functor

template <typename Device, typename T, typename Tindex>
class SparseApplyAdamV1Op : public OpKernel {
 public:
  explicit SparseApplyAdamV1Op(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_locking", &use_locking_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("lazy", &lazy_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale_first", &scale_first_));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, {{0, "var"}, {1, "m"}, {2, "v"}},
                                     DataTypeToEnum<T>::value, use_locking_, UpdateKind::kSparse));
    OP_REQUIRES_OK(ctx, CheckScalarInputs(ctx));
    OP_REQUIRES_OK(ctx, CheckSameShapeAsVar(vars));
    const Tensor& var = vars.tensor(0);
    OP_REQUIRES(ctx, TensorShapeUtils::IsVectorOrHigher(var.shape()),
                absl::InvalidArgumentError(absl::StrCat(
                    "var must be at least 1 dimensional for a sparse update, got shape ",
                    var.shape().DebugString())));
    const Tensor& grad = ctx->input(kGradInput);
    const Tensor& indices = ctx->input(kIndicesInput);
    OP_REQUIRES(ctx, TensorShapeUtils::IsVector(indices.shape()),
                absl::InvalidArgumentError(absl::StrCat("indices must be a vector, got shape ",
                                                        indices.shape().DebugString())));
    OP_REQUIRES(ctx, grad.dims() == var.dims(),
                absl::InvalidArgumentError(absl::StrCat(
                    "var and grad must have the same rank: var ", var.shape().DebugString(),
                    ", grad ", grad.shape().DebugString())));
    OP_REQUIRES(ctx, grad.dim_size(0) == indices.dim_size(0),
                absl::InvalidArgumentError(absl::StrCat(
                    "grad must have one row per index: grad ", grad.shape().DebugString(), ", ",
                    indices.dim_size(0), " indices")));
    for (int d = 1; d < var.dims(); ++d) {
      OP_REQUIRES(ctx, var.dim_size(d) == grad.dim_size(d),
                  absl::InvalidArgumentError(absl::StrCat(
                      "var and grad must have the same row shape (all but the first dimension): "
                      "var ", var.shape().DebugString(), ", grad ", grad.shape().DebugString())));
    }
    // No copy-on-write here: Acquire put resource variables in copy-on-read mode, as stock does
    // for sparse updates, so readers copy and never see a half-written row.
    if (var.NumElements() > 0 || indices.NumElements() > 0) {
      auto scalar = [ctx](int i) { return ScalarInput<T>(ctx, i); };
      OP_REQUIRES_OK(ctx, functor::SparseApplyAdamV1<Device, T, Tindex>()(
                              ctx, ctx->eigen_device<Device>(),
                              vars.mutable_tensor(0).flat_outer_dims<T>(),
                              vars.mutable_tensor(1).flat_outer_dims<T>(),
                              vars.mutable_tensor(2).flat_outer_dims<T>(), scalar(0), scalar(1),
                              scalar(2), scalar(3), scalar(4), scalar(5),
                              grad.flat_outer_dims<T>(), indices.vec<Tindex>(), lazy_,
                              scale_first_));
    }
    if (ctx->input_dtype(0) != DT_RESOURCE) ctx->forward_ref_input_to_ref_output(0, 0);
  }

 private:
  bool use_locking_;
  bool lazy_;
  bool scale_first_;
};

#define TF_ADAM_OP_REGISTER_SPARSE_CPU_INDEX(T, Tindex)                           \
  REGISTER_KERNEL_BUILDER(Name("SparseApplyAdamV1")                               \
                              .Device(tensorflow::DEVICE_CPU)                     \
                              .TypeConstraint<T>("T")                             \
                              .TypeConstraint<Tindex>("Tindices"),                \
                          SparseApplyAdamV1Op<CPUDevice, T, Tindex>);             \
  REGISTER_KERNEL_BUILDER(Name("ResourceSparseApplyAdamV1")                       \
                              .Device(tensorflow::DEVICE_CPU)                     \
                              .TypeConstraint<T>("T")                             \
                              .TypeConstraint<Tindex>("Tindices"),                \
                          SparseApplyAdamV1Op<CPUDevice, T, Tindex>);
#define TF_ADAM_OP_REGISTER_SPARSE_CPU(T)           \
  TF_ADAM_OP_REGISTER_SPARSE_CPU_INDEX(T, int32_t) \
  TF_ADAM_OP_REGISTER_SPARSE_CPU_INDEX(T, int64_t)
TF_ADAM_OP_FOR_EACH_TYPE(TF_ADAM_OP_REGISTER_SPARSE_CPU)
#undef TF_ADAM_OP_REGISTER_SPARSE_CPU
#undef TF_ADAM_OP_REGISTER_SPARSE_CPU_INDEX

}  // namespace tf_adam_op
