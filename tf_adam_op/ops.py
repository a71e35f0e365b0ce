"""Python wrappers of the raw ops, inputs in stock ApplyAdam's order.

They are the wrappers `tf.load_op_library` generates, with one convenience: hyperparameters given as
Python numbers are converted to the type the update is computed in (float32 for half, bfloat16 and
float32 variables, float64 for float64 ones), which the op requires, and a hyperparameter tensor of
another dtype is a TypeError when the op is built (the kernel checks it too).
"""

import numbers

import tensorflow as tf

from tf_adam_op import _loader

__all__ = ["apply_adam_v1", "resource_apply_adam_v1", "sparse_apply_adam_v1",
           "resource_sparse_apply_adam_v1", "resource_apply_adam_v1_multi",
           "resource_apply_adam_v1_multi_no_advance", "resource_apply_adam_v1_multi_unpacked",
           "resource_apply_adam_8bit", "resource_sparse_apply_adam_8bit",
           "resource_apply_adam_8bit_multi", "resource_apply_adam_8bit_multi_unpacked",
           "compute_dtype"]

# Loaded at import, so a missing library or a TF version mismatch is an ImportError right away.
_op_library = _loader.op_library()
# Then their XLA kernels, where built (see _loader.xla_kernels; a failure leaves the ops working).
_loader.xla_kernels()

OP_NAMES = ("ApplyAdamV1", "ResourceApplyAdamV1", "SparseApplyAdamV1", "ResourceSparseApplyAdamV1",
            "ResourceApplyAdamV1Multi", "ResourceApplyAdamV1MultiNoAdvance",
            "ResourceApplyAdamV1MultiUnpacked", "ResourceApplyAdam8bit",
            "ResourceSparseApplyAdam8bit", "ResourceApplyAdam8bitMulti",
            "ResourceApplyAdam8bitMultiUnpacked", "Check8bitScales", "CheckIndicesInRange")
for _op_name in OP_NAMES:
  tf.no_gradient(_op_name)


def _library():
  """The op library, after putting the import marker into the graph being built (once a graph).

  The marker (an op that does nothing and is pruned before the graph runs, see cc/ops/adam_ops.cc)
  comes before this package's ops in the graph and in any function or SavedModel made of it. A
  process that loads one without `import tf_adam_op` therefore fails on it first, with TensorFlow's
  "Op type not registered 'Import_tf_adam_op_before_loading_this_graph'".
  """
  if not tf.executing_eagerly():
    graph = tf.compat.v1.get_default_graph()
    if not getattr(graph, "_tf_adam_op_import_marker", False):
      # Outside any control dependency, device or colocation scope of the caller's: it ties to
      # nothing and runs nowhere.
      with tf.control_dependencies(None), graph.device(None), graph.colocate_with(
          None, ignore_existing=True):
        _op_library.import_tf_adam_op_before_loading_this_graph()
      graph._tf_adam_op_import_marker = True
  return _op_library


def compute_dtype(dtype):
  """The dtype an Adam update of `dtype` variables is computed in (and its hyperparameters' dtype)."""
  return tf.float64 if tf.as_dtype(dtype).base_dtype == tf.float64 else tf.float32


SCALAR_NAMES = ("beta1_power", "beta2_power", "lr", "beta1", "beta2", "epsilon")


def _scalars(values, variable_dtype, names=SCALAR_NAMES):
  """Python numbers become tensors of the compute dtype, and so do tensors of the variables' own
  dtype (half, bfloat16: what a call written for stock's ApplyAdam passes; widening is exact); a
  tensor of any other dtype is a TypeError."""
  dtype = compute_dtype(variable_dtype)
  own_dtype = tf.as_dtype(variable_dtype).base_dtype
  scalars = []
  for name, x in zip(names, values):
    x_dtype = tf.as_dtype(x.dtype).base_dtype if hasattr(x, "dtype") else None
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
      x = tf.constant(x, dtype=dtype)
    elif x_dtype == own_dtype and own_dtype != dtype:
      x = tf.cast(x, dtype)
    elif x_dtype is not None and x_dtype != dtype:
      accepted = dtype.name if own_dtype == dtype else f"{dtype.name} (or {own_dtype.name})"
      raise TypeError(
          f"{name} has dtype {x_dtype.name}, but an Adam update of {own_dtype.name} variables "
          f"takes {accepted} hyperparameters")
    scalars.append(x)
  return scalars


