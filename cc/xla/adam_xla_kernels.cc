// XLA kernels (tf2xla) for the Adam ops on resource variables: each reads its variables as
// TensorFlow's own XLA kernel for ResourceApplyAdam does, emits ONE custom call into the fused CPU
// loop (cpu_custom_calls.cc) with the results aliased to the variables' buffers, and assigns the
// results back. Shapes, dtypes and the same variable twice are checked here, while compiling, so a
// bad step fails before anything runs; sparse indices are checked by the handler before it writes.
//
// Registered for XLA's CPU device, and for its GPU device when the CUDA kernels are built (their
// handlers, gpu_custom_calls.cc, are compiled but have not run on a GPU yet).
#include "xla/xla_kernel_common.h"

namespace tf_adam_op {
namespace {

using xla_kernels::Attributes;
using xla_kernels::CallVariables;
using xla_kernels::EmitCustomCall;
using xla_kernels::JitDevices;
using xla_kernels::kImportMarker;
using xla_kernels::Options;
using xla_kernels::RegisterDirectly;
using xla_kernels::SameShape;
using xla_kernels::ScalarOperands;
using xla_kernels::VariableTypes;
using xla_kernels::XlaKernelsAlreadyBuilt;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::TensorShape;
using ::tensorflow::XlaOpKernel;
using ::tensorflow::XlaOpKernelContext;

// ResourceApplyAdamV1 (one variable: var, m, v at inputs 0-2) and ResourceApplyAdamV1MultiUnpacked
// (lists of N: vars at [0, N), ms at [N, 2N), vs at [2N, 3N)).
class DenseAdamXlaOp : public XlaOpKernel {
 public:
  explicit DenseAdamXlaOp(OpKernelConstruction* ctx) : XlaOpKernel(ctx) {
    unpacked_ = ctx->def().op() == "ResourceApplyAdamV1MultiUnpacked";
    OP_REQUIRES_OK(ctx, options_.Read(ctx, unpacked_ ? "n_vhats" : "n_vhat"));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &nesterov_));
    if (unpacked_) OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n_));
    const int vhats_for_amsgrad = unpacked_ ? n_ : 1;
    OP_REQUIRES(ctx, options_.n_vhat == 0 || options_.n_vhat == vhats_for_amsgrad,
                absl::InvalidArgumentError(absl::StrCat("vhat takes none or ", vhats_for_amsgrad,
                                                        " inputs, got ", options_.n_vhat)));
  }

  void Compile(XlaOpKernelContext* ctx) override {
    const bool amsgrad = options_.n_vhat > 0;
    const int first_scalar = unpacked_ ? 3 * n_ : kFirstScalarInput;
    const int first_grad = first_scalar + xla_calls::kScalars;
    int vhat_start = 0, vhat_stop = 0;
    OP_REQUIRES_OK(ctx, ctx->op_kernel().InputRange(unpacked_ ? "vhats" : "vhat", &vhat_start,
                                               &vhat_stop));
    std::vector<xla::XlaOp> operands;
    OP_REQUIRES_OK(ctx, ScalarOperands(ctx, first_scalar, &operands));
    CallVariables vars;
    std::vector<int64_t> aliased;
    for (int k = 0; k < n_; ++k) {
      // (input, name) of var, m, v, vhat of variable k.
      auto name = [&](const char* single, const char* list) {
        return unpacked_ ? absl::StrCat(list, "[", k, "]") : std::string(single);
      };
      std::vector<std::pair<int, std::string>> inputs = {
          {unpacked_ ? k : 0, name("var", "vars")},
          {unpacked_ ? n_ + k : 1, name("m", "ms")},
          {unpacked_ ? 2 * n_ + k : 2, name("v", "vs")}};
      if (amsgrad) inputs.push_back({vhat_start + (unpacked_ ? k : 0), name("vhat", "vhats")});
      TensorShape var_shape;
      for (const auto& [input, input_name] : inputs) {
        TensorShape shape;
        xla::XlaOp value;
        OP_REQUIRES_OK(ctx, vars.Read(ctx, input, input_name, options_.dtype, &shape, &value));
        if (aliased.size() % inputs.size() == 0) var_shape = shape;
        OP_REQUIRES_OK(ctx, SameShape(inputs[0].second, var_shape, input_name, shape));
        aliased.push_back(static_cast<int64_t>(operands.size()));
        operands.push_back(value);
      }
      OP_REQUIRES_OK(ctx, SameShape(inputs[0].second, var_shape, name("grad", "grads"),
                                    ctx->InputShape(first_grad + k)));
      operands.push_back(ctx->Input(first_grad + k));
    }
    const xla::XlaOp call = EmitCustomCall(
        ctx, xla_calls::kDenseTarget, operands, aliased,
        Attributes({{xla_calls::kAttrN, n_},
                    {xla_calls::kAttrAmsgrad, amsgrad},
                    {xla_calls::kAttrNesterov, nesterov_},
                    {xla_calls::kAttrWeightDecay, options_.weight_decay_mode()},
                    {xla_calls::kAttrOneMinusBeta, options_.n_one_minus_beta > 0}}));
    OP_REQUIRES_OK(ctx, vars.AssignResults(ctx, call));
  }

 private:
  Options options_;
  bool unpacked_ = false;
  bool nesterov_ = false;
  int n_ = 1;
};

