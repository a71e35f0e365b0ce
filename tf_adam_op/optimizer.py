"""tf_adam_op.AdamOptimizer: a drop-in for tf.compat.v1.train.AdamOptimizer on the fused op.

Everything a user or a checkpoint can see is stock's: the constructor, the slots "m" and "v" (saved
as <var>/Adam and <var>/Adam_1), one pair of beta power accumulators per optimizer and graph (of the
dtype of beta1/beta2 as given, float32 for Python floats; colocated with the first variable by name,
advanced by multiplication after the step), callable
hyperparameters, and the operation order, so float32/float64 results are bit-identical to stock.
What differs is underneath:
- dense gradients of resource variables go, grouped by device and dtype, to one multi-tensor op per
  group (ResourceApplyAdamV1Multi, which also advances the beta powers when it is the step's only
  update); ref variables run ApplyAdamV1, variables with a constraint ResourceApplyAdamV1;
- sparse gradients run one fused (Resource)SparseApplyAdamV1 op instead of seven TF ops;
- in eager mode a repeated step over the same variables skips the per-variable Python bookkeeping
  (the "eager fast path"), keeping stock's semantics;
- half/bfloat16 variables get float32 hyperparameters (stock rounds beta2=0.999 to 1.0 in bfloat16);
- amsgrad=True adds a "vhat" slot and stock's AMSGrad rule to every op; AdamWOptimizer (adamw.py)
  adds the decoupled weight decay the same way, as one more input of the same ops.
Inside tf.function the multi-tensor ops are ordered with every other op on their variables by an
automatic-control-dependencies resolver (_ordering.py). Nothing of one apply_gradients call lives on
the optimizer object: threads may share it.
"""

import collections
import inspect
import numbers
import operator
import threading

import tensorflow as tf
from tensorflow.python.distribute import distribute_lib
from tensorflow.python.framework import ops as framework_ops
from tensorflow.python.ops import resource_variable_ops
from tensorflow.python.saved_model import registration
from tensorflow.python.trackable import base as trackable
from tensorflow.python.training import optimizer as optimizer_lib

from tf_adam_op import _fused
from tf_adam_op import _gradient_checks
from tf_adam_op import _stock_dtypes
from tf_adam_op import _xla
from tf_adam_op import ops

__all__ = ["AdamOptimizer"]

SUPPORTED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)  # what the fused ops compute
# How many groups' packed handle vectors are kept (a model usually has one or two groups).
_PACKED_HANDLES_KEPT = 16


def _is_number(value):
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_hyperparameters(learning_rate, beta1, beta2, epsilon):
  """ValueError for values out of range; values that are not Python numbers pass unchecked."""
  checks = (
      ("learning_rate", learning_rate, lambda x: x >= 0, "must be >= 0"),
      # Stock accepts 1.0, which freezes the beta powers (TF's own tests rely on it).
      ("beta1", beta1, lambda x: 0 <= x <= 1, "must be in [0, 1]"),
      ("beta2", beta2, lambda x: 0 <= x <= 1, "must be in [0, 1]"),
      ("epsilon", epsilon, lambda x: x >= 0, "must be >= 0"),
  )
  for name, value, valid, rule in checks:
    if _is_number(value) and not valid(value):  # NaN fails every comparison, so it is rejected
      raise ValueError(f"AdamOptimizer: {name} {rule}, got {value!r}")


# Newer TFs' v1 base class (and stock Adam) take use_own_namescope_for_non_slot_vars; TF 2.15's
# and 2.16's have no such option, so there only its default is possible, as with stock.
_BASE_TAKES_NAMESCOPE_FLAG = ("use_own_namescope_for_non_slot_vars" in
                              inspect.signature(optimizer_lib.Optimizer.__init__).parameters)

_NOT_TAKEN = object()  # the fast path declined a step; the general path takes it


def _per_thread(name):
  """An attribute of the optimizer kept per thread, in its `_this_step` (a threading.local); None
  in a thread that has not set it."""
  return property(lambda self: getattr(self._this_step, name, None),
                  lambda self, value: setattr(self._this_step, name, value))


class _HeldBack(collections.namedtuple("_HeldBack", ["grad", "var"])):
  """A dense update _resource_apply_dense leaves to its group's multi-tensor op, made in _finish."""


def _all_eager_variables(grads_and_vars):
  """Whether every variable is an eager (TF2) resource variable, e.g. captured by a tf.function."""
  return all(not getattr(var, "_in_graph_mode", True) for _, var in grads_and_vars)


