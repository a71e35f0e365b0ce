// What the XLA kernels of both op families share (adam_xla_kernels.cc, adam_8bit_xla_kernels.cc):
// the flags every Adam op carries, the scalar operands, reading the variables of one call (each
// once), the custom call with results aliased to the variables, where the kernels are registered.
#ifndef TF_ADAM_OP_XLA_XLA_KERNEL_COMMON_H_
#define TF_ADAM_OP_XLA_XLA_KERNEL_COMMON_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tensorflow/compiler/tf2xla/xla_op_kernel.h"
#include "tensorflow/compiler/tf2xla/xla_op_registry.h"
#include "tensorflow/compiler/tf2xla/xla_resource.h"
#include "tensorflow/core/framework/kernel_def_builder.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/types.h"
#include "xla/hlo/builder/xla_builder.h"
#include "xla/shape_util.h"
#include "ops/op_contract.h"
#include "xla/custom_calls.h"

namespace tf_adam_op {
namespace xla_kernels {

using ::tensorflow::DataType;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::TensorShape;
using ::tensorflow::XlaOpKernel;
using ::tensorflow::XlaOpKernelContext;

inline constexpr char kImportMarker[] = "Import_tf_adam_op_before_loading_this_graph";

// The flags every Adam op carries the same way (see TF_ADAM_OP_VARIANT_INPUTS in adam_ops.cc).
struct Options {
  DataType dtype;
  int n_vhat = 0;
  int n_weight_decay = 0;
  bool weight_decay_times_lr = false;
  int n_one_minus_beta = 0;

  absl::Status Read(OpKernelConstruction* ctx, const char* vhat_attr) {
    DataType scalar_type;
    TF_RETURN_IF_ERROR(ctx->GetAttr("T", &dtype));
    TF_RETURN_IF_ERROR(ctx->GetAttr("Tscalar", &scalar_type));
    TF_RETURN_IF_ERROR(ctx->GetAttr(vhat_attr, &n_vhat));
    TF_RETURN_IF_ERROR(ctx->GetAttr("n_weight_decay", &n_weight_decay));
    TF_RETURN_IF_ERROR(ctx->GetAttr("weight_decay_times_lr", &weight_decay_times_lr));
    TF_RETURN_IF_ERROR(ctx->GetAttr("n_one_minus_beta", &n_one_minus_beta));
    return CheckScalarType(dtype, scalar_type);
  }
  int weight_decay_mode() const {
    return n_weight_decay == 0 ? 0 : weight_decay_times_lr ? 2 : 1;
  }
};

// The six scalars from input `first` on, then weight_decay and one_minus_beta: checked to be
// scalars and appended to `operands`.
inline absl::Status ScalarOperands(XlaOpKernelContext* ctx, int first, std::vector<xla::XlaOp>* operands) {
  for (int i = 0; i < xla_calls::kScalars; ++i) {
    TF_RETURN_IF_ERROR(CheckScalarShape(kScalarNames[i], ctx->InputShape(first + i)));
    operands->push_back(ctx->Input(first + i));
  }
  for (const char* list : {"weight_decay", "one_minus_beta"}) {
    std::vector<xla::XlaOp> values;
    std::vector<TensorShape> shapes;
    TF_RETURN_IF_ERROR(ctx->InputList(list, &values, &shapes));
    for (size_t i = 0; i < values.size(); ++i) {
      TF_RETURN_IF_ERROR(CheckScalarShape(list, shapes[i]));
      operands->push_back(values[i]);
    }
  }
  return absl::OkStatus();
}

// Variables read by one call: their inputs, names (for messages) and XlaResources (to refuse the
// same variable twice: two assignments to one variable would silently keep only the last).
class CallVariables {
 public:
  absl::Status Read(XlaOpKernelContext* ctx, int input, std::string name, DataType dtype,
                    TensorShape* shape, xla::XlaOp* value) {
    tensorflow::XlaResource* resource = nullptr;
    TF_RETURN_IF_ERROR(ctx->GetResourceInput(input, &resource));
    for (size_t k = 0; k < resources_.size(); ++k) {
      if (resources_[k] == resource) {
        return absl::InvalidArgumentError(absl::StrCat(
            names_[k], " and ", name, " are the same variable; each must be a distinct variable"));
      }
    }
    TF_RETURN_IF_ERROR(ctx->ReadVariableInput(input, dtype, shape, value));
    resources_.push_back(resource);
    dtypes_.push_back(dtype);
    names_.push_back(std::move(name));
    inputs_.push_back(input);
    return absl::OkStatus();
  }
  // Assigns result k of the call's tuple to the k-th variable read (of the dtype it was read as).
  absl::Status AssignResults(XlaOpKernelContext* ctx, xla::XlaOp call) const {
    for (size_t k = 0; k < inputs_.size(); ++k) {
      TF_RETURN_IF_ERROR(
          ctx->AssignVariable(inputs_[k], dtypes_[k], xla::GetTupleElement(call, k)));
    }
    return absl::OkStatus();
  }
  const std::string& name(int k) const { return names_[k]; }

