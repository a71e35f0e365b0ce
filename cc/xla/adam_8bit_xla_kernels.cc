// XLA kernels for the 8-bit-state ops (ResourceApplyAdam8bit, ResourceSparseApplyAdam8bit,
// ResourceApplyAdam8bitMultiUnpacked): read the variables and their codes and scales, emit ONE
// custom call into the same loops the TF kernels run (on the CPU, cpu_8bit_custom_calls.cc; on a
// GPU, when the CUDA kernels are built, their launchers: gpu_8bit_custom_calls.cc, compiled but
// not yet run on a GPU) with the results aliased to the variables, assign them back. Shapes and
// dtypes are checked here, while compiling; the scales' values and the indices by the handler,
// before it writes.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/blockwise_8bit.h"
#include "xla/xla_kernel_common.h"

namespace tf_adam_op {
namespace {

using ::tensorflow::OpKernelConstruction;
using ::tensorflow::TensorShape;
using ::tensorflow::XlaOpKernel;
using ::tensorflow::XlaOpKernelContext;
using xla_kernels::Attributes;
using xla_kernels::CallVariables;
using xla_kernels::EmitCustomCall;
using xla_kernels::JitDevices;
using xla_kernels::Options;
using xla_kernels::RegisterDirectly;
using xla_kernels::SameShape;
using xla_kernels::ScalarOperands;
using xla_kernels::StringListAttribute;
using xla_kernels::VariableTypes;

// ResourceApplyAdam8bit and ResourceSparseApplyAdam8bit (one variable: var and its states at
// inputs 0-4) and ResourceApplyAdam8bitMultiUnpacked (lists of N: vars at [0, N), m_codes at
// [N, 2N), ...; its vhat list holds the N codes, then the N scales).
class Adam8bitXlaOp : public XlaOpKernel {
 public:
  explicit Adam8bitXlaOp(OpKernelConstruction* ctx) : XlaOpKernel(ctx) {
    sparse_ = ctx->def().op() == "ResourceSparseApplyAdam8bit";
    unpacked_ = ctx->def().op() == "ResourceApplyAdam8bitMultiUnpacked";
    if (unpacked_) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n_));
      OP_REQUIRES_OK(ctx, ctx->GetAttr("variable_names", &variable_names_));
      OP_REQUIRES(ctx, variable_names_.empty() || static_cast<int>(variable_names_.size()) == n_,
                  absl::InvalidArgumentError(absl::StrCat(
                      "variable_names must be empty or name the ", n_, " variables, got ",
                      variable_names_.size(), " names")));
    }
    OP_REQUIRES_OK(ctx, options_.Read(ctx, "n_vhat"));
    OP_REQUIRES(ctx, options_.n_vhat == 0 || options_.n_vhat == 2 * n_,
                absl::InvalidArgumentError(absl::StrCat(
                    "vhat takes none or ", 2 * n_, " inputs (codes, absmax), got ",
                    options_.n_vhat)));
    if (sparse_) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("lazy", &lazy_));
      OP_REQUIRES_OK(ctx, ctx->GetAttr("dense_rule", &dense_rule_));
      OP_REQUIRES_OK(ctx, ctx->GetAttr("n_v_term", &n_v_term_));
      OP_REQUIRES(ctx, n_v_term_ == (dense_rule_ ? 1 : 0),
                  absl::InvalidArgumentError(
                      "v_term is given with dense_rule=true (the square of each gradient row) "
                      "and only then"));
    } else {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("use_nesterov", &nesterov_));
    }
  }

  void Compile(XlaOpKernelContext* ctx) override {
    // Each list's first input: N of them each (one for the single-variable ops).
    const int first_scalar = 5 * n_;
    const int first_grad = first_scalar + xla_calls::kScalars;
    std::vector<xla::XlaOp> operands;
    OP_REQUIRES_OK(ctx, ScalarOperands(ctx, first_scalar, &operands));
    int vhat_start = 0, vhat_stop = 0;
    OP_REQUIRES_OK(ctx, ctx->op_kernel().InputRange("vhat", &vhat_start, &vhat_stop));
    struct Input {
      int first;
      const char* name;
      tensorflow::DataType dtype;
    };
    std::vector<Input> lists = {{0, unpacked_ ? "vars" : "var", options_.dtype},
                                {n_, "m_codes", tensorflow::DT_UINT8},
                                {2 * n_, "m_absmax", tensorflow::DT_FLOAT},
                                {3 * n_, "v_codes", tensorflow::DT_UINT8},
                                {4 * n_, "v_absmax", tensorflow::DT_FLOAT}};
    if (options_.n_vhat > 0) {
      lists.push_back({vhat_start, "vhat_codes", tensorflow::DT_UINT8});
      lists.push_back({vhat_start + n_, "vhat_absmax", tensorflow::DT_FLOAT});
    }
    CallVariables vars;
    std::vector<int64_t> aliased;
    TensorShape var;
    for (int k = 0; k < n_; ++k) {
      for (size_t j = 0; j < lists.size(); ++j) {
        const std::string name =
            unpacked_ ? absl::StrCat(lists[j].name, "[", k, "]") : std::string(lists[j].name);
        TensorShape shape;
        xla::XlaOp value;
        OP_REQUIRES_OK(ctx, vars.Read(ctx, lists[j].first + k, name, lists[j].dtype, &shape,
                                      &value));
        if (j == 0) var = shape;
        if (j % 2 == 1) OP_REQUIRES_OK(ctx, SameShape(vars.name(aliased.size() - j), var, name,
                                                      shape));
        if (j > 0 && j % 2 == 0) {
          const TensorShape scales({eight_bit::BlockCount(var.num_elements())});
          OP_REQUIRES(ctx, shape == scales,
                      absl::InvalidArgumentError(absl::StrCat(
                          name, " must have one scale per block of ", eight_bit::kBlockSize,
                          " elements: shape ", scales.DebugString(), " for ",
                          vars.name(aliased.size() - j), " ", var.DebugString(), ", got ",
                          shape.DebugString())));
        }
        aliased.push_back(static_cast<int64_t>(operands.size()));
        operands.push_back(value);
      }
      const TensorShape grad = ctx->InputShape(first_grad + k);
      operands.push_back(ctx->Input(first_grad + k));
      if (!sparse_) {
        OP_REQUIRES_OK(ctx, SameShape(vars.name(aliased.size() - lists.size()), var,
                                      unpacked_ ? absl::StrCat("grads[", k, "]") : "grad", grad));
      }
    }
    std::vector<std::pair<const char*, int64_t>> attributes = {
        {xla_calls::kAttrAmsgrad, options_.n_vhat > 0},
        {xla_calls::kAttrWeightDecay, options_.weight_decay_mode()},
        {xla_calls::kAttrOneMinusBeta, options_.n_one_minus_beta > 0}};
    if (sparse_) {
      const TensorShape grad = ctx->InputShape(first_grad);
      const TensorShape indices = ctx->InputShape(first_grad + 1);
      OP_REQUIRES_OK(ctx, CheckSparseShapes(var, grad, indices));
      OP_REQUIRES(ctx, var.dim_size(0) > 0 || indices.dim_size(0) == 0,
                  absl::InvalidArgumentError(absl::StrCat(
                      "indices[0] is not in [0, 0): var has no rows (shape ", var.DebugString(),
                      ") but ", indices.dim_size(0), " indices were given")));
      operands.push_back(ctx->Input(first_grad + 1));
      if (n_v_term_ == 1) {
        OP_REQUIRES(ctx, ctx->InputShape(first_grad + 2) == grad,
                    absl::InvalidArgumentError(absl::StrCat(
                        "v_term must have grad's shape: v_term ",
                        ctx->InputShape(first_grad + 2).DebugString(), ", grad ",
                        grad.DebugString())));
        operands.push_back(ctx->Input(first_grad + 2));
      }
      attributes.push_back({xla_calls::kAttrLazy, lazy_});
      attributes.push_back({xla_calls::kAttrDenseRule, dense_rule_});
      attributes.push_back({xla_calls::kAttrVTerm, n_v_term_});
      const xla::XlaOp call = EmitCustomCall(ctx, xla_calls::kSparse8bitTarget, operands, aliased,
                                             Attributes(attributes));
      OP_REQUIRES_OK(ctx, vars.AssignResults(ctx, call));
      return;
    }
    attributes.push_back({xla_calls::kAttrNesterov, nesterov_});
    attributes.push_back({xla_calls::kAttrN, n_});
    attributes.push_back({xla_calls::kAttrListed, unpacked_});
    const xla::XlaOp call = EmitCustomCall(
        ctx, xla_calls::kDense8bitTarget, operands, aliased,
        Attributes(attributes, {StringListAttribute(xla_calls::kAttrNames, variable_names_)}));
    OP_REQUIRES_OK(ctx, vars.AssignResults(ctx, call));
  }

 private:
  Options options_;
  bool sparse_ = false;
  bool unpacked_ = false;
  int n_ = 1;
  std::vector<std::string> variable_names_;  // empty: the handler names inputs only
  bool nesterov_ = false;
  bool lazy_ = false;
  bool dense_rule_ = false;
  int n_v_term_ = 0;
};

