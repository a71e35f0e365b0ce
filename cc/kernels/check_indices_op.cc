// CheckIndicesInRange's CPU kernel: the op XLA steps run as a custom call (xla/check_indices_xla.cc
// gives the same error), here for a step built for XLA but run without it, and to be tested
// eagerly.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/indices_in_range.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace tf_adam_op {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;

class CheckIndicesInRangeOp : public OpKernel {
 public:
  explicit CheckIndicesInRangeOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("names", &names_));
    std::vector<tensorflow::DataType> types;
    OP_REQUIRES_OK(context, context->GetAttr("Tindices", &types));
    // (Eagerly no shape function runs: the kernel checks what it would.)
    OP_REQUIRES(context, names_.size() == types.size(),
                absl::InvalidArgumentError(absl::StrCat("names must name each of the ",
                                                        types.size(), " index vectors, got ",
                                                        names_.size(), " names")));
  }

  void Compute(OpKernelContext* context) override {
    tensorflow::OpInputList indices;
    OP_REQUIRES_OK(context, context->input_list("indices", &indices));
    const Tensor& rows = context->input(indices.size());
    OP_REQUIRES(context, rows.NumElements() == indices.size(),
                absl::InvalidArgumentError(absl::StrCat("rows must hold ", indices.size(),
                                                        " row counts, got ", rows.NumElements())));
    std::vector<IndexList> lists;
    for (int i = 0; i < indices.size(); ++i) {
      const Tensor& list = indices[i];
      OP_REQUIRES(context, list.dims() == 1,
                  absl::InvalidArgumentError(absl::StrCat(
                      "indices must be vectors, got shape ", list.shape().DebugString())));
      lists.push_back({list.data(), list.dtype() == tensorflow::DT_INT64, list.NumElements()});
    }
    OP_REQUIRES_OK(context, CheckIndexLists(lists, rows.flat<int64_t>().data(), names_));
    Tensor* one = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, tensorflow::TensorShape({}), &one));
    one->scalar<float>()() = 1.0f;
  }

 private:
  std::vector<std::string> names_;
};

REGISTER_KERNEL_BUILDER(Name("CheckIndicesInRange").Device(tensorflow::DEVICE_CPU),
                        CheckIndicesInRangeOp);

}  // namespace
}  // namespace tf_adam_op