 private:
  std::vector<tensorflow::XlaResource*> resources_;
  std::vector<DataType> dtypes_;
  std::vector<std::string> names_;
  std::vector<int> inputs_;
};

inline absl::Status SameShape(const std::string& a, const TensorShape& a_shape, const std::string& b,
                       const TensorShape& b_shape) {
  if (a_shape == b_shape) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(a, " and ", b, " do not have the same shape: ",
                                                 a_shape.DebugString(), " vs ",
                                                 b_shape.DebugString()));
}

// A list of strings as one MLIR string attribute, `name = "..."`: joined by newlines, every byte
// but a letter or a digit written as \XX, so that no string can end the string or the dictionary.
inline std::string StringListAttribute(const char* name, const std::vector<std::string>& strings) {
  std::string out = absl::StrCat(name, " = \"");
  for (const unsigned char c : absl::StrJoin(strings, "\n")) {
    if (absl::ascii_isalnum(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out + "\"";
}

// The typed-FFI attribute dictionary, e.g. {n = 2 : i64, amsgrad = 0 : i64}, and any string
// attributes (StringListAttribute) after the integers.
inline std::string Attributes(const std::vector<std::pair<const char*, int64_t>>& attrs,
                              const std::vector<std::string>& string_attributes = {}) {
  std::string out = "{";
  for (size_t i = 0; i < attrs.size(); ++i) {
    absl::StrAppend(&out, i ? ", " : "", attrs[i].first, " = ", attrs[i].second, " : i64");
  }
  for (const std::string& attribute : string_attributes) {
    absl::StrAppend(&out, out.size() > 1 ? ", " : "", attribute);
  }
  return out + "}";
}

// The call: results alias the operands at `aliased` (the variables), one tuple element each.
inline xla::XlaOp EmitCustomCall(XlaOpKernelContext* ctx, const char* target,
                          const std::vector<xla::XlaOp>& operands,
                          const std::vector<int64_t>& aliased, const std::string& attributes) {
  xla::XlaBuilder* b = ctx->builder();
  std::vector<xla::Shape> shapes;
  std::vector<std::pair<xla::ShapeIndex, std::pair<int64_t, xla::ShapeIndex>>> aliasing;
  for (size_t k = 0; k < aliased.size(); ++k) {
    shapes.push_back(b->GetShape(operands[aliased[k]]).value());
    aliasing.push_back({xla::ShapeIndex{static_cast<int64_t>(k)}, {aliased[k], xla::ShapeIndex{}}});
  }
  return xla::CustomCall(b, target, operands, xla::ShapeUtil::MakeTupleShape(shapes), attributes,
                         /*has_side_effect=*/false, aliasing, /*literal=*/nullptr,
                         xla::CustomCallSchedule::SCHEDULE_NONE,
                         xla::CustomCallApiVersion::API_VERSION_TYPED_FFI);
}

inline const std::vector<DataType>& VariableTypes() {
  static const auto* types = new std::vector<DataType>{tensorflow::DT_HALF, tensorflow::DT_BFLOAT16,
                                                       tensorflow::DT_FLOAT, tensorflow::DT_DOUBLE};
  return *types;
}

// The XLA devices with handlers for the custom calls.
inline const std::vector<absl::string_view>& JitDevices() {
  static const auto* devices = new std::vector<absl::string_view>{
      ::tensorflow::DEVICE_CPU_XLA_JIT,
#if TF_ADAM_OP_WITH_CUDA
      ::tensorflow::DEVICE_GPU_XLA_JIT,
#endif
  };
  return *devices;
}

// TensorFlow turns the XLA registrations into kernels of the XLA devices once per process, on the
// first XLA compilation. A process that compiled with XLA before `import tf_adam_op` has done that
// without ours, so here they are registered directly, as that step would have.
inline bool XlaKernelsAlreadyBuilt() {
  tensorflow::NodeDef probe;
  probe.set_name("tf_adam_op_probe");
  probe.set_op("NoOp");
  return tensorflow::FindKernelDef(tensorflow::DeviceType(tensorflow::DEVICE_CPU_XLA_JIT), probe,
                                   nullptr, nullptr)
      .ok();
}

template <typename Kernel>
void RegisterDirectly(const char* op, const char* class_name, bool has_indices,
                      bool has_type = true) {
  for (absl::string_view device : JitDevices()) {
    tensorflow::KernelDefBuilder builder(op);
    builder.Device(std::string(device).c_str());
    if (has_type) builder.TypeConstraint("T", VariableTypes());
    if (has_indices) {
      builder.TypeConstraint("Tindices", {tensorflow::DT_INT32, tensorflow::DT_INT64});
    }
    new tensorflow::kernel_factory::OpKernelRegistrar(
        builder.Build(), class_name,
        [](OpKernelConstruction* ctx) -> tensorflow::OpKernel* { return new Kernel(ctx); });
  }
}

}  // namespace xla_kernels
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_XLA_XLA_KERNEL_COMMON_H_
