// SparseApplyAdamV1 / ResourceSparseApplyAdamV1: the OpKernel, the CPU functor, the registrations.
#define EIGEN_USE_THREADS

#include "kernels/sparse_apply_adam_v1.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "kernels/adam_kernel_common.h"
#include "kernels/apply_adam_v1.h"  // the dtype list
#include "kernels/cpu_updates.h"
#include "kernels/training_variables.h"
#if TF_ADAM_OP_WITH_CUDA
#include "kernels/gpu_functors.h"
#endif
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


}  // namespace

namespace functor {

template <typename T>
struct SparseApplyAdamV1<CPUDevice, T> {
  using C = OpMathT<T>;

  absl::Status operator()(OpKernelContext* ctx, T* var, T* m, T* v, T* vhat, int64_t rows,
                          int64_t row_size, const T* grad, const T* v_term,
                          const SortedSegments& segments, const ScalarPointers& scalars, bool lazy,
                          const Variant& variant) const {
    CpuSparseUpdate<T>(ctx->eigen_device<CPUDevice>(), var, m, v, vhat, rows, row_size, grad,
                       v_term, segments, LoadStep<C>(scalars), lazy, variant);
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
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale_first", &variant_.scale_first));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("dense_rule", &variant_.dense_rule));
    OP_REQUIRES_OK(ctx, ReadVariantAttrs(ctx, "n_vhat", &variant_));
    OP_REQUIRES_OK(ctx, OptionalInputIndex(*this, "vhat", &vhat_input_));
    OP_REQUIRES_OK(ctx, CheckScalarAttr<T>(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    TrainingVariables vars(&CopyDeviceBuffer<Device>);
    std::vector<VariableInput> inputs = {{0, "var"}, {1, "m"}, {2, "v"}};
    if (variant_.amsgrad) inputs.push_back({vhat_input_, "vhat"});
    OP_REQUIRES_OK(ctx, vars.Acquire(ctx, std::move(inputs), DataTypeToEnum<T>::value,
                                     use_locking_, UpdateKind::kSparse));
    OP_REQUIRES_OK(ctx, CheckScalarInputs(ctx));
    OP_REQUIRES_OK(ctx, CheckSameShapeAsVar(vars));
    const Tensor& var = vars.tensor(0);
    const Tensor& grad = ctx->input(kGradInput);
    const Tensor& indices = ctx->input(kIndicesInput);
    OP_REQUIRES_OK(ctx, CheckSparseShapes(var.shape(), grad.shape(), indices.shape()));
    tensorflow::OpInputList v_terms;
    OP_REQUIRES_OK(ctx, ctx->input_list("v_term", &v_terms));
    OP_REQUIRES(ctx, v_terms.size() <= 1,
                absl::InvalidArgumentError(absl::StrCat(
                    "v_term takes at most one tensor, got ", v_terms.size())));
    const T* v_term = nullptr;
    if (v_terms.size() == 1) {
      OP_REQUIRES(ctx, v_terms[0].shape() == grad.shape(),
                  absl::InvalidArgumentError(absl::StrCat(
                      "v_term must have grad's shape: v_term ", v_terms[0].shape().DebugString(),
                      ", grad ", grad.shape().DebugString())));
      v_term = v_terms[0].flat<T>().data();
    }
    // The dense form's v term is g * g per gradient row, summed like grad: it must be given (as a
    // tensor: with no gradient rows it is empty, and its data pointer may be null).
    OP_REQUIRES(ctx, !variant_.dense_rule || v_terms.size() == 1,
                absl::InvalidArgumentError(
                    "dense_rule=true needs v_term: the square of each gradient row (the dense "
                    "form sums the duplicates' squares, as Keras 3 does)"));
    ScalarPointers scalars = ScalarInputPointers<T>(ctx);
    OP_REQUIRES_OK(ctx, WeightDecayPointer(ctx, &scalars.weight_decay));
    OP_REQUIRES_OK(ctx, OneMinusBetaPointers(ctx, &scalars));
    // No copy-on-write here: Acquire put resource variables in copy-on-read mode, as stock does
    // for sparse updates, so readers copy and never see a half-written row.
    const int64_t rows = var.dim_size(0);
    const int64_t n = indices.NumElements();
    // Indices are in host memory on every device (the GPU kernel declares them HostMemory).
    const Tindex* index_data = indices.vec<Tindex>().data();
    OP_REQUIRES_OK(ctx, ValidateIndices(index_data, n, rows));
    if (var.NumElements() > 0) {
      const SortedSegments segments = SortIntoSegments(index_data, n);
      T* vhat = variant_.amsgrad ? vars.mutable_tensor(3).flat<T>().data() : nullptr;
      OP_REQUIRES_OK(ctx, functor::SparseApplyAdamV1<Device, T>()(
                              ctx, vars.mutable_tensor(0).flat<T>().data(),
                              vars.mutable_tensor(1).flat<T>().data(),
                              vars.mutable_tensor(2).flat<T>().data(), vhat, rows,
                              var.NumElements() / std::max<int64_t>(rows, 1),
                              grad.flat<T>().data(), v_term, segments, scalars, lazy_, variant_));
    }
    if (ctx->input_dtype(0) != DT_RESOURCE) ctx->forward_ref_input_to_ref_output(0, 0);
  }

 private:
  bool use_locking_;
  bool lazy_;
  Variant variant_;
  int vhat_input_ = -1;
};

// One registration per device. Indices are read in host memory on every device: they are
// validated and grouped on the host, exactly as on the CPU, before anything is written (stock's GPU
// kernel silently skips bad indices instead). Resource handles are host memory too.
#define TF_ADAM_OP_REGISTER_INDEX(DEVICE_NAME, DeviceTag, T, Tindex)                       \
  REGISTER_KERNEL_BUILDER(Name("SparseApplyAdamV1")                                        \
                              .Device(DEVICE_NAME)                                         \
                              .HostMemory("indices")                                       \
                              .TypeConstraint<T>("T")                                      \
                              .TypeConstraint<Tindex>("Tindices"),                         \
                          SparseApplyAdamV1Op<DeviceTag, T, Tindex>);                      \
  REGISTER_KERNEL_BUILDER(Name("ResourceSparseApplyAdamV1")                                \
                              .Device(DEVICE_NAME)                                         \
                              .HostMemory("var")                                           \
                              .HostMemory("m")                                             \
                              .HostMemory("v")                                             \
                              .HostMemory("vhat")                                          \
                              .HostMemory("indices")                                       \
                              .TypeConstraint<T>("T")                                      \
                              .TypeConstraint<Tindex>("Tindices"),                         \
                          SparseApplyAdamV1Op<DeviceTag, T, Tindex>);
#define TF_ADAM_OP_REGISTER(DEVICE_NAME, DeviceTag, T)                                     \
  TF_ADAM_OP_REGISTER_INDEX(DEVICE_NAME, DeviceTag, T, int32_t)                            \
  TF_ADAM_OP_REGISTER_INDEX(DEVICE_NAME, DeviceTag, T, int64_t)
TF_ADAM_OP_REGISTER_ON_EVERY_DEVICE
#undef TF_ADAM_OP_REGISTER
#undef TF_ADAM_OP_REGISTER_INDEX

}  // namespace tf_adam_op
