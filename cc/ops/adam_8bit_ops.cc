// The 8-bit-state Adam ops: ApplyAdamV1's rule with m, v (and AMSGrad's vhat) kept as codes and
// per-block scales (core/blockwise_8bit.h). Their own family beside the float-state ops: the state
// inputs differ in number and type, everything else (scalars, variant inputs, checks) is the same.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "ops/op_contract.h"

namespace tensorflow {
namespace {

using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

// The handle data's shape of a resource input, unknown without one.
ShapeHandle HandleShape(InferenceContext* c, int input) {
  const auto* data = c->input_handle_shapes_and_types(input);
  if (data != nullptr && !data->empty() && (*data)[0].dtype != DT_INVALID) return (*data)[0].shape;
  return c->UnknownShape();
}

// var merged with the codes (inputs 1 and 3) and the scalars checked; *var is the variable's shape.
absl::Status StatesAndScalars(InferenceContext* c, ShapeHandle* var) {
  DataType t, tscalar;
  TF_RETURN_IF_ERROR(c->GetAttr("T", &t));
  TF_RETURN_IF_ERROR(c->GetAttr("Tscalar", &tscalar));
  TF_RETURN_IF_ERROR(::tf_adam_op::CheckScalarType(t, tscalar));
  *var = HandleShape(c, 0);
  TF_RETURN_IF_ERROR(c->Merge(*var, HandleShape(c, 1), var));
  TF_RETURN_IF_ERROR(c->Merge(*var, HandleShape(c, 3), var));
  ShapeHandle unused;
  for (int i = ::tf_adam_op::kFirst8bitScalarInput; i < ::tf_adam_op::k8bitGradInput; ++i) {
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
  }
  return absl::OkStatus();
}

}  // namespace

// The six scalars every Adam op takes (op_contract.h kScalarNames), in the compute type.
#define TF_ADAM_OP_8BIT_SCALARS                                                     \
  Input("beta1_power: Tscalar")                                                    \
      .Input("beta2_power: Tscalar")                                               \
      .Input("lr: Tscalar")                                                        \
      .Input("beta1: Tscalar")                                                     \
      .Input("beta2: Tscalar")                                                     \
      .Input("epsilon: Tscalar")

#define TF_ADAM_OP_8BIT_INPUTS                                                      \
  Input("var: resource")                                                           \
      .Input("m_codes: resource")                                                  \
      .Input("m_absmax: resource")                                                 \
      .Input("v_codes: resource")                                                  \
      .Input("v_absmax: resource")                                                 \
      .TF_ADAM_OP_8BIT_SCALARS                                                     \
      .Input("grad: T")

#define TF_ADAM_OP_8BIT_VARIANT_INPUTS                                              \
  Input("vhat: n_vhat * resource")                                                 \
      .Input("weight_decay: n_weight_decay * Tscalar")                             \
      .Input("one_minus_beta: n_one_minus_beta * Tscalar")                         \
      .Attr("T: {half, bfloat16, float, double}")                                  \
      .Attr("Tscalar: {float, double}")                                            \
      .Attr("n_vhat: int >= 0 = 0")                                                \
      .Attr("n_weight_decay: int >= 0 = 0")                                        \
      .Attr("weight_decay_times_lr: bool = false")                                 \
      .Attr("n_one_minus_beta: int >= 0 = 0")                                      \
      .Attr("use_locking: bool = false")

REGISTER_OP("ResourceApplyAdam8bit")
    .TF_ADAM_OP_8BIT_INPUTS
    .TF_ADAM_OP_8BIT_VARIANT_INPUTS
    .Attr("use_nesterov: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle var;
      TF_RETURN_IF_ERROR(StatesAndScalars(c, &var));
      return c->Merge(var, c->input(::tf_adam_op::k8bitGradInput), &var);
    })
    .Doc(R"doc(
ResourceApplyAdamV1's update with 8-bit states: m, v (and vhat) are uint8 codes of var's shape
(m_codes, v_codes) with one float32 scale per block of 256 elements of the flat tensor (m_absmax,
v_absmax, of ceil(size / 256) elements), bitsandbytes' block-wise layout and dynamic maps (signed
for m, unsigned for v and vhat). Each block is decoded, updated by ApplyAdamV1's rule in the
compute type and re-encoded (nearest code). vhat: none, or two handles (codes, absmax): AMSGrad.
weight_decay, one_minus_beta, use_nesterov: as ResourceApplyAdamV1's.
Every input, scales included, is checked before anything is written: a scale must be >= 0 or NaN
(a block whose state turned non-finite).
)doc");

