// Op registrations and shape functions for the Adam ops.
//
// Inputs are in stock ApplyAdam's order. One deliberate difference: the six scalar hyperparameters
// have their own type attr `Tscalar`, the type the update is computed in (float for half, bfloat16
// and float; double for double), so that beta2 = 0.999 and epsilon = 1e-8 reach a half or bfloat16
// kernel intact instead of being rounded to 1.0 and 0 (see docs/numerics.md).
// T is `numbertype` as in stock, so an integer variable gets stock's NotFound (no kernel registered)
// rather than a different error; kernels exist for half, bfloat16, float and double.
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "ops/op_contract.h"

namespace tensorflow {
namespace {

using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

using ::tf_adam_op::kFirstScalarInput;
using ::tf_adam_op::kGradInput;
using ::tf_adam_op::kIndicesInput;
constexpr int kVarInput = 0;

// The shape of a resource variable from its handle data; unknown when the handle carries none (the
// handle's own shape is a scalar and says nothing about the variable).
ShapeHandle ResourceVariableShape(InferenceContext* c, int input) {
  const auto* handle_data = c->input_handle_shapes_and_types(input);
  if (handle_data != nullptr && !handle_data->empty() && (*handle_data)[0].dtype != DT_INVALID) {
    return (*handle_data)[0].shape;
  }
  return c->UnknownShape();
}

absl::Status CheckScalarType(InferenceContext* c) {
  DataType t, tscalar;
  TF_RETURN_IF_ERROR(c->GetAttr("T", &t));
  TF_RETURN_IF_ERROR(c->GetAttr("Tscalar", &tscalar));
  return ::tf_adam_op::CheckScalarType(t, tscalar);
}

// The checks both op families share: Tscalar is the compute type, var/m/v merge into *var, and the
// six hyperparameters are scalars.
absl::Status MergeVariablesAndCheckScalars(InferenceContext* c, bool is_resource, ShapeHandle* var) {
  TF_RETURN_IF_ERROR(CheckScalarType(c));
  *var = is_resource ? ResourceVariableShape(c, kVarInput) : c->input(kVarInput);
  for (int i = 1; i < kFirstScalarInput; ++i) {
    TF_RETURN_IF_ERROR(c->Merge(*var, is_resource ? ResourceVariableShape(c, i) : c->input(i), var));
  }
  ShapeHandle unused;
  for (int i = kFirstScalarInput; i < kGradInput; ++i) {
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
  }
  return absl::OkStatus();
}

// The optional inputs of AMSGrad and weight decay (see TF_ADAM_OP_VARIANT_INPUTS): at most one
// each; vhat (when `vhat_input` >= 0 names it) merges into *var; weight_decay is a scalar.
absl::Status CheckVariantInputs(InferenceContext* c, const char* vhat_attr, bool is_resource,
                                ShapeHandle* var) {
  int n_vhat, n_weight_decay, n_one_minus_beta;
  TF_RETURN_IF_ERROR(c->GetAttr(vhat_attr, &n_vhat));
  TF_RETURN_IF_ERROR(c->GetAttr("n_weight_decay", &n_weight_decay));
  TF_RETURN_IF_ERROR(c->GetAttr("n_one_minus_beta", &n_one_minus_beta));
  if (n_vhat > 1) return absl::InvalidArgumentError("vhat takes at most one variable");
  if (n_weight_decay > 1) return absl::InvalidArgumentError("weight_decay takes at most one scalar");
  if (n_one_minus_beta != 0 && n_one_minus_beta != 2) {
    return absl::InvalidArgumentError(
        "one_minus_beta takes none or two scalars (1 - beta1, 1 - beta2)");
  }
  // The optional inputs are the op's last: vhat, then weight_decay, then one_minus_beta.
  const int first = c->num_inputs() - n_vhat - n_weight_decay - n_one_minus_beta;
  if (n_vhat == 1 && var != nullptr) {
    TF_RETURN_IF_ERROR(c->Merge(*var, is_resource ? ResourceVariableShape(c, first) : c->input(first), var));
  }
  ShapeHandle unused;
  for (int i = first + n_vhat; i < c->num_inputs(); ++i) {
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
  }
  return absl::OkStatus();
}

// Merges var, m, v (vhat) and grad (stock's rule) and requires rank 0 for the scalars.
absl::Status AdamShapeFn(InferenceContext* c, bool is_resource) {
  ShapeHandle s;
  TF_RETURN_IF_ERROR(MergeVariablesAndCheckScalars(c, is_resource, &s));
  TF_RETURN_IF_ERROR(CheckVariantInputs(c, "n_vhat", is_resource, &s));
  TF_RETURN_IF_ERROR(c->Merge(s, c->input(kGradInput), &s));
  if (c->num_outputs() > 0) c->set_output(0, s);
  return absl::OkStatus();
}

// var/m/v merged; grad has var's rank, len(indices) rows and var's row shape; indices a vector.
absl::Status SparseAdamShapeFn(InferenceContext* c, bool is_resource) {
  ShapeHandle var;
  TF_RETURN_IF_ERROR(MergeVariablesAndCheckScalars(c, is_resource, &var));
  TF_RETURN_IF_ERROR(CheckVariantInputs(c, "n_vhat", is_resource, &var));
  ShapeHandle indices;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(kIndicesInput), 1, &indices));
  ShapeHandle grad;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(kGradInput), 1, &grad));
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(var, 1, &var));  // a scalar has no rows to index
  shape_inference::DimensionHandle rows;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(indices, 0), c->Dim(grad, 0), &rows));
  ShapeHandle var_row, grad_row, unused;
  TF_RETURN_IF_ERROR(c->Subshape(var, 1, &var_row));
  TF_RETURN_IF_ERROR(c->Subshape(grad, 1, &grad_row));
  TF_RETURN_IF_ERROR(c->Merge(var_row, grad_row, &unused));
  int n_v_term;
  TF_RETURN_IF_ERROR(c->GetAttr("n_v_term", &n_v_term));
  if (n_v_term > 1) return absl::InvalidArgumentError("v_term takes at most one tensor");
  if (n_v_term == 1) TF_RETURN_IF_ERROR(c->Merge(c->input(kIndicesInput + 1), grad, &unused));
  if (c->num_outputs() > 0) c->set_output(0, var);
  return absl::OkStatus();
}

