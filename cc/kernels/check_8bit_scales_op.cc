// Check8bitScales: whether each of N scale vectors of 8-bit states holds only scales a step can
// leave (core/blockwise_8bit.h, ValidScale). Check8bitScaleValues: the same over the values, for
// XLA steps (its XLA kernel: adam_8bit_xla_kernels.cc), an error naming the first corrupt block.
// The optimizers run Check8bitScales over every 8-bit state of a step before the step's first
// write (_step/checks.py, scale_guards): each update op checks its own scales, but an earlier op
// of the same step would already have written. One op for all the states, because a read and a
// reduction per state cost an eager step more than its updates.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

#include "core/blockwise_8bit.h"
#include "kernels/adam_8bit_functors.h"  // HostScales
#include "kernels/corrupt_scales.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/tensor_shape.h"
#if TF_ADAM_OP_WITH_CUDA
#include "kernels/gpu_8bit_functors.h"
#endif

namespace tf_adam_op {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::Var;

template <typename Device>
class Check8bitScalesOp : public OpKernel {
 public:
  explicit Check8bitScalesOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& handles = context->input(0);
    OP_REQUIRES(context, tensorflow::TensorShapeUtils::IsVector(handles.shape()),
                absl::InvalidArgumentError(absl::StrCat(
                    "scales must be a vector of handles, got shape ",
                    handles.shape().DebugString())));
    const int64_t n = handles.NumElements();
    Tensor* valid = nullptr;
    OP_REQUIRES_OK(context,
                   context->allocate_output(0, tensorflow::TensorShape({n}), &valid));
    for (int64_t i = 0; i < n; ++i) {
      tensorflow::core::RefCountPtr<Var> var;
      OP_REQUIRES_OK(context, tensorflow::LookupResource(
                                  context, handles.flat<tensorflow::ResourceHandle>()(i), &var));
      tensorflow::tf_shared_lock lock(*var->mu());
      const Tensor& scales = *var->tensor();
      OP_REQUIRES(context, scales.dtype() == tensorflow::DT_FLOAT,
                  absl::InvalidArgumentError(absl::StrCat(
                      "scales[", i, "] must be float32 scales of 8-bit states, got ",
                      tensorflow::DataTypeString(scales.dtype()))));
      std::vector<float> copy;
      const float* data = nullptr;
      OP_REQUIRES_OK(context, functor::HostScales<Device>()(context, scales, &copy, &data));
      valid->vec<bool>()(i) = eight_bit::FirstInvalidScale(data, scales.NumElements()) < 0;
    }
  }
};

// The CPU kernel of the op XLA steps run as a custom call (cpu_8bit_custom_calls.cc gives the
// same error): here for a step built for XLA but run without it, and to be tested eagerly.
class Check8bitScaleValuesOp : public OpKernel {
 public:
  explicit Check8bitScaleValuesOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("names", &names_));
  }

  void Compute(OpKernelContext* context) override {
    for (int i = 0; i < context->num_inputs(); ++i) {
      const auto scales = context->input(i).flat<float>();
      const int64_t bad = eight_bit::FirstInvalidScale(scales.data(), scales.size());
      OP_REQUIRES(context, bad < 0,
                  absl::InvalidArgumentError(
                      eight_bit::CorruptScaleMessage(names_[i], bad, scales(bad))));
    }
    Tensor* one = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, tensorflow::TensorShape({}), &one));
    one->scalar<float>()() = 1.0f;
  }

 private:
  std::vector<std::string> names_;
};

REGISTER_KERNEL_BUILDER(Name("Check8bitScaleValues").Device(tensorflow::DEVICE_CPU),
                        Check8bitScaleValuesOp);

// The handles and the result in host memory on every device (a GPU's scales are copied to the
// host to be read, as the update ops read them).
REGISTER_KERNEL_BUILDER(Name("Check8bitScales").Device(tensorflow::DEVICE_CPU),
                        Check8bitScalesOp<CPUDevice>);
#if TF_ADAM_OP_WITH_CUDA
REGISTER_KERNEL_BUILDER(
    Name("Check8bitScales").Device(tensorflow::DEVICE_GPU).HostMemory("scales").HostMemory("valid"),
    Check8bitScalesOp<GpuDevice>);
#endif

}  // namespace
}  // namespace tf_adam_op