def _variable_dtype(var, grad):
  """var's dtype for a ref variable; for a resource handle, the gradient's."""
  dtype = getattr(var, "dtype", None)
  if dtype is not None and dtype.base_dtype != tf.resource:
    return dtype.base_dtype
  return tf.convert_to_tensor(grad).dtype


def _variant_inputs(vhat, weight_decay, weight_decay_times_lr, variable_dtype, one_minus_beta=None):
  """The optional inputs every op takes: AMSGrad's vhat (a variable, or a vector of handles for the
  multi-tensor ops), the decoupled weight decay (a scalar, converted as the other hyperparameters
  are) and (1 - beta1, 1 - beta2) when the caller rounds them, as the lists the ops take."""
  if weight_decay is None and weight_decay_times_lr:
    raise ValueError("weight_decay_times_lr=True needs a weight_decay")
  decay = [] if weight_decay is None else _scalars([weight_decay], variable_dtype, ["weight_decay"])
  if one_minus_beta is None:
    one_minus = []
  elif len(one_minus_beta) != 2:
    raise ValueError(f"one_minus_beta is (1 - beta1, 1 - beta2), got {len(one_minus_beta)} values")
  else:
    one_minus = _scalars(one_minus_beta, variable_dtype, ["1 - beta1", "1 - beta2"])
  return dict(vhat=[] if vhat is None else [vhat], weight_decay=decay,
              weight_decay_times_lr=bool(weight_decay_times_lr), one_minus_beta=one_minus)


def _single_variable_inputs(var, grad, scalars, vhat, weight_decay, weight_decay_times_lr,
                            one_minus_beta=None):
  """The six scalars converted (_scalars) and the optional inputs (_variant_inputs) of an op on
  one variable, whose dtype comes from var or, for a handle, grad."""
  dtype = _variable_dtype(var, grad)
  return _scalars(scalars, dtype), _variant_inputs(vhat, weight_decay, weight_decay_times_lr, dtype,
                                                   one_minus_beta)


# The options every wrapper below takes (keyword-only):
#   vhat: AMSGrad's max of v, a variable of var's shape (a handle for the resource ops; for the
#     multi-tensor ops `vhats`, N handles); vhat = max(vhat, v) and sqrt(vhat) replaces sqrt(v), as
#     stock's ApplyAdamWithAmsgrad.
#   weight_decay: decoupled weight decay in the same pass, before the step: var -= weight_decay * var
#     (TF1 contrib's AdamW, TF Addons), or var -= (var * weight_decay) * lr with
#     weight_decay_times_lr=True (Keras 3's AdamW). A Python number or a scalar tensor.
#   one_minus_beta: (1 - beta1, 1 - beta2) as two numbers or scalar tensors, used instead of the op
#     computing them from beta1 and beta2 (Keras 3 rounds them from doubles: tf_adam_op.keras).


def apply_adam_v1(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad,
                  use_locking=False, use_nesterov=False, name=None, *, vhat=None,
                  weight_decay=None, weight_decay_times_lr=False, one_minus_beta=None):
  """One Adam step on ref variables var, m, v (TF1 graphs). Returns var's ref."""
  scalars, extra = _single_variable_inputs(var, grad, (beta1_power, beta2_power, lr, beta1, beta2,
                                                        epsilon), vhat, weight_decay,
                                          weight_decay_times_lr, one_minus_beta)
  return _library().apply_adam_v1(
      var, m, v, *scalars, grad, use_locking=use_locking, use_nesterov=use_nesterov, name=name,
      **extra)


