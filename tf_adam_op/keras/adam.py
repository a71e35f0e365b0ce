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
in the fused ops' order (_xla_step.py, _step/composite.py). Under a tf.distribute strategy each
variable's update is one fused op per replica, through Keras's own per-variable distribution.
"""

import contextlib
import threading

import keras
import tensorflow as tf
from tensorflow.python.distribute import distribute_lib
from tensorflow.python.trackable import base as trackable

from tf_adam_op._step import apply
from tf_adam_op._step import checks
from tf_adam_op._step import grouping
from tf_adam_op._step import packed
from tf_adam_op._step import plan as plan_lib
from tf_adam_op._step import xla
from tf_adam_op.keras import _decisions
from tf_adam_op.keras import _hyperparameters
from tf_adam_op.keras import _inputs
from tf_adam_op.keras import _kept_rows
from tf_adam_op.keras import _plan
from tf_adam_op.keras import _xla_step
from tf_adam_op.keras import states_8bit
from tf_adam_op.state_8bit import choice as state_8bit_choice

__all__ = ["Adam", "AdamW"]

_tf_variable = _decisions.tf_variable
_WHO = "tf_adam_op.keras"


def _repeated(variables):
  return grouping.repeated(variables, key=lambda v: id(_tf_variable(v)))


@contextlib.contextmanager
def _building(step, **values):
  """`step` (a _building_step) with these values while the block runs; then as it was."""
  before = {name: vars(step)[name] for name in values if name in vars(step)}
  vars(step).update(values)
  try:
    yield
  finally:
    for name in values:
      vars(step).pop(name, None)
    vars(step).update(before)


def _is_16_bit(var):
  return var.dtype.base_dtype in (tf.float16, tf.bfloat16)


class _FusedAdamMixin(states_8bit.EightBitStates):
  """The fused update step shared by Adam and AdamW (see the module doc).

  What each step does is Keras's decision (_decisions.py): which variables decay, whether Keras's
  arithmetic mixes dtypes, what a strategy does with the gradients, what is accepted. The fused
  ops replace only Keras's arithmetic."""

  def __init__(self, *args, lazy=False, state_bits=32,
               min_8bit_size=state_8bit_choice.DEFAULT_MIN_8BIT_SIZE, **kwargs):
    checked = state_8bit_choice.check_options(state_bits, min_8bit_size, _WHO)
    super().__init__(*args, **kwargs)
    self.state_bits, self.min_8bit_size = checked
    self._8bit_scales = {}  # id(codes variable) -> its absmax variable (states_8bit.py)
    self._8bit_scales_of = plan_lib.BoundedCache()  # variable list -> its states' scales (same)
    self._traced_packed = packed.TracedPackedHandles()  # see _trackable_children
    self._building_step = threading.local()  # what one step's ops share while it is built
    self._decay_waits_for_in_merge = {}  # graph -> its step's checks (see _apply_weight_decay)
    self.lazy = bool(lazy)
    self._plans = plan_lib.PlanCache()  # see _update_round
    self._variable_dims = plan_lib.BoundedCache()  # see _shapes_as_variables

  def get_config(self):
    """Keras's config; `lazy` only when True, so a default config is one Keras's own class reads
    (`keras.optimizers.Adam.from_config`), and a lazy one is refused there, not silently dropped."""
    config = super().get_config()
    if self.lazy:
      config["lazy"] = True
    if self.state_bits != 32:  # likewise: refused by Keras's own class, not dropped
      config["state_bits"] = self.state_bits
      config["min_8bit_size"] = self.min_8bit_size
    return config

  def _trackable_children(self, save_type=trackable.SaveType.CHECKPOINT, **kwargs):
    children = super()._trackable_children(save_type, **kwargs)
    if save_type == trackable.SaveType.SAVEDMODEL:
      # The packed handle vectors that traced steps capture (a tf.Module's saved train step);
      # checkpoints never see them. Numbered after those a loaded optimizer has already.
      first = sum(name.startswith("packed_handles_") for name in children)
      for i, resource in enumerate(self._traced_packed.resources(), start=first):
        children[f"packed_handles_{i}"] = resource
    return children

  # --- what Keras's base class calls -------------------------------------------------------------

  def _backend_apply_gradients(self, grads, trainable_variables):
    """Keras's step, after the checks that must come before anything is written (docs/errors.md):
    a dense gradient that does not broadcast to its variable raises now, of the type Keras's own
    arithmetic raises it (InvalidArgumentError eagerly, ValueError while tracing); an
    IndexedSlices index out of range raises now (eager) or, in a graph, stops the step before any
    of its writes, `iterations` included."""
    for grad in grads:
      if isinstance(grad, tf.IndexedSlices) and grad.dense_shape is None:
        # Keras's update_step makes every gradient dense, which refuses this: TF's ValueError, as
        # there (before anything is written here; Keras's own has updated the variables before).
        tf.convert_to_tensor(grad)
    # Lazy rows (an IndexedSlices gradient with lazy=True) take their decay in the op, on those
    # rows only, in every mode: Keras's own pass would decay every row (see _decays_in_op).
    # (Not with gradient accumulation: its update densifies the gradients.)
    lazy = self._takes_lazy_rows()
    self._building_step.lazy_rows = frozenset(
        id(_tf_variable(v)) for g, v in zip(grads, trainable_variables)
        if lazy and isinstance(g, tf.IndexedSlices))
    try:
      return self._apply_after_checks(grads, trainable_variables)
    finally:
      vars(self._building_step).clear()

  def _apply_after_checks(self, grads, trainable_variables):
    if self._one_op_checks_every_state(grads, trainable_variables):
      return self._apply_as_one_8bit_op(grads, trainable_variables)
    scale_guards = self._scale_guards(trainable_variables)  # 8-bit states' scales
    if self._shapes_as_variables(grads, trainable_variables) and not scale_guards:
      return super()._backend_apply_gradients(grads, trainable_variables)  # nothing to check
    tf_variables = [_tf_variable(v) for v in trainable_variables]
    checks.check_dense_shapes(grads, tf_variables, _WHO)
    # Under XLA, as data every fused update of the step takes: the indices of the fused ops'
    # sparse gradients (Keras's own update_step ignores an index out of range under XLA).
    ours = self._indices_to_check(zip(grads, tf_variables))
    self._building_step.indices_checked = checks.xla_index_check(
        [g for g, _ in ours], [v for _, v in ours], _WHO)
    guards = checks.runtime_guards(grads, tf_variables, _WHO, broadcast=True,
                                   drop_negative=self._keras_rule_for_slices()) + scale_guards
    if not guards:
      return super()._backend_apply_gradients(grads, trainable_variables)
    with tf.control_dependencies(guards):
      super()._backend_apply_gradients(grads, trainable_variables)
      # Keras advances `iterations` after this returns; a read made here, after the checks, is
      # what that write waits for (tf.function orders the ops on one variable as written).
      self._iterations.value.read_value()
    return None

  def _takes_lazy_rows(self):
    """Whether this step's IndexedSlices gradients take lazy rows: lazy=True, unless gradient
    accumulation makes the gradients dense first (Keras's rule then)."""
    return self.lazy and not self.gradient_accumulation_steps

  def _keras_rule_for_slices(self):
    """Whether this step's IndexedSlices gradients take Keras's rule, which drops the row of a
    negative index (and under XLA of one past the last row): _kept_rows.py."""
    return not self._takes_lazy_rows()

  def _indices_to_check(self, grads_and_vars):
    """The (gradient, variable) pairs whose IndexedSlices indices the step's XLA check takes:
    lazy rows' (every index must be in range); under Keras's rule none (Keras's XLA step drops an
    index out of range, and so does ours: _kept_rows.py), nor those of Keras's own updates."""
    if self._keras_rule_for_slices():
      return []
    return [(g, v) for g, v in grads_and_vars if not self._keras_computes(v)]

  def _one_op_checks_every_state(self, grads, trainable_variables):
    """Whether the step's only write before `iterations` is one ResourceApplyAdam8bitMulti, which
    checks every state it reads before it writes anything (naming the variable, as the step-wide
    check does): then that check is not needed, as in v1's fast path. Not under XLA (one op per
    variable there, waiting for one named check), a strategy (Keras's per-variable path), gradient
    accumulation, EMA (Keras averages every trainable variable, those without a gradient in this
    step too: nothing orders those writes after the op), a repeated variable, a gradient that is
    sparse or of another shape, Keras's own decay pass on any variable, or any other update."""
    if (self.state_bits != 8 or not self.built or xla.in_xla_context()
        or distribute_lib.has_strategy() or self.gradient_accumulation_steps or self.use_ema):
      return False
    if not self._shapes_as_variables(grads, trainable_variables) or _repeated(trainable_variables):
      return False
    plan = self._plan_of(grads, trainable_variables, repeated=grouping.NONE_REPEATED)
    if plan.groups or plan.sparse_positions or plan.host_positions or len(plan.groups_8bit) != 1:
      return False
    return not any(_decisions.uses_weight_decay(self, v) and not self._decays_in_op(_tf_variable(v))
                   for v in trainable_variables)

  def _apply_as_one_8bit_op(self, grads, trainable_variables):
    """Keras's step, whose one update checks its own states (_one_op_checks_every_state)."""
    super()._backend_apply_gradients(grads, trainable_variables)
    if not tf.executing_eagerly():
      # Keras advances `iterations` after this returns; that write waits for this read, and this
      # read for the update, so an update that fails (writing nothing) leaves `iterations` too.
      with tf.control_dependencies(self._building_step.updates_8bit):
        self._iterations.value.read_value()
    return None

  def _apply_weight_decay(self, variables):
    """Keras's own pass, for the variables whose decay the fused op does not do itself. First (Keras
    calls this before any update of the step) Keras's judgement of the hyperparameters
    (_hyperparameters.py): Keras's error, before anything is written, where it raises one."""
    self._check_hyperparameters(variables)
    if self.weight_decay is None:
      return super()._apply_weight_decay(variables)  # Keras's: nothing to do
    repeated = _repeated(variables)
    keras_pass = [v for v in variables
                  if not self._decays_in_op(_tf_variable(v), id(_tf_variable(v)) in repeated)]
    if keras_pass:
      # Under XLA Keras's pass reads its learning rate after the step's checks (by data: XLA has
      # no other order), so a step the checks refuse leaves these variables undecayed too. Under
      # a strategy Keras builds the pass in a merge call, in another thread: it finds the checks
      # by the graph being built (one replica under XLA).
      waits_for = self._building_step.decay_waits_for = self._step_checks()
      graph = tf.compat.v1.get_default_graph()
      if waits_for and distribute_lib.has_strategy():
        self._decay_waits_for_in_merge[graph] = waits_for
      try:
        super()._apply_weight_decay(keras_pass)
      finally:
        self._building_step.decay_waits_for = None
        self._decay_waits_for_in_merge.pop(graph, None)

  def _get_current_learning_rate(self):
    """Keras's learning rate; while Keras's own weight decay pass is built under XLA, times the
    step's checks (_apply_weight_decay): the same number, exactly (a Python number as a float64
    tensor, which Keras's cast to the variable's dtype rounds once, as it rounds the number)."""
    lr = super()._get_current_learning_rate()
    checks = (getattr(self._building_step, "decay_waits_for", None)
              or self._decay_waits_for_in_merge.get(tf.compat.v1.get_default_graph()))
    if not checks:
      return lr
    if isinstance(lr, (int, float)):
      lr = tf.constant(lr, tf.float64)
    return apply.times_checks(lr, checks)

  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    if distribute_lib.has_strategy():
      # Keras's path: its all-reduce of the gradients, then the strategy's per-variable update,
      # which calls update_step (one fused op each), with and without XLA.
      return super()._backend_update_step(grads, trainable_variables, learning_rate)
    repeated = _repeated(trainable_variables)
    if not self._shapes_as_variables(grads, trainable_variables):
      grads = [grad if isinstance(grad, tf.IndexedSlices)
               else checks.as_variable_shape(grad, _tf_variable(var))
               for grad, var in zip(grads, trainable_variables)]
    if not repeated:  # the usual step: one round
      return self._update_round(grads, trainable_variables, learning_rate, repeated)
    key = lambda v: id(_tf_variable(v))
    for round_grads, round_vars in grouping.rounds(grads, trainable_variables, key):
      self._update_round(round_grads, round_vars, learning_rate, repeated)
    return None

  def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
    """Keras's per-variable updates under a strategy, in its cross-replica context: a merge call,
    built in another thread than the replica's (_building_step is per thread), so what update_step
    needs of the step is found again here from Keras's pairs, each variable as its components (what
    update_step is given): which ones Keras's pairs give twice and which take lazy rows. Under XLA
    (one replica: TensorFlow compiles no step over several devices) the step's checks are made
    here too, as data every update takes, and `iterations` (which Keras advances after this) waits
    for the updates by data, as in the step without a strategy (_xla_step.fused_step)."""
    grads_and_vars = list(grads_and_vars)
    components = lambda v: {id(v), *map(id, distribution.experimental_local_results(v))}
    sparse = lambda g: isinstance(distribution.experimental_local_results(g)[0], tf.IndexedSlices)
    lazy = self._takes_lazy_rows()
    variables = {id(v): v for _, v in grads_and_vars}
    repeated = grouping.repeated([v for _, v in grads_and_vars])  # ids
    state = {
        "strategy_repeated": frozenset().union(*(components(variables[i]) for i in repeated)),
        "lazy_rows": frozenset().union(*(components(v) for g, v in grads_and_vars
                                         if lazy and sparse(g)))}
    in_xla = xla.in_xla_context()
    if in_xla:  # (set below, once lazy_rows is: forgotten after the step)
      state.update(indices_checked=None, strategy_updates=[], scales_checked=None)
    with _building(self._building_step, **state):
      if in_xla:
        # Which updates are Keras's own depends on lazy_rows (a lazy table is ours whatever its
        # hyperparameters' types): the indices to check are found with it set.
        ours = self._indices_to_check(grads_and_vars)
        self._building_step.indices_checked = checks.xla_index_check(
            *checks.replica_components(distribution, ours), _WHO)
        self._scale_guards([v for _, v in grads_and_vars])  # its XLA check: scales_checked
      super()._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)
      if in_xla:
        iterations = self._iterations.value
        iterations.assign_add(xla.after_updates(self._building_step.strategy_updates)(
            _xla_step.zero_like(iterations))[0])

  def update_step(self, gradient, variable, learning_rate):
    """One variable's update: the path under a strategy, and Keras's own where Keras's arithmetic
    is not the fused ops' (see _keras_computes)."""
    update = self._update_step(gradient, variable, learning_rate)
    made = getattr(self._building_step, "strategy_updates", None)  # (under a strategy and XLA)
    if made is not None and update is not None:
      made.append(update)
    return update

  def _update_step(self, gradient, variable, learning_rate):
    var = _tf_variable(variable)
    repeated = id(var) in getattr(self._building_step, "strategy_repeated", ())
    if self._has_8bit_states(var):
      return self._update_8bit(gradient, variable, learning_rate,
                               decays=self._decays(var, repeated))
    if self._keras_computes(var):  # under XLA after the step's checks (its m and v take none)
      gradient = _xla_step.after_checks(gradient, self._step_checks())
      return super().update_step(gradient, variable, learning_rate)
    if not isinstance(gradient, tf.IndexedSlices):
      gradient = checks.as_variable_shape(gradient, var)
    if xla.in_xla_context() and not xla.kernels_usable([var]):
      if _xla_step.keras_rule_applies(self.lazy, gradient, var):
        return super().update_step(gradient, variable, learning_rate)
      decays = self._decays(var, repeated)
      return _xla_step.composite_update(
          var, self._slots(variable), gradient,
          _inputs.step_scalars(self, var.dtype.base_dtype, learning_rate, decays), decays,
          self.lazy)
    return self._update_one(gradient, variable, learning_rate, repeated)

  def _shapes_as_variables(self, grads, trainable_variables):
    """Whether every gradient is dense, of exactly its variable's shape: the usual step, checked in
    one C-level pass against the variables' shapes (kept per variable list), which then needs
    no shape check, no broadcast and no index check."""
    key = tuple(map(id, trainable_variables))
    dims = self._variable_dims.get(key)
    if dims is None:
      dims = self._variable_dims.put(key, checks.variable_dims(
          [_tf_variable(v) for v in trainable_variables]))
    return checks.dense_shapes_equal(grads, dims)

  # --- decisions: Keras's, and where the fused op takes over -----------------------------------

  def _keras_computes(self, var):
    """Whether Keras's own update_step updates `var`: a variable of any float dtype given a
    hyperparameter of one value per element (the fused ops take one value;
    _hyperparameters.per_element), and float32/float64 variables whose Keras update computes a
    hyperparameter term in another dtype (a NumPy float64 beta on a float32 variable;
    _decisions.promoted_terms). Otherwise 16-bit variables are computed in float32 by the fused
    ops; 8-bit states and lazy rows always (Keras has no rule for them; its own would update every
    row of a lazy variable)."""
    dtype = var.dtype.base_dtype
    if (self._has_8bit_states(var) or not dtype.is_floating
        or id(var) in getattr(self._building_step, "lazy_rows", ())):
      return False
    if not _hyperparameters.all_plain(self) and _hyperparameters.per_element(self):
      return True
    if dtype not in (tf.float32, tf.float64):
      return False
    return bool(_decisions.promoted_terms_cached(self, dtype))

  def _check_hyperparameters(self, variables):
    """Keras's judgement of the hyperparameters (_hyperparameters.py), made where Keras makes its
    conversions: under a strategy in a merge call, as its decay pass and update are, so that a
    step that cannot merge (a synchronization inside a conditional of a tf.function: gradient
    accumulation) fails there first with TensorFlow's RuntimeError, as Keras's step does."""
    if _hyperparameters.all_plain(self):
      return
    why = {id(v): self._takes_one_value(v) for v in variables}  # (this thread's step state)
    tf.__internal__.distribute.interim.maybe_merge_call(
        lambda distribution: _hyperparameters.check_before_writes(
            self, variables, lambda v: why[id(v)], _WHO),
        self._distribution_strategy)

  def _takes_one_value(self, keras_var):
    """Why the update of `keras_var` can only be ours, which takes one value of each
    hyperparameter (never Keras's own: _keras_computes): "8-bit states", "lazy rows", or None."""
    var = _tf_variable(keras_var)
    if self._has_8bit_states(var):
      return "8-bit states"
    if id(var) in getattr(self._building_step, "lazy_rows", ()):
      return "lazy rows"
    return None

  def _decays_in_op(self, var, repeated=False):
    """Whether the fused op applies `var`'s weight decay in its own pass; otherwise Keras's own
    pass does, before the update. In the op: 16-bit variables always (computed in float32 and
    rounded once, the decay in the same pass, in every mode); float32/float64 eagerly and under XLA
    with the ops' kernels. Keras's pass: float32/float64 in graphs without XLA (grappler may
    rewrite Keras's var * wd * lr as var * (wd * lr), which rounds differently: only Keras's own
    expression is sure to get the same rewrite), variables Keras's update_step updates, and a
    variable given more than once in a step (Keras decays it once per time it is given, before
    any update). In the op too, in every mode: a lazy update's rows (the decay of the rows it
    names, docs/keras.md; Keras has no lazy rule to follow, and its pass would decay every row)."""
    if repeated or self._keras_computes(var):
      return False
    lazy_rows = getattr(self._building_step, "lazy_rows", ())
    return _is_16_bit(var) or tf.executing_eagerly() or id(var) in lazy_rows or (
        xla.in_xla_context() and xla.kernels_usable([var]))

  def _decays(self, var, repeated=False):
    """Whether the op applies var's weight decay: Keras decays it, and the op does it."""
    return self._decays_in_op(var, repeated) and _decisions.uses_weight_decay(self, var)

  # --- the fused step ------------------------------------------------------------------------------

  def _keras_slots(self, keras_var):
    """m, v and vhat (None without amsgrad) of a Keras variable, as Keras variables."""
    index = self._get_variable_index(keras_var)
    vhat = self._velocity_hats[index] if self.amsgrad else None
    return self._momentums[index], self._velocities[index], vhat

  def _slots(self, keras_var):
    """m, v and vhat (None without amsgrad) of a Keras variable, as tf.Variables."""
    return tuple(None if slot is None else _tf_variable(slot)
                 for slot in self._keras_slots(keras_var))

  def _step(self, repeated):
    return _plan.KerasStep(
        optimizer=self, iterations=self._iterations.value, slots=self._slots,
        keras_slots=self._keras_slots,
        keras_computes=self._keras_computes, has_8bit_states=self._has_8bit_states,
        states_8bit=self._8bit_pairs, keras_states_8bit=self._keras_8bit_pairs,
        decays=lambda var: self._decays(var, id(var) in repeated),
        keras_update=super().update_step,
        update_one=lambda grad, keras_var, lr: self._update_one(
            grad, keras_var, lr, id(_tf_variable(keras_var)) in repeated),
        checked_scalars=self._checked_scalars, checks=self._step_checks)

  def _update_round(self, grads, trainable_variables, learning_rate, repeated):
    """The updates of distinct variables: Keras's own update_step where it computes, one fused op
    per IndexedSlices gradient, one multi-tensor op per (device, dtype, decays) group (with 8-bit
    states: ResourceApplyAdam8bitMulti)."""
    if xla.in_xla_context():
      if xla.kernels_usable([_tf_variable(v) for v in trainable_variables]):
        return _xla_step.fused_step(self._step(repeated), grads, trainable_variables,
                                    learning_rate)
      for grad, keras_var in zip(grads, trainable_variables):  # update_step: Keras's or composite
        self.update_step(grad, keras_var, learning_rate)
      return None
    plan = self._plan_of(grads, trainable_variables, repeated)
    for i in plan.host_positions:
      super().update_step(grads[i], trainable_variables[i], learning_rate)
    for i in plan.sparse_positions:
      self._update_one(grads[i], trainable_variables[i], learning_rate,
                       id(_tf_variable(trainable_variables[i])) in repeated)
    for group in plan.groups:
      with tf.device(group.device):
        apply.group(group.handles,
                    _inputs.step_scalars(self, group.dtype, learning_rate, group.decays),
                    [_inputs.as_dtype(grads[i], group.dtype) for i in group.positions],
                    decays=group.decays)
    self._building_step.updates_8bit = [
        self._update_8bit_group(group, [grads[i] for i in group.positions], learning_rate)
        for group in plan.groups_8bit]
    return None

  def _plan_of(self, grads, trainable_variables, repeated):
    """The plan of a round (_plan.make_plan), kept per variable list and what it depends on."""
    sparse = tuple(isinstance(grad, tf.IndexedSlices) for grad in grads)
    key = (tuple(map(id, trainable_variables)), sparse, self.weight_decay is None,
           tf.executing_eagerly(), _hyperparameters.signature(self), repeated)
    plan = self._plans.plan_for(key, trainable_variables)
    if plan is None:
      plan = self._plans.put(key, _plan.make_plan(self._step(repeated), trainable_variables,
                                                  sparse))
      if not tf.executing_eagerly():  # the function being traced captures its packed vectors
        self._traced_packed.keep(p for group in plan.groups + plan.groups_8bit
                                 for p in group.packed)
    return plan

  def _checked_scalars(self, dtype, learning_rate, decays):
    """The scalars of a single update (8-bit or float, dense or sparse): under XLA, after the
    step's checks (the 8-bit states' scales, states_8bit.py _scale_guards; every sparse index of
    the fused ops, checks.xla_index_check; apply.after_check), which nothing else orders it
    after."""
    return apply.after_check(_inputs.step_scalars(self, dtype, learning_rate, decays),
                             *self._step_checks())

  def _step_checks(self):
    """The checks of the step being built under XLA: its 8-bit scales' (states_8bit.py
    _scale_guards) and its sparse indices' (checks.xla_index_check), those it has."""
    return [check for check in (getattr(self._building_step, "scales_checked", None),
                                getattr(self._building_step, "indices_checked", None))
            if check is not None]

  def _rows_of_rule(self, grad, var):
    """An IndexedSlices gradient's rows as the op's rule takes them: Keras's rule (not lazy) the
    rows Keras keeps (_kept_rows.py), lazy rows all of them (checked in range)."""
    return grad if self.lazy else _kept_rows.keras_kept_rows(grad, var)

  def _update_one(self, grad, keras_var, learning_rate, repeated=False):
    """One variable's fused op: the sparse op for IndexedSlices, else the single-variable op."""
    var = _tf_variable(keras_var)
    _plan.KerasStep.check_dtype(var)
    if self._has_8bit_states(var):
      return self._update_8bit(grad, keras_var, learning_rate, self._decays(var, repeated))
    dtype = var.dtype.base_dtype
    m, v, vhat = (s.handle if s is not None else None for s in self._slots(keras_var))
    decays = self._decays(var, repeated)
    scalars = self._checked_scalars(dtype, learning_rate, decays)
    if isinstance(grad, tf.IndexedSlices):
      grad = self._rows_of_rule(grad, var)
      values = tf.cast(grad.values, dtype)  # Keras casts the gradient to the variable's dtype
      return apply.sparse(var.handle, m, v, scalars, values, grad.indices, vhat=vhat,
                          decays=decays, lazy=self.lazy, dense_rule=True)
    return apply.dense(var.handle, m, v, scalars, _inputs.as_dtype(grad, dtype), vhat=vhat,
                       decays=decays)