// Check8bitScaleValues: one custom call over the scale vectors (cpu_8bit_custom_calls.cc), its
// float32 1.0 the data every 8-bit update of the step waits for (the optimizers multiply their
// learning rate by it): XLA orders by data only and has no assertions.
class Check8bitScaleValuesXlaOp : public XlaOpKernel {
 public:
  explicit Check8bitScaleValuesXlaOp(OpKernelConstruction* ctx) : XlaOpKernel(ctx) {
    std::vector<std::string> names;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("names", &names));
    attributes_ = Attributes({}, {StringListAttribute(xla_calls::kAttrNames, names)});
  }

  void Compile(XlaOpKernelContext* ctx) override {
    std::vector<xla::XlaOp> scales;
    for (int i = 0; i < ctx->num_inputs(); ++i) scales.push_back(ctx->Input(i));
    ctx->SetOutput(0, xla::CustomCall(ctx->builder(), xla_calls::kCheckScalesTarget, scales,
                                      xla::ShapeUtil::MakeShape(xla::F32, {}), attributes_,
                                      /*has_side_effect=*/false, /*output_operand_aliasing=*/{},
                                      /*literal=*/nullptr, xla::CustomCallSchedule::SCHEDULE_NONE,
                                      xla::CustomCallApiVersion::API_VERSION_TYPED_FFI));
  }

 private:
  std::string attributes_;
};