def resource_apply_adam_v1(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad,
                           use_locking=False, use_nesterov=False, name=None, *, vhat=None,
                           weight_decay=None, weight_decay_times_lr=False, one_minus_beta=None):
  """One Adam step on resource variables, given by their handles. Returns the op."""
  scalars, extra = _single_variable_inputs(var, grad, (beta1_power, beta2_power, lr, beta1, beta2,
                                                        epsilon), vhat, weight_decay,
                                          weight_decay_times_lr, one_minus_beta)
  return _library().resource_apply_adam_v1(
      var, m, v, *scalars, grad, use_locking=use_locking, use_nesterov=use_nesterov, name=name,
      **extra)


def sparse_apply_adam_v1(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad,
                         indices, use_locking=False, lazy=False, scale_first=False, v_term=None,
                         name=None, *, vhat=None, weight_decay=None, weight_decay_times_lr=False,
                         one_minus_beta=None, dense_rule=False):
  """Adam on the rows `indices` of ref variables (duplicates summed). Returns var's ref.

  lazy=False is stock AdamOptimizer's sparse rule (m and v decay on every row); lazy=True updates
  only the named rows (LazyAdam). v's gradient term is (g * g) * (1 - beta2) as stock writes it, or
  with scale_first=True g * (g * (1 - beta2)), the order grappler's arithmetic optimizer gives
  stock's graph; or, given `v_term` (a tensor of grad's shape, summed over duplicate indices like
  grad), that term: see `stock_sparse_v_term`. With weight_decay only the named rows decay, once
  each.

  dense_rule=True is Keras 3's Adam on an IndexedSlices gradient (which Keras densifies): every
  row (lazy: every named row) follows the dense rule, m += (g - m) * (1 - beta1), with g * g the
  sum of the duplicates' squares, v_term (given, or here tf.square(grad)); without lazy the rows
  without a gradient take g = 0, and the weight decay applies to every row.
  """
  scalars, extra = _single_variable_inputs(var, grad, (beta1_power, beta2_power, lr, beta1, beta2,
                                                        epsilon), vhat, weight_decay,
                                          weight_decay_times_lr, one_minus_beta)
  return _library().sparse_apply_adam_v1(
      var, m, v, *scalars, grad, indices, _v_terms(grad, v_term, dense_rule),
      use_locking=use_locking, lazy=lazy, scale_first=scale_first, dense_rule=bool(dense_rule),
      name=name, **extra)


def resource_sparse_apply_adam_v1(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon,
                                  grad, indices, use_locking=False, lazy=False, scale_first=False,
                                  v_term=None, name=None, *, vhat=None, weight_decay=None,
                                  weight_decay_times_lr=False, one_minus_beta=None,
                                  dense_rule=False):
  """sparse_apply_adam_v1 on resource variables, given by their handles. Returns the op."""
  scalars, extra = _single_variable_inputs(var, grad, (beta1_power, beta2_power, lr, beta1, beta2,
                                                        epsilon), vhat, weight_decay,
                                          weight_decay_times_lr, one_minus_beta)
  return _library().resource_sparse_apply_adam_v1(
      var, m, v, *scalars, grad, indices, _v_terms(grad, v_term, dense_rule),
      use_locking=use_locking, lazy=lazy, scale_first=scale_first, dense_rule=bool(dense_rule),
      name=name, **extra)


def _8bit_state_inputs(m_states, v_states, vhat_states):
  """The 8-bit ops' state handles: (codes, absmax) pairs of m and v, and AMSGrad's as a list."""
  vhat = [] if vhat_states is None else list(vhat_states)
  if len(vhat) not in (0, 2):
    raise ValueError(f"vhat_states is (codes, absmax), got {len(vhat)} values")
  return [*m_states, *v_states], vhat


