"""tf_adam_op.AdamOptimizer: a drop-in for tf.compat.v1.train.AdamOptimizer on the fused op.

Everything a user or a checkpoint can see is stock's: the constructor, the slots "m" and "v" (saved
as <var>/Adam and <var>/Adam_1), one pair of beta power accumulators per optimizer and graph (of the
dtype of beta1/beta2 as given, float32 for Python floats; colocated with the first variable by name,
advanced by multiplication after the step), callable hyperparameters, and the operation order, so
float32/float64 results are bit-identical to stock. What differs is underneath:
- dense gradients of resource variables go, grouped by device and dtype, to one multi-tensor op per
  group (step.py; the op also advances the beta powers when it is the step's only update); ref
  variables run ApplyAdamV1, variables with a constraint ResourceApplyAdamV1;
- sparse gradients run one fused (Resource)SparseApplyAdamV1 op instead of seven TF ops;
- in eager mode a repeated step over the same variables skips the per-variable Python bookkeeping
  (fast_path.py), keeping stock's semantics;
- half/bfloat16 variables get float32 hyperparameters (stock rounds beta2=0.999 to 1.0 in bfloat16);
- amsgrad=True adds a "vhat" slot and stock's AMSGrad rule to every op; AdamWOptimizer (adamw.py)
  adds the decoupled weight decay the same way, as one more input of the same ops;
- complex variables take stock's own methods (stock_dtypes.py).
Inside tf.function the multi-tensor ops are ordered with every other op on their variables by an
automatic-control-dependencies resolver (_ordering.py). Nothing of one apply_gradients call lives on
the optimizer object: threads may share it.
"""

import collections
import inspect
import threading

import tensorflow as tf
from tensorflow.python.distribute import distribute_lib
from tensorflow.python.framework import ops as framework_ops
from tensorflow.python.saved_model import registration
from tensorflow.python.training import optimizer as optimizer_lib

from tf_adam_op import ops
from tf_adam_op._step import apply
from tf_adam_op._step import checks
from tf_adam_op._step import grouping
from tf_adam_op._step import packed
from tf_adam_op._step import plan as plan_lib
from tf_adam_op._step import xla
from tf_adam_op._step.scalars import StepScalars
from tf_adam_op.v1 import dtypes
from tf_adam_op.v1 import fast_path
from tf_adam_op.v1 import hyperparameters
from tf_adam_op.v1 import paths
from tf_adam_op.v1 import saved_model
from tf_adam_op.state_8bit import choice as state_8bit_choice
from tf_adam_op.v1 import sparse
from tf_adam_op.v1 import states_8bit
from tf_adam_op.v1 import step as step_lib
from tf_adam_op.v1 import stock_dtypes
from tf_adam_op.v1 import xla_composite

__all__ = ["AdamOptimizer"]

# Newer TFs' v1 base class (and stock Adam) take use_own_namescope_for_non_slot_vars; TF 2.15's
# and 2.16's have no such option, so there only its default is possible, as with stock.
_BASE_TAKES_NAMESCOPE_FLAG = ("use_own_namescope_for_non_slot_vars" in
                              inspect.signature(optimizer_lib.Optimizer.__init__).parameters)


class _HeldBack(collections.namedtuple("_HeldBack", ["grad", "var"])):
  """A dense update _resource_apply_dense leaves to its group's multi-tensor op, made in _finish."""


def _hyperparameter_tensor(name):
  """Stock's attribute for this thread's tensor of a hyperparameter (stock's methods read them)."""
  return property(lambda self: self._hyper.tensor(name))