// The multi-tensor ops: vars, ms and vs are vectors of N handles; the grads can have any shapes
// (the kernel matches each to its variable); the hyperparameters (and, for the NoAdvance op, the
// beta power values) are scalars. The op has no outputs.
absl::Status MultiAdamShapeFn(InferenceContext* c, bool advances_beta_powers) {
  TF_RETURN_IF_ERROR(CheckScalarType(c));
  int n;
  TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
  ShapeHandle handles;
  for (int i = 0; i < 3; ++i) {
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 1, &handles));
    shape_inference::DimensionHandle unused_dim;
    TF_RETURN_IF_ERROR(c->WithValue(c->Dim(handles, 0), n, &unused_dim));
  }
  const int first_scalar = advances_beta_powers ? 5 : 3;
  ShapeHandle unused;
  for (int i = first_scalar; i < 9; ++i) {
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
  }
  int n_vhats;
  TF_RETURN_IF_ERROR(c->GetAttr("n_vhats", &n_vhats));
  if (n_vhats == 1) {  // one more vector of N handles, after the N grads
    TF_RETURN_IF_ERROR(c->WithRank(c->input(9 + n), 1, &handles));
    shape_inference::DimensionHandle unused_dim;
    TF_RETURN_IF_ERROR(c->WithValue(c->Dim(handles, 0), n, &unused_dim));
  }
  return CheckVariantInputs(c, "n_vhats", /*is_resource=*/true, nullptr);
}

// The unpacked multi-tensor op: N handles per list (vars, ms, vs; vhats none or N), then the six
// scalars, the N grads and the optional scalars. Each variable's shape is merged with its m, v,
// vhat and grad where the handles carry shapes.
absl::Status UnpackedMultiAdamShapeFn(InferenceContext* c) {
  TF_RETURN_IF_ERROR(CheckScalarType(c));
  int n, n_vhats, n_weight_decay, n_one_minus_beta;
  TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
  TF_RETURN_IF_ERROR(c->GetAttr("n_vhats", &n_vhats));
  TF_RETURN_IF_ERROR(c->GetAttr("n_weight_decay", &n_weight_decay));
  TF_RETURN_IF_ERROR(c->GetAttr("n_one_minus_beta", &n_one_minus_beta));
  if (n_vhats != 0 && n_vhats != n) {
    return absl::InvalidArgumentError(absl::StrCat("vhats takes none or N = ", n,
                                                   " variables, got ", n_vhats));
  }
  if (n_weight_decay > 1) return absl::InvalidArgumentError("weight_decay takes at most one scalar");
  if (n_one_minus_beta != 0 && n_one_minus_beta != 2) {
    return absl::InvalidArgumentError(
        "one_minus_beta takes none or two scalars (1 - beta1, 1 - beta2)");
  }
  const int first_scalar = 3 * n, first_grad = first_scalar + 6, first_vhat = first_grad + n;
  ShapeHandle unused;
  for (int i = first_scalar; i < first_grad; ++i) {
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
  }
  for (int i = first_vhat + n_vhats; i < c->num_inputs(); ++i) {
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &unused));
  }
  for (int k = 0; k < n; ++k) {
    ShapeHandle s = c->input(first_grad + k);
    for (int list = 0; list < 3; ++list) {
      TF_RETURN_IF_ERROR(c->Merge(s, ResourceVariableShape(c, list * n + k), &s));
    }
    if (n_vhats == n) TF_RETURN_IF_ERROR(c->Merge(s, ResourceVariableShape(c, first_vhat + k), &s));
  }
  return absl::OkStatus();
}

}  // namespace