def resource_apply_adam_8bit(var, m_states, v_states, beta1_power, beta2_power, lr, beta1, beta2,
                             epsilon, grad, use_locking=False, use_nesterov=False, name=None, *,
                             vhat_states=None, weight_decay=None, weight_decay_times_lr=False,
                             one_minus_beta=None):
  """resource_apply_adam_v1 with 8-bit states: m_states and v_states (and AMSGrad's vhat_states)
  are (codes, absmax) handle pairs: uint8 codes of var's shape and float32 scales, one per block of
  256 elements (tf_adam_op.state_8bit). Returns the op."""
  scalars, extra = _single_variable_inputs(var, grad, (beta1_power, beta2_power, lr, beta1, beta2,
                                                        epsilon), None, weight_decay,
                                          weight_decay_times_lr, one_minus_beta)
  states, extra["vhat"] = _8bit_state_inputs(m_states, v_states, vhat_states)
  return _library().resource_apply_adam8bit(
      var, *states, *scalars, grad, use_locking=use_locking, use_nesterov=use_nesterov, name=name,
      **extra)


def resource_sparse_apply_adam_8bit(var, m_states, v_states, beta1_power, beta2_power, lr, beta1,
                                    beta2, epsilon, grad, indices, use_locking=False, lazy=False,
                                    name=None, *, vhat_states=None, weight_decay=None,
                                    weight_decay_times_lr=False, one_minus_beta=None,
                                    dense_rule=False, v_term=None):
  """resource_sparse_apply_adam_v1 (stock's sparse rule, lazy, or Keras's dense_rule) with the
  8-bit states of resource_apply_adam_8bit. Returns the op."""
  scalars, extra = _single_variable_inputs(var, grad, (beta1_power, beta2_power, lr, beta1, beta2,
                                                        epsilon), None, weight_decay,
                                          weight_decay_times_lr, one_minus_beta)
  states, extra["vhat"] = _8bit_state_inputs(m_states, v_states, vhat_states)
  return _library().resource_sparse_apply_adam8bit(
      var, *states, *scalars, grad, indices, _v_terms(grad, v_term, dense_rule),
      use_locking=use_locking, lazy=lazy, dense_rule=bool(dense_rule), name=name, **extra)


def resource_apply_adam_8bit_multi(vars, m_states, v_states, beta1_power, beta2_power, lr, beta1,
                                   beta2, epsilon, grads, use_locking=False, use_nesterov=False,
                                   name=None, *, vhat_states=None, weight_decay=None,
                                   weight_decay_times_lr=False, one_minus_beta=None,
                                   variable_names=()):
  """resource_apply_adam_8bit for N variables in one op: vars N handles, m_states and v_states
  (and vhat_states) (codes, absmax) pairs of N handles each; each N handles a list, or a vector of
  them (pack_handles; packing once and reusing the vectors saves a per-variable cost on every
  call). variable_names: empty, or what an error about variable k's states calls it. Returns the
  op."""
  grads = list(grads)
  dtype = _list_dtype(grads)
  scalars = _scalars((beta1_power, beta2_power, lr, beta1, beta2, epsilon), dtype)
  extra = _variant_inputs(None, weight_decay, weight_decay_times_lr, dtype, one_minus_beta)
  extra["vhat"] = [] if vhat_states is None else [pack_handles(h) for h in vhat_states]
  return _library().resource_apply_adam8bit_multi(
      pack_handles(vars), pack_handles(m_states[0]), pack_handles(m_states[1]),
      pack_handles(v_states[0]), pack_handles(v_states[1]), *scalars, grads,
      use_locking=use_locking, use_nesterov=use_nesterov, variable_names=list(variable_names),
      name=name, **extra)


def resource_apply_adam_8bit_multi_unpacked(vars, m_states, v_states, beta1_power, beta2_power, lr,
                                            beta1, beta2, epsilon, grads, use_locking=False,
                                            use_nesterov=False, name=None, *, vhat_states=None,
                                            weight_decay=None, weight_decay_times_lr=False,
                                            one_minus_beta=None, variable_names=()):
  """resource_apply_adam_8bit_multi with every handle its own input (lists of N, never vectors):
  the form XLA compiles, into one custom call (see docs/xla.md). Returns the op."""
  grads = list(grads)
  dtype = _list_dtype(grads)
  scalars = _scalars((beta1_power, beta2_power, lr, beta1, beta2, epsilon), dtype)
  extra = _variant_inputs(None, weight_decay, weight_decay_times_lr, dtype, one_minus_beta)
  extra["vhat"] = [] if vhat_states is None else [*vhat_states[0], *vhat_states[1]]
  return _library().resource_apply_adam8bit_multi_unpacked(
      list(vars), list(m_states[0]), list(m_states[1]), list(v_states[0]), list(v_states[1]),
      *scalars, grads, use_locking=use_locking, use_nesterov=use_nesterov,
      variable_names=list(variable_names), name=name, **extra)