// ResourceSparseApplyAdamV1: var, m, v at 0-2, the scalars, grad, indices, v_term, vhat, ...
class SparseAdamXlaOp : public XlaOpKernel {
 public:
  explicit SparseAdamXlaOp(OpKernelConstruction* ctx) : XlaOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, options_.Read(ctx, "n_vhat"));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("lazy", &lazy_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale_first", &scale_first_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("dense_rule", &dense_rule_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("n_v_term", &n_v_term_));
    OP_REQUIRES(ctx, options_.n_vhat <= 1 && n_v_term_ <= 1,
                absl::InvalidArgumentError("vhat and v_term take at most one input each"));
  }

  void Compile(XlaOpKernelContext* ctx) override {
    const int grad_input = kFirstScalarInput + xla_calls::kScalars;
    const int indices_input = grad_input + 1;
    std::vector<xla::XlaOp> operands;
    OP_REQUIRES_OK(ctx, ScalarOperands(ctx, kFirstScalarInput, &operands));
    int vhat_start = 0, vhat_stop = 0;
    OP_REQUIRES_OK(ctx, ctx->op_kernel().InputRange("vhat", &vhat_start, &vhat_stop));
    std::vector<std::pair<int, std::string>> inputs = {{0, "var"}, {1, "m"}, {2, "v"}};
    if (options_.n_vhat == 1) inputs.push_back({vhat_start, "vhat"});
    CallVariables vars;
    std::vector<int64_t> aliased;
    TensorShape var;
    for (const auto& [input, name] : inputs) {
      TensorShape shape;
      xla::XlaOp value;
      OP_REQUIRES_OK(ctx, vars.Read(ctx, input, name, options_.dtype, &shape, &value));
      if (aliased.empty()) var = shape;
      OP_REQUIRES_OK(ctx, SameShape("var", var, name, shape));
      aliased.push_back(static_cast<int64_t>(operands.size()));
      operands.push_back(value);
    }
    const TensorShape grad = ctx->InputShape(grad_input);
    const TensorShape indices = ctx->InputShape(indices_input);
    OP_REQUIRES_OK(ctx, CheckSparseShapes(var, grad, indices));
    // XLA drops a custom call whose results are all empty before it runs, and so its index check:
    // a variable with no rows has no valid index, which is known here, while compiling.
    OP_REQUIRES(ctx, var.dim_size(0) > 0 || indices.dim_size(0) == 0,
                absl::InvalidArgumentError(absl::StrCat(
                    "indices[0] is not in [0, 0): var has no rows (shape ", var.DebugString(),
                    ") but ", indices.dim_size(0), " indices were given")));
    operands.push_back(ctx->Input(grad_input));
    operands.push_back(ctx->Input(indices_input));
    if (n_v_term_ == 1) {
      OP_REQUIRES(ctx, ctx->InputShape(indices_input + 1) == grad,
                  absl::InvalidArgumentError(absl::StrCat(
                      "v_term must have grad's shape: v_term ",
                      ctx->InputShape(indices_input + 1).DebugString(), ", grad ",
                      grad.DebugString())));
      operands.push_back(ctx->Input(indices_input + 1));
    }
    OP_REQUIRES(ctx, !dense_rule_ || n_v_term_ == 1,
                absl::InvalidArgumentError(
                    "dense_rule=true needs v_term: the square of each gradient row (the dense "
                    "form sums the duplicates' squares, as Keras 3 does)"));
    const xla::XlaOp call = EmitCustomCall(
        ctx, xla_calls::kSparseTarget, operands, aliased,
        Attributes({{xla_calls::kAttrAmsgrad, options_.n_vhat},
                    {xla_calls::kAttrWeightDecay, options_.weight_decay_mode()},
                    {xla_calls::kAttrOneMinusBeta, options_.n_one_minus_beta > 0},
                    {xla_calls::kAttrLazy, lazy_},
                    {xla_calls::kAttrScaleFirst, scale_first_},
                    {xla_calls::kAttrDenseRule, dense_rule_},
                    {xla_calls::kAttrVTerm, n_v_term_}}));
    OP_REQUIRES_OK(ctx, vars.AssignResults(ctx, call));
  }

 private:
  Options options_;
  bool lazy_ = false;
  bool scale_first_ = false;
  bool dense_rule_ = false;
  int n_v_term_ = 0;
};

