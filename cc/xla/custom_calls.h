// The XLA custom calls of the Adam ops: their target names and operand layout, shared by the XLA
// kernels that emit them (adam_xla_kernels.cc) and the handlers that run them
// (cpu_custom_calls.cc). Typed FFI (API_VERSION_TYPED_FFI): the handlers see every operand as a
// buffer and the flags as i64 attributes.
//
// Operands: the six scalars of every Adam op (beta1_power, beta2_power, lr, beta1, beta2, epsilon;
// the compute type), then weight_decay when kAttrWeightDecay != 0, then 1 - beta1 and 1 - beta2
// when kAttrOneMinusBeta != 0, then the tensors:
//   dense:  per variable k of kAttrN: var, m, v, vhat (kAttrAmsgrad), grad
//   sparse: var, m, v, vhat (kAttrAmsgrad), grad, indices, v_term (kAttrVTerm)
// Results: per variable var, m, v (and vhat), each aliased to its operand, so XLA updates the
// variables' buffers in place (it copies an operand first only where its old value is still read).
#ifndef TF_ADAM_OP_XLA_CUSTOM_CALLS_H_
#define TF_ADAM_OP_XLA_CUSTOM_CALLS_H_

namespace tf_adam_op {
namespace xla_calls {

constexpr char kDenseTarget[] = "tf_adam_op_dense_adam";
constexpr char kSparseTarget[] = "tf_adam_op_sparse_adam";
// The 8-bit-state ops (adam_8bit_xla_kernels.cc): operands the scalars (as above), then per
// variable (dense: kAttrN of them; sparse: one) var, m_codes, m_absmax, v_codes, v_absmax
// (vhat_codes, vhat_absmax: kAttrAmsgrad), grad, and for the sparse call indices, v_term; results
// each variable's var and states, aliased. Attributes as the float calls', and for the dense call
// kAttrListed and kAttrNames (what its errors call the variables).
constexpr char kDense8bitTarget[] = "tf_adam_op_dense_adam_8bit";
constexpr char kSparse8bitTarget[] = "tf_adam_op_sparse_adam_8bit";
// Check8bitScaleValues: operands the scale vectors, result a float32 scalar (1.0); attribute
// kAttrNames, their names joined by newlines.
constexpr char kCheckScalesTarget[] = "tf_adam_op_check_8bit_scales";
// CheckIndicesInRange (check_indices_xla.cc): operands the N index vectors (s32 or s64), then an
// s64 vector of their variables' row counts; result a float32 scalar (1.0); attribute kAttrNames.
constexpr char kCheckIndicesTarget[] = "tf_adam_op_check_indices";

constexpr int kScalars = 6;

// Attributes (i64).
constexpr char kAttrN[] = "n";                            // dense: variables in the call
constexpr char kAttrAmsgrad[] = "amsgrad";                // 0 or 1
constexpr char kAttrNesterov[] = "nesterov";              // 0 or 1 (dense)
constexpr char kAttrWeightDecay[] = "weight_decay";       // WeightDecay: 0 none, 1 var, 2 var*lr
constexpr char kAttrOneMinusBeta[] = "one_minus_beta";    // 0 or 1
constexpr char kAttrLazy[] = "lazy";                      // sparse
constexpr char kAttrScaleFirst[] = "scale_first";         // sparse
constexpr char kAttrDenseRule[] = "dense_rule";           // sparse
constexpr char kAttrVTerm[] = "v_term";                   // sparse: 0 or 1
constexpr char kAttrListed[] = "listed";                  // dense 8-bit: inputs were lists of N
// A string: names joined by newlines (Check8bitScaleValues: the scale vectors'; the dense 8-bit
// call: the variables', or empty; CheckIndicesInRange: the index vectors').
constexpr char kAttrNames[] = "names";

}  // namespace xla_calls
}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_XLA_CUSTOM_CALLS_H_