def check_8bit_scales(scales, name=None):
  """Check8bitScales: a bool vector, whether each variable of `scales` (handles of 8-bit states'
  float32 scale vectors: a list, or a vector of them, pack_handles) holds only scales a step can
  leave (>= 0 and finite, or NaN)."""
  return _library().check8bit_scales(pack_handles(scales), name=name)


def check_8bit_scale_values(scales, names, name=None):
  """Check8bitScaleValues: a float32 1.0 once every scale in the float32 tensors `scales` (8-bit
  states' scale vectors, read) is one a step can leave; otherwise InvalidArgumentError naming
  names[i] and the block. Under XLA its 1.0 is what a step's updates wait for
  (_step/apply.after_check)."""
  return _library().check8bit_scale_values(list(scales), names=list(names), name=name)


def check_indices_in_range(indices, rows, names, name=None):
  """CheckIndicesInRange: a float32 1.0 once every element of indices[i] (int32 or int64 vectors)
  is in [0, rows[i]) (an int64 vector, one count per vector); otherwise InvalidArgumentError naming
  names[i] and the first bad index. Under XLA its 1.0 is what a step's sparse updates wait for
  (_step/checks.xla_index_check, _step/apply.after_check)."""
  return _library().check_indices_in_range(list(indices), rows, names=list(names), name=name)


def _v_terms(grad, v_term, dense_rule):
  """The sparse ops' v_term list: none, the given term, or the dense form's squares of grad."""
  if v_term is None and dense_rule:
    v_term = tf.square(grad)
  return [] if v_term is None else [v_term]


def stock_sparse_v_term(values, indices, beta2):
  """Stock's sparse gradient and v term, built from the same TF ops stock builds them from:
  returns (summed values, unique indices, (summed * summed) * (1 - beta2)), beta2 in the values'
  dtype, as stock's _apply_sparse_shared casts it.

  In a graph grappler may rewrite stock's product (the arithmetic optimizer scales first) or
  evaluate it as written (when the gradient is constant-foldable); handing the sparse op a term
  built this way lets grappler do to ours whatever it does to stock's, so the two always agree.
  """
  from tensorflow.python.training import optimizer as optimizer_lib
  summed, unique = optimizer_lib._deduplicate_indexed_slices(values, indices)
  return summed, unique, (summed * summed) * (1 - beta2)


def _list_dtype(grads):
  if not grads:
    raise ValueError("A multi-tensor Adam update needs at least one variable")
  return tf.convert_to_tensor(grads[0]).dtype


def pack_handles(handles):
  """The vector of resource handles the multi-tensor ops take for vars, ms or vs, from a list of
  handles (a tensor is passed through)."""
  if isinstance(handles, (list, tuple)):
    return tf.stack(handles)
  return handles


def _multi_variant_inputs(vhats, weight_decay, weight_decay_times_lr, dtype, one_minus_beta):
  extra = _variant_inputs(None if vhats is None else pack_handles(vhats), weight_decay,
                          weight_decay_times_lr, dtype, one_minus_beta)
  extra["vhats"] = extra.pop("vhat")
  return extra