@keras.saving.register_keras_serializable(package="tf_adam_op")
class Adam(_FusedAdamMixin, keras.optimizers.Adam):
  """keras.optimizers.Adam on tf_adam_op's fused ops (Keras's arguments, and `lazy`).

  Args: those of keras.optimizers.Adam, and
    lazy: (keyword) IndexedSlices gradients update m, v and var of the named rows only (LazyAdam,
      as TF Addons had it), instead of Keras's rule, which densifies them and updates every row.
    state_bits: (keyword) 32, or 8: the momentum and velocity of variables of at least
      min_8bit_size (4096) elements are 8-bit codes with a float32 scale per block of 256
      (bitsandbytes' scheme; variables <var>_momentum_codes, _momentum_absmax, _velocity_codes,
      _velocity_absmax). See docs/state_8bit.md.
  """


@keras.saving.register_keras_serializable(package="tf_adam_op")
class AdamW(_FusedAdamMixin, keras.optimizers.AdamW):
  """keras.optimizers.AdamW on tf_adam_op's fused ops (Keras's arguments, and `lazy`).

  The weight decay, var -= var * weight_decay * learning_rate before the step, is done eagerly by
  the same op as the step, in graphs by Keras's own pass (see _apply_weight_decay);
  exclude_from_weight_decay works as in Keras.
  """