// The import marker ops.py puts into every graph using the ops (see adam_ops.cc): nothing to compile.
class ImportMarkerXlaOp : public XlaOpKernel {
 public:
  using XlaOpKernel::XlaOpKernel;
  void Compile(XlaOpKernelContext*) override {}
};

#define TF_ADAM_OP_XLA_DENSE(OP)                                                               \
  REGISTER_XLA_OP(Name(OP).Device(JitDevices()).TypeConstraint("T", VariableTypes()),         \
                  DenseAdamXlaOp)
TF_ADAM_OP_XLA_DENSE("ResourceApplyAdamV1");
TF_ADAM_OP_XLA_DENSE("ResourceApplyAdamV1MultiUnpacked");
#undef TF_ADAM_OP_XLA_DENSE
REGISTER_XLA_OP(Name("ResourceSparseApplyAdamV1")
                    .Device(JitDevices())
                    .TypeConstraint("T", VariableTypes())
                    .TypeConstraint("Tindices", {tensorflow::DT_INT32, tensorflow::DT_INT64}),
                SparseAdamXlaOp);
REGISTER_XLA_OP(Name(kImportMarker).Device(JitDevices()), ImportMarkerXlaOp);

[[maybe_unused]] const bool float_kernels_registered_late = [] {
  if (!XlaKernelsAlreadyBuilt()) return false;
  RegisterDirectly<DenseAdamXlaOp>("ResourceApplyAdamV1", "DenseAdamXlaOp", false);
  RegisterDirectly<DenseAdamXlaOp>("ResourceApplyAdamV1MultiUnpacked", "DenseAdamXlaOp", false);
  RegisterDirectly<SparseAdamXlaOp>("ResourceSparseApplyAdamV1", "SparseAdamXlaOp", true);
  RegisterDirectly<ImportMarkerXlaOp>(kImportMarker, "ImportMarkerXlaOp", false, false);
  return true;
}();

}  // namespace
}  // namespace tf_adam_op