// Inputs and attrs every Adam op has, in stock ApplyAdam's order.
#define TF_ADAM_OP_COMMON_INPUTS(VAR_TYPE)                                         \
  Input("var: " VAR_TYPE)                                                          \
      .Input("m: " VAR_TYPE)                                                       \
      .Input("v: " VAR_TYPE)                                                       \
      .Input("beta1_power: Tscalar")                                               \
      .Input("beta2_power: Tscalar")                                               \
      .Input("lr: Tscalar")                                                        \
      .Input("beta1: Tscalar")                                                     \
      .Input("beta2: Tscalar")                                                     \
      .Input("epsilon: Tscalar")                                                   \
      .Input("grad: T")                                                            \
      .Attr("T: numbertype")                                                       \
      .Attr("Tscalar: {float, double}")

// AMSGrad, decoupled weight decay and 1 - beta as the caller rounds it, the last inputs of every
// Adam op: lists of length 0 by default, so graphs written before them load and run unchanged. VHAT is "vhat: n_vhat * <type>"
// (or the multi-tensor ops' "vhats: n_vhats * resource", a vector of N handles).
#define TF_ADAM_OP_VARIANT_INPUTS(VHAT, VHAT_ATTR)                                \
  Input(VHAT)                                                                      \
      .Input("weight_decay: n_weight_decay * Tscalar")                             \
      .Input("one_minus_beta: n_one_minus_beta * Tscalar")                         \
      .Attr(VHAT_ATTR ": int >= 0 = 0")                                            \
      .Attr("n_weight_decay: int >= 0 = 0")                                        \
      .Attr("weight_decay_times_lr: bool = false")                                 \
      .Attr("n_one_minus_beta: int >= 0 = 0")

// The vhat input of the ops on ref variables and on resource variables (a list of refs is spelled
// Ref(N * T)).
#define TF_ADAM_OP_REF_VHAT "vhat: Ref(n_vhat * T)"
#define TF_ADAM_OP_RESOURCE_VHAT "vhat: n_vhat * resource"

#define TF_ADAM_OP_DENSE_INPUTS(VAR_TYPE, VHAT)                                    \
  TF_ADAM_OP_COMMON_INPUTS(VAR_TYPE)                                               \
      .TF_ADAM_OP_VARIANT_INPUTS(VHAT, "n_vhat")                                   \
      .Attr("use_locking: bool = false")                                           \
      .Attr("use_nesterov: bool = false")