def _check_variable_dtypes(grads_and_vars, supported, who="tf_adam_op.AdamOptimizer"):
  """ValueError for a variable of a dtype this optimizer does not update (`supported`);
  InvalidArgumentError for a gradient whose dtype is not its variable's (stock's kernel aborts the
  process on a dense one)."""
  for grad, var in grads_and_vars:
    dtype = getattr(var, "dtype", None)
    if dtype is None:
      continue
    if dtype.base_dtype not in supported:
      why = ""
      if dtype.base_dtype in _stock_dtypes.STOCK_DTYPES:
        why = (" (complex variables take stock Adam's kernel, which has no AMSGrad and no weight "
               "decay)")
      raise ValueError(
          f"{who} cannot update variable {getattr(var, 'name', var)!r} of dtype "
          f"{dtype.base_dtype.name}: supported dtypes are "
          f"{', '.join(d.name for d in supported)}{why}")
    grad_dtype = getattr(grad, "dtype", None)
    if grad_dtype is not None and tf.as_dtype(grad_dtype).base_dtype != dtype.base_dtype:
      kind = "IndexedSlices gradient" if isinstance(grad, tf.IndexedSlices) else "gradient"
      grad_name = getattr(grad, "name", None)  # graph tensors have one, eager ones do not
      if grad_name:
        kind += f" {grad_name!r}"
      raise tf.errors.InvalidArgumentError(
          None, None,
          f"tf_adam_op.AdamOptimizer: the {kind} for variable "
          f"{getattr(var, 'name', var)!r} has dtype {tf.as_dtype(grad_dtype).name}, but the "
          f"variable is {dtype.base_dtype.name}: a gradient must have its variable's dtype")


