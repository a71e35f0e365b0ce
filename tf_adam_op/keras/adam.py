"""tf_adam_op.keras.Adam and AdamW: Keras 3's optimizers, with the update made by the fused ops.

Everything but the update itself is Keras's own, inherited: the constructor and get_config, the
variables (`iteration`, `<var>_momentum`, `<var>_velocity`, `<var>_velocity_hat`) and so checkpoints
and .keras files, clipping, loss scaling, gradient accumulation, EMA, constraints, tf.distribute.
What changes is the TensorFlow backend's update step (`_backend_update_step`): Keras runs some
ten TF ops per variable; here each (device, dtype, decays) group of dense gradients is one
ResourceApplyAdamV1MultiNoAdvance op and each IndexedSlices gradient one ResourceSparseApplyAdamV1
op; eagerly the weight decay (`var -= var * wd * lr`, which Keras applies in a pass of its own just
before) is done by the same op in the same pass, in graphs by Keras's own pass (see
_apply_weight_decay).

The numbers are Keras's, bit for bit in float32/float64: the ops get the beta powers as Keras
computes them (`beta ** (iterations + 1)` in the variable's dtype), 1 - beta1 and 1 - beta2 rounded
from Python doubles as Keras rounds them (`one_minus_beta`), and for IndexedSlices the dense form
of the sparse op (`dense_rule`): Keras densifies the gradient, and squares its slices before
summing duplicates. float16/bfloat16 variables are computed in float32 and rounded once (Keras
computes them in their own dtype, where beta_2 = 0.999 is 1.0 in bfloat16 and they never move).

Under XLA (jit_compile=True, e.g. `fit`'s default where the model allows it) the same ops run
through their XLA kernels (one custom call into the fused CPU loop per op, see docs/xla.md), with
the weight decay in the op: the numbers of an eager step. Where those kernels cannot be used (a
build without them, GPU variables in a build without the CUDA kernels, TF_ADAM_OP_XLA_KERNELS=0,
a tf.distribute strategy)
float32/float64 dense updates run Keras's own update_step (Keras's numbers, as compiled by XLA),
and what Keras has no rule for (16-bit variables in float32, lazy rows) runs a composite of TF ops
in the fused ops' order (_xla_step.py). Under a tf.distribute strategy each
variable's update is one fused op per replica, through Keras's own per-variable distribution.
"""

import dataclasses
import operator

import keras
import tensorflow as tf
from tensorflow.python.distribute import distribute_lib

from tf_adam_op import _fused
from tf_adam_op import _gradient_checks
from tf_adam_op import _xla
from tf_adam_op import ops
from tf_adam_op.keras import _decisions
from tf_adam_op.keras import _xla_step
from tf_adam_op.optimizer import SUPPORTED_DTYPES

__all__ = ["Adam", "AdamW"]

# How many step plans (variable lists) are kept; a model usually has one.
_PLANS_KEPT = 16

_tf_variable = _decisions.tf_variable


@dataclasses.dataclass
class _PlannedGroup:
  """One multi-tensor op of a step: its variables' dtype, decay, device, the positions of their
  gradients in the step's list, and the packed handles (vars, ms, vs, and vhats with amsgrad)."""
  dtype: tf.DType
  decays: bool
  device: str
  positions: list
  handles: tuple


@dataclasses.dataclass
class _StepPlan:
  variables: tuple  # the Keras variables the plan is for (checked by identity)
  keras_positions: list  # variables Keras's own update_step updates (_keras_computes)
  sparse_positions: list  # where the IndexedSlices gradients are: one sparse op each
  groups: list


def _as_dtype(grad, dtype):
  """A dense gradient as a tensor of its variable's dtype (Keras casts it too)."""
  if isinstance(grad, tf.Tensor) and grad.dtype == dtype:
    return grad
  return tf.cast(grad, dtype)


def _as_keras_converts(value, dtype):
  """A Python number straight to `dtype` (keras.ops' arithmetic converts it so), else a cast."""
  if isinstance(value, (int, float)):
    return tf.constant(value, dtype)
  return tf.cast(value, dtype)


def _repeated(variables):
  """The ids of the tf.Variables given more than once in one step (a C-level check first: the
  usual step gives each once)."""
  if len(set(map(id, variables))) == len(variables):
    return _NONE_REPEATED
  seen, repeated = set(), set()
  for var in variables:
    key = id(_tf_variable(var))
    (repeated if key in seen else seen).add(key)
  return frozenset(repeated)


_NONE_REPEATED = frozenset()