REGISTER_OP("ApplyAdamV1")
    .TF_ADAM_OP_DENSE_INPUTS("Ref(T)", TF_ADAM_OP_REF_VHAT)
    .Output("out: Ref(T)")
    .SetShapeFn([](InferenceContext* c) { return AdamShapeFn(c, /*is_resource=*/false); })
    .Doc(R"doc(
Update '*var' by one Adam step (stock ApplyAdam's rule and operation order).

alpha = lr * sqrt(1 - beta2_power) / (1 - beta1_power)
m += (grad - m) * (1 - beta1)
v += (grad * grad - v) * (1 - beta2)
var -= (m * alpha) / (sqrt(v) + epsilon)   (nesterov: m -> grad * (1 - beta1) + beta1 * m)

Half and bfloat16 variables are updated in float32 and rounded once; their hyperparameters are float32.

vhat: none, or one variable of var's shape: AMSGrad (stock ApplyAdamWithAmsgrad's rule),
  vhat = max(vhat, v) and sqrt(vhat) in place of sqrt(v).
weight_decay: none, or one scalar: decoupled weight decay in the same pass, before the step:
  var -= weight_decay * var (TF1 contrib's AdamW, TF Addons), or with weight_decay_times_lr
  var -= (var * weight_decay) * lr (Keras 3's AdamW).
one_minus_beta: none, or two scalars used as (1 - beta1, 1 - beta2) instead of computing them
  (Keras 3 computes them from Python floats in double precision and rounds once).
)doc");

REGISTER_OP("ResourceApplyAdamV1")
    .TF_ADAM_OP_DENSE_INPUTS("resource", TF_ADAM_OP_RESOURCE_VHAT)
    .SetShapeFn([](InferenceContext* c) { return AdamShapeFn(c, /*is_resource=*/true); })
    .Doc("ApplyAdamV1 on resource variables: var, m and v are handles.");

#undef TF_ADAM_OP_DENSE_INPUTS

#define TF_ADAM_OP_SPARSE_INPUTS(VAR_TYPE, VHAT)                                   \
  TF_ADAM_OP_COMMON_INPUTS(VAR_TYPE)                                               \
      .Input("indices: Tindices")                                                  \
      .Input("v_term: n_v_term * T")                                               \
      .TF_ADAM_OP_VARIANT_INPUTS(VHAT, "n_vhat")                                   \
      .Attr("Tindices: {int32, int64}")                                            \
      .Attr("n_v_term: int >= 0 = 0")                                              \
      .Attr("use_locking: bool = false")                                           \
      .Attr("lazy: bool = false")                                                  \
      .Attr("scale_first: bool = false")                                           \
      .Attr("dense_rule: bool = false")

REGISTER_OP("SparseApplyAdamV1")
    .TF_ADAM_OP_SPARSE_INPUTS("Ref(T)", TF_ADAM_OP_REF_VHAT)
    .Output("out: Ref(T)")
    .SetShapeFn([](InferenceContext* c) { return SparseAdamShapeFn(c, /*is_resource=*/false); })
    .Doc(R"doc(
Adam for the rows of var named by indices (an IndexedSlices gradient), in one op.

Duplicate indices are summed first. lazy=false is stock AdamOptimizer's sparse rule: m and v decay
on every row, the gradient rows are added, var is updated on every row. lazy=true (LazyAdam) updates
m, v and var of the named rows only. Every index is checked before any row is written.
scale_first: v's gradient term is g * (g * (1 - beta2)), the order grappler gives stock's graph,
instead of (g * g) * (1 - beta2) as stock's Python writes it (and eager runs it).
v_term: none, or one tensor of grad's shape: v's gradient term per gradient row, used instead of
computing it (summed over duplicate indices like grad). The optimizer computes it with TF ops
written as stock writes them, so grappler treats stock's expression and ours alike.
vhat, weight_decay: as ApplyAdamV1's, on the rows the mode updates; the weight decay applies to
the named rows only (as TF Addons' AdamW), once per row however often its index repeats.
dense_rule: each row follows ApplyAdamV1's rule (m += (g - m) * (1 - beta1), ...) with g the row's
summed gradient and g * g replaced by v_term, which is then required: the square of each gradient
row (summed over duplicates like grad). Without lazy, rows without a gradient take g = 0 and the
weight decay too. This is Keras 3's Adam on an IndexedSlices gradient, which it densifies.
one_minus_beta: as ApplyAdamV1's.
)doc");

REGISTER_OP("ResourceSparseApplyAdamV1")
    .TF_ADAM_OP_SPARSE_INPUTS("resource", TF_ADAM_OP_RESOURCE_VHAT)
    .SetShapeFn([](InferenceContext* c) { return SparseAdamShapeFn(c, /*is_resource=*/true); })
    .Doc("SparseApplyAdamV1 on resource variables: var, m and v are handles.");

#undef TF_ADAM_OP_SPARSE_INPUTS

// The multi-tensor ops' inputs, the beta powers' type aside (variables or values).
#define TF_ADAM_OP_MULTI_INPUTS(POWER_TYPE)                                         \
  Input("vars: resource")                                                          \
      .Input("ms: resource")                                                       \
      .Input("vs: resource")                                                       \
      .Input("beta1_power: " POWER_TYPE)                                           \
      .Input("beta2_power: " POWER_TYPE)                                           \
      .Input("lr: Tscalar")                                                        \
      .Input("beta1: Tscalar")                                                     \
      .Input("beta2: Tscalar")                                                     \
      .Input("epsilon: Tscalar")                                                   \
      .Input("grads: N * T")                                                       \
      .TF_ADAM_OP_VARIANT_INPUTS("vhats: n_vhats * resource", "n_vhats")           \
      .Attr("N: int >= 1")                                                         \
      .Attr("T: numbertype")                                                       \
      .Attr("Tscalar: {float, double}")                                            \
      .Attr("use_locking: bool = false")                                           \
      .Attr("use_nesterov: bool = false")

REGISTER_OP("ResourceApplyAdamV1Multi")
    .TF_ADAM_OP_MULTI_INPUTS("resource")
    .Attr("Tpower: {float, double} = DT_FLOAT")
    .SetShapeFn([](InferenceContext* c) { return MultiAdamShapeFn(c, true); })
    .Doc(R"doc(
One whole Adam step for N resource variables: ResourceApplyAdamV1 on every (vars[i], ms[i], vs[i],
grads[i]) with the beta powers read from their variables, then beta1_power *= beta1 and
beta2_power *= beta2 (in Tpower, the accumulators' dtype) after all N updates. vars, ms and vs are
vectors of N handles each (tf.stack of the handles).

All or nothing: any bad input among the N (shape, dtype, uninitialized, the same variable twice) is
an error and no variable is changed. The variables must be on one device and of one dtype T.
vhats (AMSGrad: none, or one vector of N handles), weight_decay and one_minus_beta as in
ApplyAdamV1, for all N.
)doc");

REGISTER_OP("ResourceApplyAdamV1MultiNoAdvance")
    .TF_ADAM_OP_MULTI_INPUTS("Tscalar")
    .SetShapeFn([](InferenceContext* c) { return MultiAdamShapeFn(c, false); })
    .Doc(R"doc(
ResourceApplyAdamV1Multi with the beta powers given as values and left for the caller to advance:
for a step with several such groups (devices, dtypes) or other updates, all reading the same powers.
)doc");

#undef TF_ADAM_OP_MULTI_INPUTS

REGISTER_OP("ResourceApplyAdamV1MultiUnpacked")
    .Input("vars: N * resource")
    .Input("ms: N * resource")
    .Input("vs: N * resource")
    .Input("beta1_power: Tscalar")
    .Input("beta2_power: Tscalar")
    .Input("lr: Tscalar")
    .Input("beta1: Tscalar")
    .Input("beta2: Tscalar")
    .Input("epsilon: Tscalar")
    .Input("grads: N * T")
    .TF_ADAM_OP_VARIANT_INPUTS("vhats: n_vhats * resource", "n_vhats")
    .Attr("N: int >= 1")
    .Attr("T: numbertype")
    .Attr("Tscalar: {float, double}")
    .Attr("use_locking: bool = false")
    .Attr("use_nesterov: bool = false")
    .SetShapeFn(UnpackedMultiAdamShapeFn)
    .Doc(R"doc(
ResourceApplyAdamV1MultiNoAdvance with the handles as lists of N inputs instead of vectors: the form
XLA compiles (tf2xla reads a resource variable from its own input, never out of a vector), with an
XLA kernel that runs the same CPU loop in one custom call. vhats: none, or N handles (AMSGrad).
)doc");

#undef TF_ADAM_OP_COMMON_INPUTS
#undef TF_ADAM_OP_VARIANT_INPUTS
#undef TF_ADAM_OP_REF_VHAT
#undef TF_ADAM_OP_RESOURCE_VHAT

REGISTER_OP("TfAdamOpCpuSimd")
    .Output("simd: string")
    .SetIsStateful()  // not constant-folded: it reports the process it runs in
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->Scalar());
      return absl::OkStatus();
    })
    .Doc("The instruction set of tf_adam_op's CPU loop in this process: avx512f, avx2 or baseline.");

// A marker that ops.py puts into every graph and function using the ops above, ahead of them. It
// does nothing and nothing depends on it, so it is pruned before a graph runs. Its name is its
// purpose: a process that loads such a graph (a SavedModel, say) without `import tf_adam_op` meets
// it first among the unregistered ops, and TensorFlow's error then reads "Op type not registered
// 'Import_tf_adam_op_before_loading_this_graph'" rather than naming an op the user never called.
REGISTER_OP("Import_tf_adam_op_before_loading_this_graph")
    .SetShapeFn(shape_inference::NoOutputs)
    .Doc("Does nothing; marks a graph that needs `import tf_adam_op` before it is loaded.");

}  // namespace tensorflow