# Registered so tf.saved_model.load revives it as an AdamOptimizer (with add_slot), not a plain object.
@registration.register_serializable(package="tf_adam_op")
class AdamOptimizer(optimizer_lib.Optimizer):
  """Adam (Kingma & Ba, 2015) with stock TF1 semantics, on fused C++ ops (see the module doc).

  Args:
    learning_rate: A float, a scalar Tensor, or (eager) a callable returning one.
    beta1: Decay rate of the first moment estimates (float, Tensor or callable).
    beta2: Decay rate of the second moment estimates (float, Tensor or callable).
    epsilon: "Epsilon hat" of the paper (float, Tensor or callable).
    use_locking: Lock the variables during the update (ref variables; resource variables are always
      locked for dense updates, as in stock).
    name: Name of the optimizer's ops and of its slots in checkpoints ("Adam").
    use_own_namescope_for_non_slot_vars: As stock: create beta1_power/beta2_power in a root scope.
    lazy: Sparse (IndexedSlices) gradients update m, v and var of the named rows only (LazyAdam),
      instead of stock's rule, which decays m and v and moves var on every row. Keyword-only.
    fused: Update the dense gradients of resource variables with one multi-tensor op per device and
      dtype (default), and take the eager fast path; False gives one op per variable. Keyword-only.
    amsgrad: AMSGrad (Reddi et al., 2018): a third slot "vhat" keeps the maximum of v, and the
      step divides by sqrt(vhat); stock's ApplyAdamWithAmsgrad numbers. Keyword-only.

  Python numbers out of range (beta outside [0, 1], negative learning rate or epsilon) are a
  ValueError here; tensors and callables are checked when their value is known (eager steps).
  """

  def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, use_locking=False,
               name="Adam", use_own_namescope_for_non_slot_vars=False, *, lazy=False, fused=True,
               amsgrad=False):
    _check_hyperparameters(learning_rate, beta1, beta2, epsilon)
    if _BASE_TAKES_NAMESCOPE_FLAG:
      super().__init__(use_locking, name, use_own_namescope_for_non_slot_vars)
    elif use_own_namescope_for_non_slot_vars:
      raise ValueError("use_own_namescope_for_non_slot_vars=True needs a newer TensorFlow: "
                       f"stock's v1 optimizers have no such option in {tf.__version__}")
    else:
      super().__init__(use_locking, name)
    self._lazy = bool(lazy)
    self._fused = bool(fused)
    self._amsgrad = bool(amsgrad)
    self._step_plan = None
    self._eager_hyper_cache = None
    self._packed_handles = {}  # id of each variable -> (variables, packed handle vectors)
    self._lr = learning_rate
    self._beta1 = beta1
    self._beta2 = beta2
    self._epsilon = epsilon
    # The step's hyperparameter tensors (_lr_t, ..., set by _prepare) are per thread: two threads
    # stepping one optimizer each see their own. Slot creation and the handle cache are locked.
    self._this_step = threading.local()
    self._state_lock = threading.RLock()

  _lr_t = _per_thread("lr_t")
  _beta1_t = _per_thread("beta1_t")
  _beta2_t = _per_thread("beta2_t")
  _epsilon_t = _per_thread("epsilon_t")
  # The ids of the variables this thread's step gives more than once (apply_gradients).
  _repeated_in_step = _per_thread("repeated_in_step")

  # --- state -------------------------------------------------------------------------------------

  def _get_beta_accumulators(self):
    with framework_ops.init_scope():
      graph = None if tf.executing_eagerly() else framework_ops.get_default_graph()
      return (self._get_non_slot_variable("beta1_power", graph=graph),
              self._get_non_slot_variable("beta2_power", graph=graph))

  def _create_slots(self, var_list):
    with self._state_lock:  # two threads' first steps must not both create beta1_power
      self._create_slots_unlocked(var_list)

  def _create_slots_unlocked(self, var_list):
    first_var = min(var_list, key=lambda x: x.name)
    self._create_non_slot_variable(
        initial_value=self._beta1, name="beta1_power", colocate_with=first_var)
    self._create_non_slot_variable(
        initial_value=self._beta2, name="beta2_power", colocate_with=first_var)
    for var in var_list:
      for slot in self._slot_names():
        self._zeros_slot(var, slot, self._name)

  def _slot_names(self):
    """m and v, and AMSGrad's vhat (tf_keras's name for it)."""
    return ("m", "v", "vhat") if self._amsgrad else ("m", "v")

  # --- the options of the update (AMSGrad here; AdamWOptimizer adds the weight decay) ------------

  def _decays(self, var):  # pylint: disable=unused-argument
    """Whether `var`'s update includes the decoupled weight decay (AdamWOptimizer)."""
    return False

  def _decay_signature(self):
    """What decides which variables decay; a step plan made under another one is not reused."""
    return None

  def _weight_decay_input(self, dtype):  # pylint: disable=unused-argument
    """The weight decay scalar for an update of `dtype` variables, in its compute dtype."""
    return None

  def _variant_inputs(self, var, handle=True):
    """The ops' AMSGrad and weight decay inputs for one variable (its handle, or its ref in TF1)."""
    extra = {}
    if self._amsgrad:
      vhat = self.get_slot(var, "vhat")
      extra["vhat"] = vhat.handle if handle else vhat
    if self._decays(var):
      extra["weight_decay"] = self._weight_decay_input(var.dtype.base_dtype)
    return extra

  def _valid_dtypes(self):
    """The fused ops' dtypes, and complex ones (stock's own kernel: _stock_dtypes.py) where stock
    has a rule for them: not with AMSGrad or a weight decay (AdamWOptimizer)."""
    if self._amsgrad or self._has_weight_decay():
      return SUPPORTED_DTYPES
    return SUPPORTED_DTYPES + _stock_dtypes.STOCK_DTYPES

  def _has_weight_decay(self):
    """Whether this optimizer applies a decoupled weight decay (AdamWOptimizer)."""
    return False

  def _who(self):
    """The optimizer's name in error messages."""
    return f"tf_adam_op.{type(self).__name__}"

  def apply_gradients(self, grads_and_vars, global_step=None, name=None,
                      skip_gradients_aggregation=False):
    grads_and_vars = tuple(grads_and_vars)  # it may be a generator; it is read more than once
    if self._fuses_here([var for _, var in grads_and_vars]) and (
        tf.executing_eagerly() or _all_eager_variables(grads_and_vars)):
      result = self._apply_on_fast_path(grads_and_vars, global_step, name)
      if result is not _NOT_TAKEN:
        return result
    _check_variable_dtypes(grads_and_vars, self._valid_dtypes(), self._who())
    # A dense gradient's shape, and every sparse index, are checked before any of the step's
    # writes (eagerly now; in a graph every op of the step waits for the checks): a second sparse
    # gradient's bad index must not leave the first one's update, nor a complex variable's (stock's
    # scatters), written. Under a strategy the base class's merge_call builds the step elsewhere:
    # there each sparse op checks its own.
    grads, variables = [g for g, _ in grads_and_vars], [v for _, v in grads_and_vars]
    _gradient_checks.check_same_shapes(grads, variables, self._who())
    guards = []
    if not distribute_lib.has_strategy():
      guards = _gradient_checks.runtime_guards(grads, variables, self._who())
    # The base class drives the step; _resource_apply_dense returns fusable updates as _HeldBack
    # markers and _finish turns them into multi-tensor ops (the markers travel in the base class's
    # list of the step's updates, so nothing of one call lives on the optimizer: threads share it).
    # A variable given more than once is updated by one op per gradient, in the order given, as
    # stock does (held back, its dense update would come after its sparse ones).
    seen = set()
    self._repeated_in_step = frozenset(
        id(v) for _, v in grads_and_vars if id(v) in seen or seen.add(id(v)))
    try:
      with tf.control_dependencies(guards):
        return super().apply_gradients(grads_and_vars, global_step=global_step, name=name,
                                       skip_gradients_aggregation=skip_gradients_aggregation)
    finally:
      self._repeated_in_step = None

  def _fuses_here(self, variables):
    """Whether a step of `variables` built now uses the multi-tensor ops: they need a step built
    here, on one machine, and under XLA the ops' XLA kernels (see _xla.py)."""
    return (self._fused and not distribute_lib.has_strategy()
            and (not _xla.in_xla_context() or _xla.kernels_usable(variables)))

  def _held_for_finish(self, variables):
    """Whether dense updates of `variables` are made in _finish: grouped when fused; and under XLA
    (with the kernels, no strategy) unfused too, one op per variable, because only there are they
    made to depend by data on the step's sparse updates (_apply_groups), so that a sparse op
    failing while it runs stops the step before any dense update is written. Not a variable the
    step gives more than once: its updates are made in the order given."""
    if any(id(v) in (self._repeated_in_step or ()) for v in variables):
      return False
    if any(map(_stock_dtypes.is_stock_dtype, variables)):  # stock's op, held back under XLA only
      return _xla.in_xla_context() and not distribute_lib.has_strategy()
    return self._fuses_here(variables) or (
        _xla.in_xla_context() and not distribute_lib.has_strategy()
        and _xla.kernels_usable(variables))

  # --- the fast path: eager steps, and tf.function traces over eager variables --------------------

  def _apply_on_fast_path(self, grads_and_vars, global_step, name):
    """One op per group and no per-variable Python, from a plan cached per variable list.

    Eager: no per-variable slot lookup, name scope or processor per step, and the handles packed
    once. Inside tf.function: one multi-tensor op per group instead of the base class's
    per-variable name scopes and colocations.
    Returns _NOT_TAKEN (nothing done) when a pair needs the general path (a sparse or non-tensor
    gradient, a ref or constrained variable, ...), which then gives stock's behaviour and errors.
    """
    plan = self._step_plan
    if plan is None or not plan.matches(grads_and_vars, self._decay_signature()):
      plan = self._build_step_plan(grads_and_vars)
      if plan is None:
        return _NOT_TAKEN
    group_grads = plan.gradients(grads_and_vars)
    if group_grads is None:
      return _NOT_TAKEN
    guards = []
    if len(plan.groups) > 1:  # one op is all or nothing by itself; several are checked first
      grads, variables = [g for g, _ in grads_and_vars], [v for _, v in grads_and_vars]
      _gradient_checks.check_same_shapes(grads, variables, self._who())
      guards = _gradient_checks.runtime_guards(grads, variables, self._who())
    in_graph = not tf.executing_eagerly()
    with framework_ops.name_scope(name, self._name, skip_on_eager=True) as scope:
      if in_graph:
        self._prepare()
      else:
        self._prepare_eagerly()
      with tf.control_dependencies(guards):  # a shape known only when the step runs
        update_ops = self._apply_groups(
            [(group.variables, group.dtype, grads, group.decays)
             for group, grads in zip(plan.groups, group_grads)],
            plan.beta_powers, [])
      if global_step is not None:
        with tf.control_dependencies(update_ops if in_graph else []):
          update_ops = [resource_variable_ops.assign_add_variable_op(
              global_step.handle, tf.convert_to_tensor(1, dtype=global_step.dtype))]
      if not in_graph:
        return None  # what stock returns in eager mode
      train_op = tf.group(*update_ops, name=scope)
      framework_ops.add_to_collection(framework_ops.GraphKeys.TRAIN_OP, train_op)
      return train_op

  def _build_step_plan(self, grads_and_vars):
    """Checks, creates the slots and caches handles for these variables; None if not fusable."""
    if not all(grad is None or _fused.is_fusable(grad, var) for grad, var in grads_and_vars):
      return None
    var_list = [var for grad, var in grads_and_vars if grad is not None]
    if not var_list:
      return None  # the general path raises stock's ValueError
    _check_variable_dtypes(grads_and_vars, self._valid_dtypes(), self._who())
    with framework_ops.init_scope():
      self._create_slots(var_list)
    # Grouped as (position, var) pairs: a group's "grads" are where its gradients will be.
    groups = _fused.group_updates(
        [(i, var) for i, (grad, var) in enumerate(grads_and_vars) if grad is not None], self._decays)
    beta_powers = self._get_beta_accumulators()
    advances = len(groups) == 1 and _fused.powers_on_device(beta_powers, groups[0].device)
    self._step_plan = _fused.StepPlan(
        variables=tuple(var for _, var in grads_and_vars),
        has_grad=tuple(grad is not None for grad, _ in grads_and_vars),
        groups=[_fused.PlannedGroup(group.device, group.dtype, group.decays, group.grads,
                                    group.variables)
                for group in groups],
        beta_powers=beta_powers if advances else None,
        decay_signature=self._decay_signature())
    return self._step_plan

  def _prepare_eagerly(self):
    """_prepare, with the tensors of plain-number hyperparameters kept from step to step
    (callables and tensors are re-evaluated every step, as in stock)."""
    values = self._raw_hyperparameters()
    if not all(_is_number(x) for x in values):
      self._eager_hyper_cache = None
      self._prepare()
      return
    cache = self._eager_hyper_cache
    if cache is None or cache["values"] != values:
      cache = {"values": values,
               "tensors": tuple(tf.convert_to_tensor(x, name=n)
                                for x, n in zip(values, self._HYPERPARAMETER_NAMES))}
      self._eager_hyper_cache = cache
    self._set_hyperparameter_tensors(cache["tensors"])

  # --- hyperparameters ---------------------------------------------------------------------------

  _HYPERPARAMETER_NAMES = ("learning_rate", "beta1", "beta2", "epsilon")

  def _raw_hyperparameters(self):
    """The hyperparameters as given (numbers, tensors or callables), in _HYPERPARAMETER_NAMES order."""
    return (self._lr, self._beta1, self._beta2, self._epsilon)

  def _set_hyperparameter_tensors(self, tensors):
    self._lr_t, self._beta1_t, self._beta2_t, self._epsilon_t = tensors

  @staticmethod
  def _check_values(values):
    """The range checks of _check_hyperparameters, on this step's values."""
    _check_hyperparameters(*values)

  def _prepare(self):
    values = [self._call_if_callable(x) for x in self._raw_hyperparameters()]
    if tf.executing_eagerly():  # values are known: check callables and tensors too
      self._check_values([float(x) if tf.is_tensor(x) and x.shape.rank == 0 else x
                          for x in values])
    self._set_hyperparameter_tensors(tuple(
        tf.convert_to_tensor(x, name=n) for x, n in zip(values, self._HYPERPARAMETER_NAMES)))

  def _hyperparameters(self, dtype):
    """lr, beta1, beta2, epsilon in the dtype the update of `dtype` variables is computed in."""
    compute = ops.compute_dtype(dtype)
    cache = self._eager_hyper_cache if tf.executing_eagerly() else None
    if cache is not None and compute in cache:  # eager, plain numbers: cast once, not every step
      return cache[compute]
    casts = [tf.cast(x, compute) for x in (self._lr_t, self._beta1_t, self._beta2_t, self._epsilon_t)]
    if cache is not None:
      cache[compute] = casts
    return casts

  def _scalars(self, dtype):
    """The six scalar inputs in the op's order, in the dtype the update of `dtype` is computed in."""
    compute = ops.compute_dtype(dtype)
    beta_powers = [tf.cast(p, compute) for p in self._get_beta_accumulators()]
    return beta_powers + self._hyperparameters(dtype)

  # --- updates -----------------------------------------------------------------------------------

  def _apply_dense(self, grad, var):
    if _stock_dtypes.is_stock_dtype(var):
      return _stock_dtypes.apply_dense(self, grad, var)
    return ops.apply_adam_v1(
        var, self.get_slot(var, "m"), self.get_slot(var, "v"), *self._scalars(var.dtype), grad,
        use_locking=self._use_locking, **self._variant_inputs(var, handle=False)).op

  def _resource_apply_dense(self, grad, var):
    if _stock_dtypes.is_stock_dtype(var):
      if self._held_for_finish([var]):  # under XLA: after the sparse updates, by data (_finish)
        return _HeldBack(grad, var)
      return _stock_dtypes.resource_apply_dense(self, grad, var)
    if _xla.in_xla_context() and not _xla.kernels_usable([var]):
      return _xla.dense_update(self, grad, var)
    if self._held_for_finish([var]) and _fused.is_fusable(grad, var):
      return _HeldBack(grad, var)  # the update is made in _finish, in its group's multi-tensor op
    return ops.resource_apply_adam_v1(
        var.handle, self.get_slot(var, "m").handle, self.get_slot(var, "v").handle,
        *self._scalars(var.dtype), grad, use_locking=self._use_locking,
        **self._variant_inputs(var))

  # Sparse gradients go to the fused sparse op with their duplicate indices: it sums them itself (in
  # stock's order), so the base class's unique + unsorted_segment_sum is not needed.

  # Complex variables take stock's path: the base class sums the duplicates, stock's code updates.

  def _apply_sparse_duplicate_indices(self, grad, var):
    if _stock_dtypes.is_stock_dtype(var):
      return super()._apply_sparse_duplicate_indices(grad, var)
    return self._apply_sparse(grad, var)

  def _resource_apply_sparse_duplicate_indices(self, grad, handle, indices):
    if _stock_dtypes.is_stock_dtype(handle):
      return super()._resource_apply_sparse_duplicate_indices(grad, handle, indices)
    return self._resource_apply_sparse(grad, handle, indices)

  def _sparse_arguments(self, values, indices, dtype):
    """The sparse op's gradient rows, indices and options for a `dtype` variable.

    Eager runs stock's v term, (g * g) * (1 - beta2), as written, and so does the op. In a graph,
    grappler may rewrite stock's product or constant-fold it as written, depending on the gradient:
    so for float32/float64 (where we match stock bit for bit) the term is built from stock's own TF
    ops (duplicates summed as stock sums them) and handed to the op, and grappler treats both alike.
    Lazy mode has no stock rule to match; half and bfloat16 follow the float32 rule.
    """
    options = dict(use_locking=self._use_locking, lazy=self._lazy)
    # Under XLA no grappler rewrites the graph: the op computes the term as eager does.
    if (self._lazy or tf.executing_eagerly() or _xla.in_xla_context()
        or self._sparse_v_term_as_written()):
      return values, indices, options
    if dtype.base_dtype not in (tf.float32, tf.float64):
      return values, indices, dict(options, scale_first=ops.stock_sparse_scales_first())
    beta2 = tf.cast(self._beta2_t, dtype.base_dtype)
    summed, unique, v_term = ops.stock_sparse_v_term(values, indices, beta2)
    return summed, unique, dict(options, v_term=v_term)

  def _sparse_v_term_as_written(self):
    """Whether the sparse v term is computed as written in graphs too, rather than as grappler
    leaves stock's graph: so where there is no stock graph to follow (AMSGrad; AdamWOptimizer),
    and the published rule is the reference."""
    return self._amsgrad

  def _apply_sparse(self, grad, var):
    if _stock_dtypes.is_stock_dtype(var):
      return _stock_dtypes.apply_sparse(self, grad, var)
    values, indices, options = self._sparse_arguments(grad.values, grad.indices, var.dtype)
    return ops.sparse_apply_adam_v1(
        var, self.get_slot(var, "m"), self.get_slot(var, "v"), *self._scalars(var.dtype),
        values, indices, **options, **self._variant_inputs(var, handle=False)).op

  def _resource_apply_sparse(self, grad, var, indices):
    if _stock_dtypes.is_stock_dtype(var):
      return _stock_dtypes.resource_apply_sparse(self, grad, var, indices)
    if _xla.in_xla_context() and not _xla.kernels_usable([var]):
      return _xla.sparse_update(self, grad, var, indices, self._lazy)
    values, indices, options = self._sparse_arguments(grad, indices, var.dtype)
    return ops.resource_sparse_apply_adam_v1(
        var.handle, self.get_slot(var, "m").handle, self.get_slot(var, "v").handle,
        *self._scalars(var.dtype), values, indices, **options, **self._variant_inputs(var))

  def _finish(self, update_ops, name_scope):
    held_back = [(u.grad, u.var) for u in update_ops if isinstance(u, _HeldBack)]
    update_ops = [u for u in update_ops if not isinstance(u, _HeldBack)]
    stock_pairs = [(g, v) for g, v in held_back if _stock_dtypes.is_stock_dtype(v)]
    if stock_pairs:  # under XLA: stock's op, its gradient made to depend on the sparse updates
      held_back = [(g, v) for g, v in held_back if not _stock_dtypes.is_stock_dtype(v)]
      with tf.control_dependencies(update_ops):
        after_sparse = _xla.after_updates(update_ops)
      grads = after_sparse(*[g for g, _ in stock_pairs])
      update_ops += [_stock_dtypes.resource_apply_dense(self, g, v)
                     for g, (_, v) in zip(grads, stock_pairs)]
    if self._fused:
      groups = _fused.group_updates(held_back, self._decays)
    else:  # under XLA, unfused: one op per variable (_held_for_finish)
      groups = [group for pair in held_back for group in _fused.group_updates([pair], self._decays)]
    beta_powers = self._get_beta_accumulators()
    advances = (len(groups) == 1 and not update_ops
                and _fused.powers_on_device(beta_powers, groups[0].device))
    update_ops = self._apply_groups([(g.variables, g.dtype, g.grads, g.decays) for g in groups],
                                    beta_powers if advances else None, update_ops)
    return tf.group(*update_ops, name=name_scope)

  def _apply_groups(self, groups, advancing_powers, update_ops):
    """One multi-tensor op per (variables, dtype, grads, decays) group, after `update_ops` (the
    step's other updates); returns all of the step's ops, the beta powers' advance included.

    With `advancing_powers` (the step's only group, on the powers' device) that group's op reads
    and advances the powers itself. Otherwise each group gets the powers as values and they are
    advanced afterwards, as stock's _finish does.
    """
    update_ops = list(update_ops)
    if advancing_powers is not None and not self._powers_advance_exactly_in_op(
        advancing_powers, groups[0][1]):
      advancing_powers = None
    if _xla.in_xla_context():  # XLA compiles the unpacked op; the powers advance after it
      # XLA orders by data only: the groups' gradients are made to depend on the step's other
      # (sparse) updates, the powers on all, so a sparse op that fails while it runs (an index out
      # of range) stops the step before the groups and the powers are written.
      with tf.control_dependencies(update_ops):
        after_sparse = _xla.after_updates(update_ops)
      groups = [(variables, dtype, list(after_sparse(*grads)), decays)
                for variables, dtype, grads, decays in groups]
      update_ops += [self._xla_group_update(*group) for group in groups]
      with tf.control_dependencies(update_ops):
        after = _xla.after_updates(update_ops)
      return update_ops + self._advance_beta_powers(update_ops, after)
    for variables, dtype, grads, decays in groups:
      # Packed on the host, outside the placement below: vars, ms, vs (and vhats with AMSGrad).
      var_handles, m_handles, v_handles, *vhat_handles = self._slot_handles(variables)
      extra = {}
      if vhat_handles:
        extra["vhats"] = vhat_handles[0]
      if decays:
        extra["weight_decay"] = self._weight_decay_input(dtype)
      with self._placed_with(variables[0]):
        if advancing_powers is not None:
          update_ops.append(ops.resource_apply_adam_v1_multi(
              var_handles, m_handles, v_handles, *(p.handle for p in advancing_powers),
              *self._hyperparameters(dtype), grads, use_locking=self._use_locking,
              power_dtype=advancing_powers[0].dtype.base_dtype, **extra))
        else:
          update_ops.append(ops.resource_apply_adam_v1_multi_no_advance(
              var_handles, m_handles, v_handles, *self._scalars(dtype), grads,
              use_locking=self._use_locking, **extra))
    if advancing_powers is None:
      in_graph = not tf.executing_eagerly()
      update_ops += self._advance_beta_powers(update_ops if in_graph else [])
    return update_ops

  def _xla_group_update(self, variables, dtype, grads, decays):
    """A group's update under XLA: the multi-tensor op with the handles as lists (N inputs each)."""
    slots = lambda name: [self.get_slot(v, name).handle for v in variables]
    extra = {}
    if self._amsgrad:
      extra["vhats"] = slots("vhat")
    if decays:
      extra["weight_decay"] = self._weight_decay_input(dtype)
    with self._placed_with(variables[0]):
      return ops.resource_apply_adam_v1_multi_unpacked(
          [v.handle for v in variables], slots("m"), slots("v"), *self._scalars(dtype), grads,
          use_locking=self._use_locking, **extra)

  def _powers_advance_exactly_in_op(self, beta_powers, dtype):
    """Whether the multi-tensor op for `dtype` variables can advance the beta powers with stock's
    numbers. Stock multiplies each power by its beta in the power's dtype (the dtype of the beta
    given at construction: float32 for a Python float, float64 for np.float64, int32 for 0); the op
    multiplies in float32 or float64 by the beta it is given in the update's compute dtype. That is
    stock's product when the powers are float32 or float64, the betas are of the same dtype, and
    converting them to the compute dtype loses nothing (same dtype, or float32 widened to float64).
    Otherwise the powers are advanced by stock's own ops after the update."""
    power_dtypes = {p.dtype.base_dtype for p in beta_powers}
    beta_dtypes = {tf.as_dtype(self._beta1_t.dtype), tf.as_dtype(self._beta2_t.dtype)}
    if len(power_dtypes) != 1 or power_dtypes != beta_dtypes:
      return False
    power_dtype, compute = power_dtypes.pop(), ops.compute_dtype(dtype)
    return power_dtype in (tf.float32, tf.float64) and (
        power_dtype == compute or (power_dtype, compute) == (tf.float32, tf.float64))

  @staticmethod
  def _placed_with(var):
    """Where a group's op goes: with its first variable. Packed handles do not tell placement where
    the variables are: an eager variable's device is spelled out (eager steps, tf.function), a graph
    variable (TF1) has the op colocated with it."""
    if getattr(var, "_in_graph_mode", True):
      return framework_ops.colocate_with(var)
    return tf.device(var.device)

  def _slot_handles(self, variables):
    """The handles of variables, of their m slots and of their v slots (and vhat slots, with
    AMSGrad), as three (four) handle vectors.

    Eager variables (eager steps, tf.function) are packed once into PackedHandles resources, kept
    per variable list: an eager call passes three inputs instead of 3N, a tf.function captures three
    tensors, and tf.saved_model saves them as resources of the optimizer. Graph variables (TF1) get
    Pack ops in their graph, so nothing outlives the graph.
    """
    slots = lambda name: [self.get_slot(v, name) for v in variables]
    device = _fused.host_device(variables[0].device)
    if any(getattr(v, "_in_graph_mode", True) for v in variables):
      with tf.device(device):
        return tuple(ops.pack_handles([x.handle for x in group])
                     for group in (variables, *map(slots, self._slot_names())))
    key = tuple(map(id, variables))
    with self._state_lock:
      return self._packed_handle_vectors(key, variables, slots, device)

  def _packed_handle_vectors(self, key, variables, slots, device):
    cached = self._packed_handles.get(key)
    if cached is None or not all(map(operator.is_, cached[0], variables)):
      packed = [_fused.PackedHandles(group, device)
                for group in (variables, *map(slots, self._slot_names()))]
      with framework_ops.init_scope():  # eager tensors, also when first asked inside a tf.function
        handles = tuple(p.resource_handle for p in packed)
      cached = (tuple(variables), packed, handles)
      if len(self._packed_handles) >= _PACKED_HANDLES_KEPT:
        self._packed_handles.pop(next(iter(self._packed_handles)))
      self._packed_handles[key] = cached
    return cached[2]

  def _trackable_children(self, save_type=trackable.SaveType.CHECKPOINT, **kwargs):
    children = super()._trackable_children(save_type, **kwargs)
    if save_type == trackable.SaveType.SAVEDMODEL:
      # The packed handle vectors that saved functions capture; checkpoints never see them.
      # A loaded optimizer already has the vectors of its loaded steps as children: new ones are
      # numbered after them.
      first = sum(name.startswith("packed_handles_") and name.endswith("_vars")
                  for name in children)
      for i, (_, packed, _) in enumerate(self._packed_handles.values(), start=first):
        for name, resource in zip(("vars", "ms", "vs", "vhats"), packed):
          children[f"packed_handles_{i}_{name}"] = resource
    return children

  # --- tf.saved_model: a loaded optimizer re-creates its slots ----------------------------------

  @classmethod
  def _deserialize_from_proto(cls, **kwargs):
    """The loaded optimizer: the state holder of the loaded train steps (their hyperparameters are
    in the saved functions), default hyperparameters for anything new."""
    return cls()

  def add_slot(self, var, slot_name):
    """Creates slot `slot_name` ("m", "v" or "vhat") for `var`, zeros; tf.saved_model.load
    restores it."""
    return self._zeros_slot(var, slot_name, self._name)

  def _advance_beta_powers(self, update_ops, after=None):
    """Stock's _finish: beta_power *= beta, after every update of the step.

    A read, a multiply and an assign: in eager mode, threads stepping this optimizer would lose
    each other's advances (stock's do), so the three run under the optimizer's lock there.
    Under XLA `after` (_xla.after_updates) makes the powers' values depend on the updates' results,
    so that the advance runs after them (XLA orders by data only).
    """
    if tf.executing_eagerly():
      with self._state_lock:
        return self._advance_beta_powers_unlocked(update_ops)
    return self._advance_beta_powers_unlocked(update_ops, after)

  def _advance_beta_powers_unlocked(self, update_ops, after=None):
    with tf.control_dependencies(update_ops):
      beta1_power, beta2_power = self._get_beta_accumulators()
      with framework_ops.colocate_with(beta1_power):
        power1, power2 = beta1_power, beta2_power
        if after is not None:
          power1, power2 = after(beta1_power.read_value(), beta2_power.read_value())
        update_beta1 = beta1_power.assign(power1 * self._beta1_t, use_locking=self._use_locking)
        update_beta2 = beta2_power.assign(power2 * self._beta2_t, use_locking=self._use_locking)
    return [update_beta1, update_beta2]