def _rounds(grads, variables):
  """The step's (grads, variables) split into rounds of distinct variables, in order: the k-th
  gradient of a variable given several times is in round k. Keras applies them in turn."""
  rounds, seen = [], {}
  for grad, var in zip(grads, variables):
    k = seen.get(id(_tf_variable(var)), 0)
    seen[id(_tf_variable(var))] = k + 1
    if k == len(rounds):
      rounds.append(([], []))
    rounds[k][0].append(grad)
    rounds[k][1].append(var)
  return rounds


def _is_16_bit(var):
  return var.dtype.base_dtype in (tf.float16, tf.bfloat16)


class _FusedAdamMixin:
  """The fused update step shared by Adam and AdamW (see the module doc).

  What each step does is Keras's decision (_decisions.py): which variables decay, whether Keras's
  arithmetic mixes dtypes, what a strategy does with the gradients, what is accepted. The fused
  ops replace only Keras's arithmetic."""

  def __init__(self, *args, lazy=False, **kwargs):
    super().__init__(*args, **kwargs)
    self.lazy = bool(lazy)
    self._plans = {}  # see _step_plan
    self._variable_dims = {}  # see _shapes_as_variables

  def get_config(self):
    """Keras's config; `lazy` only when True, so a default config is one Keras's own class reads
    (`keras.optimizers.Adam.from_config`), and a lazy one is refused there, not silently dropped."""
    config = super().get_config()
    if self.lazy:
      config["lazy"] = True
    return config

  _WHO = "tf_adam_op.keras"

  # --- what Keras's base class calls -------------------------------------------------------------

  def _backend_apply_gradients(self, grads, trainable_variables):
    """Keras's step, after the checks that must come before anything is written (docs/errors.md):
    a dense gradient that does not broadcast to its variable is a ValueError now (while tracing,
    as Keras's own shape inference raises it); an IndexedSlices index out of range raises now
    (eager) or, in a graph, stops the step before any of its writes, `iterations` included."""
    if self._shapes_as_variables(grads, trainable_variables):
      return super()._backend_apply_gradients(grads, trainable_variables)  # nothing to check
    tf_variables = [_tf_variable(v) for v in trainable_variables]
    _gradient_checks.check_dense_shapes(grads, tf_variables, self._WHO)
    guards = _gradient_checks.runtime_guards(grads, tf_variables, self._WHO, broadcast=True)
    if not guards:
      return super()._backend_apply_gradients(grads, trainable_variables)
    with tf.control_dependencies(guards):
      super()._backend_apply_gradients(grads, trainable_variables)
      # Keras advances `iterations` after this returns; a read made here, after the checks, is
      # what that write waits for (tf.function orders the ops on one variable as written).
      self._iterations.value.read_value()
    return None

  def _apply_weight_decay(self, variables):
    """Keras's own pass, for the variables whose decay the fused op does not do itself."""
    if self.weight_decay is None:
      return super()._apply_weight_decay(variables)  # Keras's: nothing to do
    repeated = _repeated(variables)
    keras_pass = [v for v in variables
                  if not self._decays_in_op(_tf_variable(v), id(_tf_variable(v)) in repeated)]
    if keras_pass:
      super()._apply_weight_decay(keras_pass)

  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    if distribute_lib.has_strategy():
      # Keras's path: its all-reduce of the gradients, then the strategy's per-variable update,
      # which calls update_step (one fused op each), with and without XLA.
      return super()._backend_update_step(grads, trainable_variables, learning_rate)
    repeated = _repeated(trainable_variables)
    if not self._shapes_as_variables(grads, trainable_variables):
      grads = [grad if isinstance(grad, tf.IndexedSlices)
               else _gradient_checks.as_variable_shape(grad, _tf_variable(var))
               for grad, var in zip(grads, trainable_variables)]
    if not repeated:
      return self._update_round(grads, trainable_variables, learning_rate, repeated)
    for round_grads, round_vars in _rounds(grads, trainable_variables):
      self._update_round(round_grads, round_vars, learning_rate, repeated)
    return None

  def update_step(self, gradient, variable, learning_rate):
    """One variable's update: the path under a strategy, and Keras's own where Keras's arithmetic
    is not the fused ops' (see _keras_computes)."""
    var = _tf_variable(variable)
    if self._keras_computes(var):
      return super().update_step(gradient, variable, learning_rate)
    if not isinstance(gradient, tf.IndexedSlices):
      gradient = _gradient_checks.as_variable_shape(gradient, var)
    if _xla.in_xla_context() and not _xla.kernels_usable([var]):
      if _xla_step.keras_rule_applies(self, gradient, var):
        return super().update_step(gradient, variable, learning_rate)
      return _xla_step.update(self, gradient, variable, learning_rate)
    return self._update_one(gradient, variable, learning_rate)

  def _shapes_as_variables(self, grads, trainable_variables):
    """Whether every gradient is dense, of exactly its variable's shape: the usual step, checked in
    one C-level pass against the variables' shapes (kept per variable list), which then needs
    no shape check, no broadcast and no index check."""
    key = tuple(map(id, trainable_variables))
    dims = self._variable_dims.get(key)
    if dims is None:
      if len(self._variable_dims) >= _PLANS_KEPT:
        self._variable_dims.pop(next(iter(self._variable_dims)))
      dims = self._variable_dims[key] = _gradient_checks.variable_dims(
          [_tf_variable(v) for v in trainable_variables])
    return _gradient_checks.dense_shapes_equal(grads, dims)

  # --- decisions: Keras's, and where the fused op takes over -----------------------------------

  def _keras_computes(self, var):
    """Whether Keras's own update_step updates `var`: float32/float64 variables whose Keras update
    computes a hyperparameter term in another dtype (a NumPy float64 beta on a float32 variable;
    _decisions.promoted_terms). 16-bit variables are computed in float32 by the fused ops."""
    dtype = var.dtype.base_dtype
    if dtype not in (tf.float32, tf.float64):
      return False
    return bool(_decisions.promoted_terms_cached(self, dtype))

  @staticmethod
  def _fused_under_xla(variables):
    """Whether this XLA step of `variables` runs the fused ops (their XLA kernels)."""
    return _xla.in_xla_context() and _xla.kernels_usable([_tf_variable(v) for v in variables])

  def _decays_in_op(self, var, repeated=False):
    """Whether the fused op applies `var`'s weight decay in its own pass; otherwise Keras's own
    pass does, before the update. In the op: 16-bit variables always (computed in float32 and
    rounded once, the decay in the same pass, in every mode); float32/float64 eagerly and under XLA
    with the ops' kernels. Keras's pass: float32/float64 in graphs without XLA (grappler may
    rewrite Keras's var * wd * lr as var * (wd * lr), which rounds differently: only Keras's own
    expression is sure to get the same rewrite), variables Keras's update_step updates, and a
    variable given more than once in a step (Keras decays it once per time it is given, before
    any update)."""
    if repeated or self._keras_computes(var):
      return False
    return _is_16_bit(var) or tf.executing_eagerly() or self._fused_under_xla([var])

  def _decays(self, var, repeated=False):
    """Whether the op applies var's weight decay: Keras decays it, and the op does it."""
    return self._decays_in_op(var, repeated) and _decisions.uses_weight_decay(self, var)

  # --- the fused step ------------------------------------------------------------------------------

  def _update_round(self, grads, trainable_variables, learning_rate, repeated):
    """The updates of distinct variables: Keras's own update_step where it computes, one fused op
    per IndexedSlices gradient, one multi-tensor op per (device, dtype, decays) group."""
    if _xla.in_xla_context():
      if self._fused_under_xla(trainable_variables):
        return self._xla_fused_update_step(grads, trainable_variables, learning_rate, repeated)
      return self._xla_update_step(grads, trainable_variables, learning_rate)
    sparse = tuple(isinstance(grad, tf.IndexedSlices) for grad in grads)
    plan = self._step_plan(trainable_variables, sparse, repeated)
    for i in plan.keras_positions:
      super().update_step(grads[i], trainable_variables[i], learning_rate)
    for i in plan.sparse_positions:
      self._update_one(grads[i], trainable_variables[i], learning_rate, id(
          _tf_variable(trainable_variables[i])) in repeated)
    for group in plan.groups:
      self._update_group(group, [_as_dtype(grads[i], group.dtype) for i in group.positions],
                         learning_rate)
    return None

  def _step_plan(self, trainable_variables, sparse, repeated):
    """What a step over these variables needs besides its gradients, made once per variable list
    (and sparse pattern): the groups, their decays and their packed handle vectors, so a step
    pays no per-variable lookup (which costs Keras's eager steps most of their time)."""
    key = (tuple(map(id, trainable_variables)), sparse, self.weight_decay is None,
           tf.executing_eagerly(), _decisions.keras_arithmetic_signature(self), repeated)
    plan = self._plans.get(key)
    if plan is not None and all(map(operator.is_, plan.variables, trainable_variables)):
      return plan
    dense, keras_positions = [], []
    for i, (keras_var, is_sparse) in enumerate(zip(trainable_variables, sparse)):
      var = _tf_variable(keras_var)
      self._check_dtype(var)
      if self._keras_computes(var):
        keras_positions.append(i)
      elif not is_sparse:
        dense.append(((i, keras_var), var))
    decays = {id(var): self._decays(var, id(var) in repeated) for _, var in dense}
    groups = []
    for group in _fused.group_updates(dense, lambda var: decays[id(var)]):
      keras_vars = [kv for _, kv in group.grads]
      slot_lists = [self._momentums, self._velocities]
      if self.amsgrad:
        slot_lists.append(self._velocity_hats)
      handles = self._packed(group.variables,
                             [[self._slot(slots, kv) for kv in keras_vars] for slots in slot_lists],
                             group.device)
      groups.append(_PlannedGroup(group.dtype, group.decays, group.device,
                                  [i for i, _ in group.grads], handles))
    sparse_positions = [i for i, is_sparse in enumerate(sparse)
                        if is_sparse and i not in keras_positions]
    plan = _StepPlan(tuple(trainable_variables), keras_positions, sparse_positions, groups)
    if len(self._plans) >= _PLANS_KEPT:
      self._plans.pop(next(iter(self._plans)))
    self._plans[key] = plan
    return plan

  # --- the ops' inputs, as Keras computes them ---------------------------------------------------

  def _scalars(self, dtype, learning_rate):
    """beta1_power, beta2_power, lr, beta1, beta2, epsilon in the compute dtype of `dtype`, each
    converted as Keras converts it, and (1 - beta1, 1 - beta2) as Keras rounds them."""
    compute = ops.compute_dtype(dtype)
    # Keras: ops.cast(self.beta_1, dtype), which makes a Python float a float32 first (so a float64
    # variable's powers are of float32(0.9)), then ops.power(beta, cast(iterations + 1)).
    local_step = tf.cast(self.iterations + 1, compute)
    beta_1, beta_2 = tf.cast(self.beta_1, compute), tf.cast(self.beta_2, compute)
    scalars = (tf.pow(beta_1, local_step), tf.pow(beta_2, local_step),
               tf.cast(learning_rate, compute), beta_1, beta_2,
               _as_keras_converts(self.epsilon, compute))
    # Keras multiplies by `1 - self.beta_1`, for a Python float a double rounded once to the
    # variable's dtype: not float32(1) - float32(beta_1).
    one_minus_beta = tuple(_as_keras_converts(1 - b, compute) for b in (self.beta_1, self.beta_2))
    return scalars, one_minus_beta

  def _options(self, dtype, decays):
    """The weight decay input, tf.cast(weight_decay, dtype) as Keras casts it, when decaying."""
    if not decays:
      return {}
    return dict(weight_decay=tf.cast(self.weight_decay, ops.compute_dtype(dtype)),
                weight_decay_times_lr=True)

  @staticmethod
  def _check_dtype(var):
    dtype = var.dtype.base_dtype
    if dtype not in SUPPORTED_DTYPES:
      raise ValueError(
          f"tf_adam_op.keras cannot update variable {var.name!r} of dtype {dtype.name}: supported "
          f"dtypes are {', '.join(d.name for d in SUPPORTED_DTYPES)}")

  # --- the updates -------------------------------------------------------------------------------

  def _slot(self, slots, keras_var):
    return _tf_variable(slots[self._get_variable_index(keras_var)])

  def _update_one(self, grad, keras_var, learning_rate, repeated=False):
    """One variable's fused op: the sparse op for IndexedSlices, else the single-variable op."""
    var = _tf_variable(keras_var)
    self._check_dtype(var)
    dtype = var.dtype.base_dtype
    m, v = self._slot(self._momentums, keras_var), self._slot(self._velocities, keras_var)
    scalars, one_minus_beta = self._scalars(dtype, learning_rate)
    extra = self._options(dtype, self._decays(var, repeated))
    if self.amsgrad:
      extra["vhat"] = self._slot(self._velocity_hats, keras_var).handle
    if isinstance(grad, tf.IndexedSlices):
      values = tf.cast(grad.values, dtype)  # Keras casts the gradient to the variable's dtype
      return ops.resource_sparse_apply_adam_v1(
          var.handle, m.handle, v.handle, *scalars, values, grad.indices, lazy=self.lazy,
          dense_rule=True, one_minus_beta=one_minus_beta, **extra)
    return ops.resource_apply_adam_v1(
        var.handle, m.handle, v.handle, *scalars, _as_dtype(grad, dtype),
        one_minus_beta=one_minus_beta, **extra)

  def _update_group(self, group, grads, learning_rate):
    scalars, one_minus_beta = self._scalars(group.dtype, learning_rate)
    extra = self._options(group.dtype, group.decays)
    if self.amsgrad:
      extra["vhats"] = group.handles[3]
    with tf.device(group.device):
      return ops.resource_apply_adam_v1_multi_no_advance(
          *group.handles[:3], *scalars, grads, one_minus_beta=one_minus_beta, **extra)

  @staticmethod
  def _packed(variables, slot_variables, device):
    """The handle vectors of variables and their slots (eager tensors, registered for
    tf.function's ordering: see _fused.PackedHandles), kept in the step plan."""
    host = _fused.host_device(device)
    packed = [_fused.PackedHandles(group, host) for group in (variables, *slot_variables)]
    with tf.init_scope():
      return tuple(p.resource_handle for p in packed)

  def _xla_fused_update_step(self, grads, trainable_variables, learning_rate, repeated):
    """Under XLA with the ops' XLA kernels: the step of _update_round, with each group's handles
    as lists (ResourceApplyAdamV1MultiUnpacked; XLA reads no vector of handles).

    XLA orders by data only: the dense groups' gradients depend on what the sparse ops wrote, and
    `iterations` (which Keras advances after this returns) on everything, so a sparse op that fails
    while it runs (an index out of range) stops the step before the rest is written
    (_xla.after_updates)."""
    dense, keras_rule, first_updates = [], [], []
    for i, (grad, keras_var) in enumerate(zip(grads, trainable_variables)):
      var = _tf_variable(keras_var)
      self._check_dtype(var)
      if self._keras_computes(var):
        keras_rule.append(i)
      elif isinstance(grad, tf.IndexedSlices):
        first_updates.append(
            self._update_one(grad, keras_var, learning_rate, id(var) in repeated))
      else:
        dense.append(((i, keras_var), var))
    after_sparse = _xla.after_updates(first_updates)
    grads = list(grads)
    positions = [i for (i, _), _ in dense] + [
        i for i in keras_rule if not isinstance(grads[i], tf.IndexedSlices)]
    for i, grad in zip(positions, after_sparse(*[grads[i] for i in positions])):
      grads[i] = grad
    for i in keras_rule:
      super().update_step(grads[i], trainable_variables[i], learning_rate)
    decays = {id(var): self._decays(var, id(var) in repeated) for _, var in dense}
    updates = list(first_updates)
    for group in _fused.group_updates(dense, lambda var: decays[id(var)]):
      keras_vars = [keras_var for _, keras_var in group.grads]
      handles = lambda slots: [self._slot(slots, kv).handle for kv in keras_vars]
      scalars, one_minus_beta = self._scalars(group.dtype, learning_rate)
      extra = self._options(group.dtype, group.decays)
      if self.amsgrad:
        extra["vhats"] = handles(self._velocity_hats)
      with tf.device(group.device):
        updates.append(ops.resource_apply_adam_v1_multi_unpacked(
            [var.handle for var in group.variables], handles(self._momentums),
            handles(self._velocities), *scalars,
            [_as_dtype(grads[i], group.dtype) for i, _ in group.grads],
            one_minus_beta=one_minus_beta, **extra))
    iterations = self._iterations.value
    iterations.assign(_xla.after_updates(updates)(iterations.read_value())[0])

  def _xla_update_step(self, grads, trainable_variables, learning_rate):
    """Under XLA without the ops' XLA kernels: update_step per variable (Keras's own update where
    Keras has one, else the composite of _xla_step)."""
    for grad, keras_var in zip(grads, trainable_variables):
      self.update_step(grad, keras_var, learning_rate)


@keras.saving.register_keras_serializable(package="tf_adam_op")
class Adam(_FusedAdamMixin, keras.optimizers.Adam):
  """keras.optimizers.Adam on tf_adam_op's fused ops (Keras's arguments, and `lazy`).

  Args: those of keras.optimizers.Adam, and
    lazy: (keyword) IndexedSlices gradients update m, v and var of the named rows only (LazyAdam,
      as TF Addons had it), instead of Keras's rule, which densifies them and updates every row.
  """


@keras.saving.register_keras_serializable(package="tf_adam_op")
class AdamW(_FusedAdamMixin, keras.optimizers.AdamW):
  """keras.optimizers.AdamW on tf_adam_op's fused ops (Keras's arguments, and `lazy`).

  The weight decay, var -= var * weight_decay * learning_rate before the step, is done eagerly by
  the same op as the step, in graphs by Keras's own pass (see _apply_weight_decay);
  exclude_from_weight_decay works as in Keras.
  """