REGISTER_XLA_OP(
    Name("ResourceApplyAdam8bit").Device(JitDevices()).TypeConstraint("T", VariableTypes()),
    Adam8bitXlaOp);
REGISTER_XLA_OP(Name("ResourceApplyAdam8bitMultiUnpacked")
                    .Device(JitDevices())
                    .TypeConstraint("T", VariableTypes()),
                Adam8bitXlaOp);
REGISTER_XLA_OP(Name("Check8bitScaleValues").Device(JitDevices()), Check8bitScaleValuesXlaOp);
REGISTER_XLA_OP(Name("ResourceSparseApplyAdam8bit")
                    .Device(JitDevices())
                    .TypeConstraint("T", VariableTypes())
                    .TypeConstraint("Tindices", {tensorflow::DT_INT32, tensorflow::DT_INT64}),
                Adam8bitXlaOp);

// As adam_xla_kernels.cc: registered directly when XLA built its kernels before the import.
[[maybe_unused]] const bool eight_bit_kernels_registered_late = [] {
  if (!xla_kernels::XlaKernelsAlreadyBuilt()) return false;
  RegisterDirectly<Adam8bitXlaOp>("ResourceApplyAdam8bit", "Adam8bitXlaOp", false);
  RegisterDirectly<Adam8bitXlaOp>("ResourceApplyAdam8bitMultiUnpacked", "Adam8bitXlaOp", false);
  RegisterDirectly<Adam8bitXlaOp>("ResourceSparseApplyAdam8bit", "Adam8bitXlaOp", true);
  RegisterDirectly<Check8bitScaleValuesXlaOp>("Check8bitScaleValues", "Check8bitScaleValuesXlaOp",
                                              false, /*has_type=*/false);
  return true;
}();

}  // namespace
}  // namespace tf_adam_op