def resource_apply_adam_v1_multi(vars, ms, vs, beta1_power, beta2_power, lr, beta1, beta2, epsilon,
                                 grads, use_locking=False, use_nesterov=False,
                                 power_dtype=tf.float32, name=None, *, vhats=None,
                                 weight_decay=None, weight_decay_times_lr=False,
                                 one_minus_beta=None):
  """One whole Adam step for N resource variables, in one op. Returns the op.

  vars, ms and vs are lists of N handles, or vectors of them (pack_handles; packing once and
  reusing the vectors saves a per-variable cost on every call). Updates every (vars[i], ms[i],
  vs[i]) with grads[i], reading the beta powers from the variables
  beta1_power and beta2_power (handles), then advances them by beta1 and beta2. All or nothing: a
  bad input among the N changes no variable. All N must be of one dtype and on one device.
  power_dtype is the dtype of the beta power variables (float32 for the optimizer's). vhats (N
  handles, AMSGrad) and weight_decay apply to all N.
  """
  dtype = _list_dtype(grads)
  lr, beta1, beta2, epsilon = _scalars((lr, beta1, beta2, epsilon), dtype, SCALAR_NAMES[2:])
  extra = _multi_variant_inputs(vhats, weight_decay, weight_decay_times_lr, dtype, one_minus_beta)
  return _library().resource_apply_adam_v1_multi(
      pack_handles(vars), pack_handles(ms), pack_handles(vs), beta1_power, beta2_power, lr, beta1,
      beta2, epsilon, grads, use_locking=use_locking, use_nesterov=use_nesterov, Tpower=power_dtype,
      name=name, **extra)


def resource_apply_adam_v1_multi_no_advance(vars, ms, vs, beta1_power, beta2_power, lr, beta1,
                                            beta2, epsilon, grads, use_locking=False,
                                            use_nesterov=False, name=None, *, vhats=None,
                                            weight_decay=None, weight_decay_times_lr=False,
                                 one_minus_beta=None):
  """resource_apply_adam_v1_multi with the beta powers given as values and not advanced."""
  dtype = _list_dtype(grads)
  scalars = _scalars((beta1_power, beta2_power, lr, beta1, beta2, epsilon), dtype)
  extra = _multi_variant_inputs(vhats, weight_decay, weight_decay_times_lr, dtype, one_minus_beta)
  return _library().resource_apply_adam_v1_multi_no_advance(
      pack_handles(vars), pack_handles(ms), pack_handles(vs), *scalars, grads,
      use_locking=use_locking, use_nesterov=use_nesterov, name=name, **extra)


def resource_apply_adam_v1_multi_unpacked(vars, ms, vs, beta1_power, beta2_power, lr, beta1, beta2,
                                          epsilon, grads, use_locking=False, use_nesterov=False,
                                          name=None, *, vhats=None, weight_decay=None,
                                          weight_decay_times_lr=False, one_minus_beta=None):
  """resource_apply_adam_v1_multi_no_advance with vars, ms, vs (and vhats) as lists of N handles
  passed as N inputs each: the form XLA compiles, into one custom call (see docs/xla.md)."""
  dtype = _list_dtype(grads)
  scalars = _scalars((beta1_power, beta2_power, lr, beta1, beta2, epsilon), dtype)
  extra = _variant_inputs(None, weight_decay, weight_decay_times_lr, dtype, one_minus_beta)
  extra.pop("vhat")
  extra["vhats"] = list(vhats) if vhats is not None else []
  return _library().resource_apply_adam_v1_multi_unpacked(
      list(vars), list(ms), list(vs), *scalars, grads, use_locking=use_locking,
      use_nesterov=use_nesterov, name=name, **extra)


def stock_sparse_scales_first():
  """Whether stock's sparse Adam, built here and now, computes v's term as g * (g * (1 - beta2)).

  Stock writes (g * g) * (1 - beta2). Eager runs that as written; in a graph (TF1 session or
  tf.function) grappler's arithmetic optimizer, on by default, reorders the product so the scalar
  is applied first, which rounds differently. A TF1 session whose own ConfigProto turns that
  optimizer off cannot be seen from here: build its graph under
  tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False}) as well.
  """
  if tf.executing_eagerly():
    return False
  options = tf.config.optimizer.get_experimental_options()
  return not (options.get("disable_meta_optimizer") or options.get("arithmetic_optimization") is False)