REGISTER_OP("ResourceSparseApplyAdam8bit")
    .TF_ADAM_OP_8BIT_INPUTS
    .Input("indices: Tindices")
    .Input("v_term: n_v_term * T")
    .TF_ADAM_OP_8BIT_VARIANT_INPUTS
    .Attr("Tindices: {int32, int64}")
    .Attr("n_v_term: int >= 0 = 0")
    .Attr("lazy: bool = false")
    .Attr("dense_rule: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle var, unused;
      TF_RETURN_IF_ERROR(StatesAndScalars(c, &var));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(::tf_adam_op::k8bitGradInput + 1), 1, &unused));
      return absl::OkStatus();
    })
    .Doc(R"doc(
ResourceSparseApplyAdamV1's update (duplicates summed; lazy; dense_rule with v_term) with the
8-bit states of ResourceApplyAdam8bit. Blocks are 256 elements of the flat tensor, as for dense
updates, so a row may share a block with its neighbours: an update decodes, updates and re-encodes
every block holding an updated element (lazy: the named rows' blocks only); the other elements of
those blocks keep their values, re-encoded with the block's new scale.
)doc");

#undef TF_ADAM_OP_8BIT_INPUTS

REGISTER_OP("Check8bitScales")
    .Input("scales: resource")
    .Output("valid: bool")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle handles;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 1, &handles));
      c->set_output(0, handles);
      return absl::OkStatus();
    })
    .Doc(R"doc(
valid[i]: whether every scale in the float32 variable scales[i] (the absmax of an 8-bit state) is
one a step can leave (>= 0 and finite, or NaN). scales is a vector of handles (tf.stack of them,
packed once: an input per variable would cost a dispatch or capture each). Reads only; for
checking a whole step's states before its first write.
)doc");

REGISTER_OP("Check8bitScaleValues")
    .Input("scales: N * float")
    .Attr("N: int >= 1")
    .Attr("names: list(string)")
    .Output("one: float")
    .SetShapeFn([](InferenceContext* c) {
      std::vector<std::string> names;
      TF_RETURN_IF_ERROR(c->GetAttr("names", &names));
      if (static_cast<int>(names.size()) != c->num_inputs()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "names must name each of the ", c->num_inputs(), " scale vectors, got ",
            names.size(), " names"));
      }
      c->set_output(0, c->Scalar());
      return absl::OkStatus();
    })
    .Doc(R"doc(
one is 1.0 once every scale in every scales[i] (the values of an 8-bit state's float32 scale
vector) is one a step can leave (>= 0 and finite, or NaN); otherwise the op fails with
InvalidArgument naming names[i] and the block. For XLA, where a step has no assertions and orders
ops by data only: the optimizers multiply each update's learning rate by one (exactly the same
number), so that no update of the step runs before the check, and none after it fails.
)doc");

// The multi-tensor ops' inputs and attrs: each state's handles as HANDLES (a vector of N, or a
// list of N inputs), the scalars, the N grads.
#define TF_ADAM_OP_8BIT_MULTI_INPUTS(HANDLES)                                       \
  Input("vars: " HANDLES)                                                          \
      .Input("m_codes: " HANDLES)                                                  \
      .Input("m_absmax: " HANDLES)                                                 \
      .Input("v_codes: " HANDLES)                                                  \
      .Input("v_absmax: " HANDLES)                                                 \
      .TF_ADAM_OP_8BIT_SCALARS                                                     \
      .Input("grads: N * T")                                                       \
      .TF_ADAM_OP_8BIT_VARIANT_INPUTS                                              \
      .Attr("N: int >= 1")                                                         \
      .Attr("use_nesterov: bool = false")                                          \
      .Attr("variable_names: list(string) = []")

