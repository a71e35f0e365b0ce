// CheckIndicesInRange under XLA: its XLA kernel (one custom call over every index vector of the
// step) and the call's CPU handler; the GPU handler is in gpu_custom_calls.cc. Its float32 1.0 is
// the data every sparse update of the step waits for (the optimizers multiply their learning rate
// by it): XLA orders by data only and has no assertions, and each sparse update's own call checks
// only its own indices, after another sparse update of the step may have written.
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_split.h"
#include "kernels/indices_in_range.h"
#include "xla/call_operands.h"
#include "xla/custom_calls.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"
#include "xla/xla_kernel_common.h"

namespace tf_adam_op {
namespace {

namespace ffi = ::xla::ffi;
using xla_kernels::Attributes;
using xla_kernels::JitDevices;
using xla_kernels::StringListAttribute;
using xla_kernels::XlaOpKernel;
using xla_kernels::XlaOpKernelContext;

class CheckIndicesInRangeXlaOp : public XlaOpKernel {
 public:
  explicit CheckIndicesInRangeXlaOp(xla_kernels::OpKernelConstruction* ctx) : XlaOpKernel(ctx) {
    std::vector<std::string> names;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("names", &names));
    attributes_ = Attributes({}, {StringListAttribute(xla_calls::kAttrNames, names)});
  }

  void Compile(XlaOpKernelContext* ctx) override {
    std::vector<xla::XlaOp> operands;
    std::vector<xla_kernels::TensorShape> shapes;
    OP_REQUIRES_OK(ctx, ctx->InputList("indices", &operands, &shapes));
    operands.push_back(ctx->Input("rows"));
    ctx->SetOutput(0, xla::CustomCall(ctx->builder(), xla_calls::kCheckIndicesTarget, operands,
                                      xla::ShapeUtil::MakeShape(xla::F32, {}), attributes_,
                                      /*has_side_effect=*/false, /*output_operand_aliasing=*/{},
                                      /*literal=*/nullptr, xla::CustomCallSchedule::SCHEDULE_NONE,
                                      xla::CustomCallApiVersion::API_VERSION_TYPED_FFI));
  }

 private:
  std::string attributes_;
};

REGISTER_XLA_OP(Name("CheckIndicesInRange").Device(JitDevices()), CheckIndicesInRangeXlaOp);

// As adam_xla_kernels.cc: registered directly when XLA built its kernels before the import.
[[maybe_unused]] const bool registered_late = [] {
  if (!xla_kernels::XlaKernelsAlreadyBuilt()) return false;
  xla_kernels::RegisterDirectly<CheckIndicesInRangeXlaOp>(
      "CheckIndicesInRange", "CheckIndicesInRangeXlaOp", /*has_indices=*/false,
      /*has_type=*/false);
  return true;
}();

// The CPU handler: every operand is in host memory.
ffi::Error CheckIndices(ffi::RemainingArgs args, ffi::Result<ffi::AnyBuffer> one,
                        std::string_view names) {
  if (args.size() < 2) return xla_calls::Internal("missing operands");
  std::vector<IndexList> lists;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    auto indices = args.get<ffi::AnyBuffer>(i);
    if (!indices.has_value()) return xla_calls::Internal("missing indices");
    lists.push_back({indices->untyped_data(), indices->element_type() == ffi::DataType::S64,
                     static_cast<int64_t>(indices->element_count())});
  }
  auto rows = args.get<ffi::AnyBuffer>(args.size() - 1);
  if (!rows.has_value()) return xla_calls::Internal("missing rows");
  const absl::Status valid = CheckIndexLists(
      lists, static_cast<const int64_t*>(rows->untyped_data()), absl::StrSplit(names, '\n'));
  if (!valid.ok()) return ffi::Error::InvalidArgument(std::string(valid.message()));
  *static_cast<float*>(one->untyped_data()) = 1.0f;
  return ffi::Error::Success();
}

}  // namespace
}  // namespace tf_adam_op

XLA_FFI_DEFINE_HANDLER(kTfAdamOpCheckIndicesCpu, ::tf_adam_op::CheckIndices,
                       ::xla::ffi::Ffi::Bind()
                           .RemainingArgs()
                           .Ret<::xla::ffi::AnyBuffer>()
                           .Attr<std::string_view>(::tf_adam_op::xla_calls::kAttrNames));
XLA_FFI_REGISTER_HANDLER(XLA_FFI_GetApi(), ::tf_adam_op::xla_calls::kCheckIndicesTarget, "Host",
                         kTfAdamOpCheckIndicesCpu);