# Registered so tf.saved_model.load revives it as an AdamOptimizer (with add_slot), not a plain object.
@registration.register_serializable(package="tf_adam_op")
class AdamOptimizer(sparse.SparseUpdates, states_8bit.EightBitStates,
                    saved_model.SavedModelSupport, optimizer_lib.Optimizer):
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
    state_bits: 32 (float32 states, stock's) or 8: m and v (and vhat) of every resource variable of
      at least `min_8bit_size` elements are kept as 8-bit codes with a float32 scale per block of
      256 (bitsandbytes' block-wise scheme; docs/state_8bit.md), in slots m_codes, m_absmax,
      v_codes, v_absmax. Keyword-only.
    min_8bit_size: Variables smaller than this keep float32 states (4096, as bitsandbytes).

  Python numbers out of range (beta outside [0, 1], negative learning rate or epsilon) are a
  ValueError here; tensors and callables are checked when their value is known (eager steps).
  """

  def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, use_locking=False,
               name="Adam", use_own_namescope_for_non_slot_vars=False, *, lazy=False, fused=True,
               amsgrad=False, state_bits=32,
               min_8bit_size=state_8bit_choice.DEFAULT_MIN_8BIT_SIZE):
    self._hyper = hyperparameters.Hyperparameters(
        dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon), self._who())
    if _BASE_TAKES_NAMESCOPE_FLAG:
      super().__init__(use_locking, name, use_own_namescope_for_non_slot_vars)
    elif use_own_namescope_for_non_slot_vars:
      raise ValueError("use_own_namescope_for_non_slot_vars=True needs a newer TensorFlow: "
                       f"stock's v1 optimizers have no such option in {tf.__version__}")
    else:
      super().__init__(use_locking, name)
    self._lazy, self._fused, self._amsgrad = bool(lazy), bool(fused), bool(amsgrad)
    self._state_bits, self._min_8bit_size = state_8bit_choice.check_options(
        state_bits, min_8bit_size, self._who())
    self._scale_slots = {}  # var.ref() -> its 8-bit states' scale slots (states_8bit.py)
    self._beta1, self._beta2 = beta1, beta2  # the beta powers' initial values
    self._plans = plan_lib.PlanCache(size=1)  # the fast path's; a v1 model steps one list
    self._packed_handles = packed.PackedHandleCache()
    # Per thread: the ids of the variables this thread's step gives more than once.
    self._this_step = threading.local()
    self._state_lock = threading.RLock()  # slot creation, the handle cache, eager power advances

  _lr_t = _hyperparameter_tensor("learning_rate")
  _beta1_t = _hyperparameter_tensor("beta1")
  _beta2_t = _hyperparameter_tensor("beta2")
  _epsilon_t = _hyperparameter_tensor("epsilon")

  # --- state -------------------------------------------------------------------------------------

  def _get_beta_accumulators(self):
    with framework_ops.init_scope():
      graph = None if tf.executing_eagerly() else framework_ops.get_default_graph()
      return (self._get_non_slot_variable("beta1_power", graph=graph),
              self._get_non_slot_variable("beta2_power", graph=graph))

  def _create_slots(self, var_list):
    with self._state_lock:  # two threads' first steps must not both create beta1_power
      first_var = min(var_list, key=lambda x: x.name)
      self._create_non_slot_variable(
          initial_value=self._beta1, name="beta1_power", colocate_with=first_var)
      self._create_non_slot_variable(
          initial_value=self._beta2, name="beta2_power", colocate_with=first_var)
      for var in var_list:
        if self._has_8bit_states(var):
          self._create_8bit_slots(var)
          continue
        for slot in self._slot_names():
          self._zeros_slot(var, slot, self._name)

  def _slot_names(self):
    """m and v, and AMSGrad's vhat (tf_keras's name for it)."""
    return ("m", "v", "vhat") if self._amsgrad else ("m", "v")

  # --- what AdamWOptimizer varies ----------------------------------------------------------------

  def _decays(self, var):
    """Whether `var`'s update includes the decoupled weight decay (AdamWOptimizer)."""
    return False

  def _decay_signature(self):
    """What decides which variables decay; a step plan made under another one is not reused."""
    return None

  def _has_weight_decay(self):
    return False

  def _sparse_v_term_as_written(self):
    """Whether the sparse v term is computed as written in graphs too, rather than as grappler
    leaves stock's graph: where there is no stock graph to follow (AMSGrad; AdamWOptimizer)."""
    return self._amsgrad

  def _who(self):
    """The optimizer's name in error messages."""
    return f"tf_adam_op.{type(self).__name__}"

  # --- the step ----------------------------------------------------------------------------------

  def apply_gradients(self, grads_and_vars, global_step=None, name=None,
                      skip_gradients_aggregation=False):
    try:
      return self._apply_gradients(grads_and_vars, global_step, name, skip_gradients_aggregation)
    finally:
      self._step_built()

  def _apply_gradients(self, grads_and_vars, global_step, name, skip_gradients_aggregation):
    grads_and_vars = tuple(grads_and_vars)  # it may be a generator; it is read more than once
    variables = [var for _, var in grads_and_vars]
    if paths.fuses_here(self._fused, variables) and (
        tf.executing_eagerly() or dtypes.all_eager_variables(grads_and_vars)):
      taken, result = self._apply_on_fast_path(grads_and_vars, global_step, name)
      if taken:
        return result
    supported = dtypes.valid_dtypes(not (self._amsgrad or self._has_weight_decay()))
    dtypes.check_variable_dtypes(grads_and_vars, supported, self._who())
    # A dense gradient's shape, and every sparse index, are checked before any of the step's
    # writes (eagerly now; in a graph every op of the step waits for the checks). Under a
    # strategy the base class's merge_call builds the step elsewhere: _distributed_apply checks.
    grads, variables = [g for g, _ in grads_and_vars], [v for _, v in grads_and_vars]
    checks.check_same_shapes(grads, variables, self._who())
    guards = []
    if not distribute_lib.has_strategy():
      # The scales checked are those of the variables this step updates: the base class skips a
      # variable whose gradient is None (as under a strategy, whose filter drops it before
      # _distributed_apply), so a corrupt state it does not read does not stop the step.
      updated = [v for g, v in grads_and_vars if g is not None]
      self._create_8bit_slots_first(updated)
      guards = (checks.runtime_guards(grads, variables, self._who())
                + self._scale_guards(updated))
      # Under XLA, as data the step's sparse updates take (cleared by _step_built).
      self._this_step.indices_checked = self._xla_index_check(grads, variables)
    # The base class drives the step; _resource_apply_dense returns fusable updates as _HeldBack
    # markers and _finish turns them into multi-tensor ops (the markers travel in the base class's
    # list of the step's updates: threads may share the optimizer). A variable given more than
    # once is updated by one op per gradient, in the order given, as stock does.
    self._this_step.repeated = grouping.repeated(variables)
    try:
      with tf.control_dependencies(guards):
        if global_step is None or not xla.in_xla_context() or distribute_lib.has_strategy():
          return super().apply_gradients(grads_and_vars, global_step=global_step, name=name,
                                         skip_gradients_aggregation=skip_gradients_aggregation)
        # Under XLA the base class's advance of global_step would wait for the updates by a
        # control dependency only, which XLA drops: it is made here, after them by data.
        super().apply_gradients(grads_and_vars, name=name,
                                skip_gradients_aggregation=skip_gradients_aggregation)
        return fast_path.advance_global_step(global_step, self._this_step.finished_updates)
    finally:
      self._this_step.repeated = grouping.NONE_REPEATED

  def _step_built(self):
    """Forgets what one step's ops shared while it was built (its checks under XLA)."""
    self._this_step.scales_checked = None
    self._this_step.indices_checked = None
    self._this_step.finished_updates = None

  def _distributed_apply(self, distribution, grads_and_vars, global_step=None, name=None):
    """The base class's step under a strategy (cross-replica context), after the checks of the
    step's sparse indices (each replica's, against its own component of the variable) and of the
    8-bit states' scales: apply_gradients makes none under a strategy, since the updates are
    built here, which would not wait for checks built in the replica's context. Under XLA (one
    replica: TensorFlow compiles no step over several devices) the index check is data every
    update takes, and global_step advances after the updates by data (the base class's control
    dependency is dropped by XLA), as without a strategy."""
    grads_and_vars = tuple(grads_and_vars)
    variables = [var for _, var in grads_and_vars]
    self._create_8bit_slots_first(variables)
    replica_grads, replica_variables = checks.replica_components(distribution, grads_and_vars)
    guards = checks.runtime_guards(replica_grads, replica_variables, self._who())  # eager: raises
    self._this_step.indices_checked = self._xla_index_check(replica_grads, replica_variables)
    try:
      with tf.control_dependencies(guards + self._scale_guards(variables)):
        if global_step is None or not xla.in_xla_context():
          return super()._distributed_apply(distribution, grads_and_vars, global_step, name)
        super()._distributed_apply(distribution, grads_and_vars, None, name)
        finished = self._this_step.finished_updates
        return distribution.extended.update(
            global_step, lambda step: fast_path.advance_global_step(step, finished))
    finally:
      self._step_built()

  def _held_for_finish(self, var):
    repeated = getattr(self._this_step, "repeated", grouping.NONE_REPEATED)
    if self._has_8bit_states(var):  # grouped in _finish (under XLA after the sparse updates)
      return paths.held_8bit_for_finish(var, self._fused, repeated)
    return paths.held_for_finish(var, self._fused, repeated)

  def _apply_on_fast_path(self, grads_and_vars, global_step, name):
    """(taken, result): the step from a plan kept per variable list (fast_path.py), or (False, None)
    with nothing done when a pair needs the general path, which gives stock's behaviour."""
    key = fast_path.plan_key(grads_and_vars, self._decay_signature())
    plan = self._plans.plan_for(key, [var for _, var in grads_and_vars])
    if plan is None:
      if not fast_path.fusable(grads_and_vars):
        return False, None
      dtypes.check_variable_dtypes(grads_and_vars, grouping.FUSED_DTYPES, self._who())
      with framework_ops.init_scope():
        self._create_slots([var for grad, var in grads_and_vars if grad is not None])
      plan = self._plans.put(key, fast_path.make_plan(grads_and_vars, self._decays,
                                                      self._get_beta_accumulators(),
                                                      own_op=self._has_8bit_states))
    group_grads = fast_path.group_gradients(plan, grads_and_vars)
    if group_grads is None:
      return False, None
    guards = []
    # One op is all or nothing by itself; under XLA a group of 8-bit variables is an op each.
    if len(plan.groups) + len(plan.groups_8bit) > 1 or (plan.groups_8bit and xla.in_xla_context()):
      grads, variables = [g for g, _ in grads_and_vars], [v for _, v in grads_and_vars]
      checks.check_same_shapes(grads, variables, self._who())
      guards = (checks.runtime_guards(grads, variables, self._who())
                + self._scale_guards([v for g, v in grads_and_vars if g is not None]))
    in_graph = not tf.executing_eagerly()
    with framework_ops.name_scope(name, self._name, skip_on_eager=True) as scope:
      if in_graph:
        self._prepare()
      else:
        self._hyper.prepare_eagerly(self._call_if_callable)
      with tf.control_dependencies(guards):  # a shape known only when the step runs
        eight_bit_ops = [op for group, grads in zip(plan.groups_8bit, group_grads[len(plan.groups):])
                         for op in self._apply_8bit_group(group, grads)]
        update_ops = step_lib.apply_groups(
            self._step(), [(group.variables, group.dtype, grads, group.decays)
                           for group, grads in zip(plan.groups, group_grads)],
            plan.advancing_powers, eight_bit_ops)
      return True, fast_path.train_op(update_ops, global_step, scope)

  def _prepare(self):
    self._hyper.prepare(self._call_if_callable)

  def _scalars(self, dtype, with_powers=True):
    """The StepScalars of an update of `dtype` variables (the powers left out for an op that reads
    them itself)."""
    compute = ops.compute_dtype(dtype)
    powers = ([tf.cast(p, compute) for p in self._get_beta_accumulators()] if with_powers
              else [None, None])
    names = ("learning_rate", "beta1", "beta2", "epsilon")
    decay = (self._hyper.in_compute_dtype("weight_decay", dtype) if self._has_weight_decay()
             else None)
    return StepScalars(*powers, *(self._hyper.in_compute_dtype(n, dtype) for n in names),
                       weight_decay=decay)

  def _xla_index_check(self, grads, variables):
    """checks.xla_index_check over the gradients the fused ops take: not a complex variable's,
    whose update is stock's own, with stock's scatters, which under XLA drop an index out of range
    as stock's do (docs/errors.md)."""
    pairs = [(g, v) for g, v in zip(grads, variables) if not stock_dtypes.is_stock_dtype(v)]
    return checks.xla_index_check([g for g, _ in pairs], [v for _, v in pairs], self._who())

  def _after_checks(self, grad):
    """Under XLA, `grad` computed only once the step's checks ran (xla.after_values): what
    stock's own updates (complex variables) take, as the fused ones take the checks in their
    learning rate (_checked_scalars). Elsewhere `grad` itself."""
    return xla.after_values(self._step_checks())(grad)[0]

  def _step_checks(self):
    """The checks of the step being built under XLA: its 8-bit scales' (states_8bit.py
    _scale_guards) and its sparse indices' (_xla_index_check), those it has."""
    return [check for check in (getattr(self._this_step, "scales_checked", None),
                                getattr(self._this_step, "indices_checked", None))
            if check is not None]

  def _checked_scalars(self, dtype):
    """_scalars(dtype) for a single update (8-bit or float, dense or sparse): under XLA, after the
    step's checks (the 8-bit states' scales, states_8bit.py _scale_guards; every sparse index,
    checks.xla_index_check; apply.after_check), which nothing else orders it after."""
    return apply.after_check(self._scalars(dtype), *self._step_checks())

  def _step(self):
    return step_lib.Step(
        scalars=self._scalars, slot=self.get_slot, slot_names=self._slot_names(),
        packed_handles=self._packed_handles_of, beta_powers=self._get_beta_accumulators(),
        betas=(self._beta1_t, self._beta2_t), use_locking=self._use_locking,
        lock=self._state_lock)

  def _packed_handles_of(self, variables):
    """The handle vectors of variables and their slots (_step/packed.py)."""
    lists = lambda: [variables] + [[self.get_slot(v, s) for v in variables]
                                   for s in self._slot_names()]
    with self._state_lock:
      return self._packed_handles.vectors(variables, lists)

  def _adam_slots(self, var, ref=False):
    """m, v and vhat (None without AMSGrad) of `var`: the variables, or their handles."""
    slots = [self.get_slot(var, name) for name in self._slot_names()] + [None]
    return tuple(s if ref or s is None else s.handle for s in slots[:3])

  # --- updates: the base class's hooks -----------------------------------------------------------

  def _apply_dense(self, grad, var):
    if stock_dtypes.is_stock_dtype(var):
      return stock_dtypes.apply_dense(self, grad, var)
    m, v, vhat = self._adam_slots(var, ref=True)
    return apply.dense(var, m, v, self._scalars(var.dtype), grad, vhat=vhat,
                       decays=self._decays(var), use_locking=self._use_locking, ref=True).op

  def _resource_apply_dense(self, grad, var):
    if stock_dtypes.is_stock_dtype(var):
      if self._held_for_finish(var):  # under XLA: after the sparse updates, by data (_finish)
        return _HeldBack(grad, var)
      return stock_dtypes.resource_apply_dense(self, self._after_checks(grad), var)
    if self._has_8bit_states(var):
      # (Refused under XLA where no 8-bit kernel can run var's step: by the op's maker,
      # _apply_8bit_dense or _apply_8bit_group, which every path reaches.)
      if self._held_for_finish(var):
        return _HeldBack(grad, var)  # made in _finish, in its group's 8-bit op
      return self._apply_8bit_dense(grad, var)
    if xla.in_xla_context() and not xla.kernels_usable([var]):
      return xla_composite.dense_update(var, self._adam_slots(var, ref=True), self._scalars(var.dtype),
                                        grad, self._decays(var), self._use_locking)
    if self._held_for_finish(var) and grouping.is_fusable(grad, var):
      return _HeldBack(grad, var)  # the update is made in _finish, in its group's multi-tensor op
    m, v, vhat = self._adam_slots(var)
    return apply.dense(var.handle, m, v, self._checked_scalars(var.dtype), grad, vhat=vhat,
                       decays=self._decays(var), use_locking=self._use_locking)

  def _finish(self, update_ops, name_scope):
    held_back = [(u.grad, u.var) for u in update_ops if isinstance(u, _HeldBack)]
    update_ops = [u for u in update_ops if not isinstance(u, _HeldBack)]
    stock_pairs = [(g, v) for g, v in held_back if stock_dtypes.is_stock_dtype(v)]
    if stock_pairs:  # under XLA: stock's op, after the sparse updates by data
      held_back = [(g, v) for g, v in held_back if not stock_dtypes.is_stock_dtype(v)]
      update_ops += stock_dtypes.apply_held_back(self, stock_pairs, update_ops, xla.after_updates)
    pairs_8bit = [(g, v) for g, v in held_back if self._has_8bit_states(v)]
    if pairs_8bit:  # one op per group (under XLA after the sparse updates by data)
      held_back = [(g, v) for g, v in held_back if not self._has_8bit_states(v)]
      update_ops += self._apply_8bit_held_back(pairs_8bit, update_ops)
    if self._fused:
      groups = grouping.group_updates(held_back, self._decays)
    else:  # under XLA, unfused: one op per variable (_held_for_finish)
      groups = [g for pair in held_back for g in grouping.group_updates([pair], self._decays)]
    beta_powers = self._get_beta_accumulators()
    advances = (len(groups) == 1 and not update_ops
                and grouping.powers_on_device(beta_powers, groups[0].device))
    update_ops = step_lib.apply_groups(
        self._step(), [(g.variables, g.dtype, g.items, g.decays) for g in groups],
        beta_powers if advances else None, update_ops)
    self._this_step.finished_updates = update_ops  # (what global_step waits for under XLA)
    return tf.group(*update_ops, name=name_scope)