REGISTER_OP("ResourceApplyAdam8bitMulti")
    .TF_ADAM_OP_8BIT_MULTI_INPUTS("resource")
    .SetShapeFn([](InferenceContext* c) {
      int n, n_vhat;
      TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
      TF_RETURN_IF_ERROR(c->GetAttr("n_vhat", &n_vhat));
      std::vector<int> vectors = {0, 1, 2, 3, 4};
      for (int k = 0; k < n_vhat; ++k) vectors.push_back(5 + ::tf_adam_op::kScalarCount + n + k);
      for (int i : vectors) {  // vectors of N handles
        ShapeHandle handles;
        TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 1, &handles));
        shape_inference::DimensionHandle unused_dim;
        TF_RETURN_IF_ERROR(c->WithValue(c->Dim(handles, 0), n, &unused_dim));
      }
      ShapeHandle unused;
      for (int i = 5; i < 5 + ::tf_adam_op::kScalarCount; ++i) {
        TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
      }
      return absl::OkStatus();
    })
    .Doc(R"doc(
ResourceApplyAdam8bit for N variables in one op. The handles come packed, N per 1-D tensor
(tf.stack of the handles): vars, the codes and scales of m and v, and vhat (none, or two vectors:
codes, scales); an op (or a tf.function) with 5N separate resource inputs would cost a dispatch or a
capture per input, which for hundreds of small variables is more than the update itself. Then the
scalars and the N grads. The blocks of all N are one index space shared by the threads. Any bad
input among the N is an error, and then nothing is written (all or nothing). variable_names, empty
or N names, is what an error about the states of variable k calls it (the optimizers give the
variables' names; the input's position is named as well).
)doc");

REGISTER_OP("ResourceApplyAdam8bitMultiUnpacked")
    .TF_ADAM_OP_8BIT_MULTI_INPUTS("N * resource")
    .SetShapeFn([](InferenceContext* c) {
      int n;
      TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
      DataType t, tscalar;
      TF_RETURN_IF_ERROR(c->GetAttr("T", &t));
      TF_RETURN_IF_ERROR(c->GetAttr("Tscalar", &tscalar));
      TF_RETURN_IF_ERROR(::tf_adam_op::CheckScalarType(t, tscalar));
      ShapeHandle unused;
      for (int i = 5 * n; i < 5 * n + ::tf_adam_op::kScalarCount; ++i) {
        TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
      }
      for (int k = 0; k < n; ++k) {  // var k, its codes (lists 1 and 3) and grad k
        ShapeHandle var = HandleShape(c, k);
        TF_RETURN_IF_ERROR(c->Merge(var, HandleShape(c, n + k), &var));
        TF_RETURN_IF_ERROR(c->Merge(var, HandleShape(c, 3 * n + k), &var));
        TF_RETURN_IF_ERROR(c->Merge(var, c->input(5 * n + ::tf_adam_op::kScalarCount + k), &var));
      }
      return absl::OkStatus();
    })
    .Doc(R"doc(
ResourceApplyAdam8bitMulti with the handles as lists of N inputs instead of vectors: the form XLA
compiles (tf2xla reads a resource variable from its own input, never out of a vector), with an XLA
kernel that runs the same CPU loop in one custom call. vhat: none, or 2N handles (the N codes,
then the N scales: AMSGrad).
)doc");

#undef TF_ADAM_OP_8BIT_MULTI_INPUTS
#undef TF_ADAM_OP_8BIT_VARIANT_INPUTS
#undef TF_ADAM_OP_8BIT_SCALARS

REGISTER_OP("TfAdamOpCpu8bitCodec")
    .Output("codec: string")
    .SetIsStateful()  // not constant-folded: it reports the process it runs in
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->Scalar());
      return absl::OkStatus();
    })
    .Doc("The codec of the CPU 8-bit-state kernels for float32 in this process: avx512 or portable.");

}  // namespace tensorflow
