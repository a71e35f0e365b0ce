// The arguments of one update as plain pointers, shared by the CPU kernels and the CUDA launchers
// (no TensorFlow or CUDA types): where the scalars are, and the tensors of a multi-tensor update.
#ifndef TF_ADAM_OP_CORE_UPDATE_ARGUMENTS_H_
#define TF_ADAM_OP_CORE_UPDATE_ARGUMENTS_H_

#include <cstdint>

#include "core/adam_update_rule.h"

namespace tf_adam_op {

// Pointers to the scalars of one update, in the memory of the device that runs it. lr, beta1,
// beta2 and epsilon are of the compute type C (float, or double for double variables); the beta
// powers are float or double as flagged (the optimizer's accumulators are float32 variables even
// when the model is float64).
struct ScalarPointers {
  const void* beta1_power;
  const void* beta2_power;
  bool powers_are_double;
  const void* lr;
  const void* beta1;
  const void* beta2;
  const void* epsilon;
  // The decoupled weight decay (compute type C), null when the update has none.
  const void* weight_decay = nullptr;
  // 1 - beta1 and 1 - beta2 as the caller computed them (compute type C), or null: then C(1) - beta.
  const void* one_minus_beta1 = nullptr;
  const void* one_minus_beta2 = nullptr;
};

template <typename C>
TF_ADAM_OP_HOST_DEVICE inline C LoadPower(const void* p, bool is_double) {
  return is_double ? static_cast<C>(*static_cast<const double*>(p))
                   : static_cast<C>(*static_cast<const float*>(p));
}

// The per-step scalars, read where the pointers point (host memory for the CPU kernels, device
// memory inside a CUDA kernel).
template <typename C>
TF_ADAM_OP_HOST_DEVICE inline AdamStep<C> LoadStep(const ScalarPointers& s) {
  AdamStep<C> step = MakeAdamStep<C>(LoadPower<C>(s.beta1_power, s.powers_are_double),
                                     LoadPower<C>(s.beta2_power, s.powers_are_double),
                                     *static_cast<const C*>(s.lr), *static_cast<const C*>(s.beta1),
                                     *static_cast<const C*>(s.beta2),
                                     *static_cast<const C*>(s.epsilon));
  if (s.weight_decay != nullptr) step.weight_decay = *static_cast<const C*>(s.weight_decay);
  if (s.one_minus_beta1 != nullptr) {
    step.one_minus_beta1 = *static_cast<const C*>(s.one_minus_beta1);
    step.one_minus_beta2 = *static_cast<const C*>(s.one_minus_beta2);
  }
  return step;
}

// One tensor of a multi-tensor update.
struct TensorPointers {
  void* var;
  void* m;
  void* v;
  const void* grad;
  int64_t size;
  void* vhat = nullptr;  // AMSGrad's max of v, laid out as v; null without AMSGrad
};

}  // namespace tf_adam_op

#endif  // TF_ADAM_OP_CORE_UPDATE_ARGUMENTS_H_
