"""The decisions Keras makes in an Adam/AdamW step, taken by Keras's own code (docs/keras.md).

The fused optimizers replace Keras's arithmetic, never its decisions. Each function here asks
Keras, with the arguments Keras's TensorFlow backend passes, and says what the fused update must
then do:
- which variables decay: `BaseOptimizer._use_weight_decay`, called (as the TF backend's
  `_apply_weight_decay` calls it) with the tf.Variable behind the Keras variable, whose name is the
  full path (`layer_norm/gamma:0`) that `exclude_from_weight_decay(var_names=...)` matches;
- in which dtype each term is computed: Keras's `update_step` mixes three hyperparameters into its
  arithmetic as they are (`... * (1 - beta_1)`, `... * (1 - beta_2)`, `sqrt(v) + epsilon`), and
  keras.ops promotes by `keras.backend.result_type`: a Python float is weak (the variable's dtype),
  a NumPy float64 or a float64 tensor is not (the term is computed in float64 and rounded when
  assigned). The fused ops compute in the variable's dtype, so where Keras promotes, Keras's own
  update_step runs for that variable (its numbers, its speed).
"""

import keras


def tf_variable(variable):
  """The tf.Variable behind a Keras variable (or the variable itself)."""
  return variable.value if isinstance(variable, keras.Variable) else variable


def error_name(variable):
  """What an error calls a Keras variable: its path ('dense/kernel'), unique where names are not."""
  return getattr(variable, "path", variable.name)


def uses_weight_decay(opt, variable):
  """Whether Keras's AdamW/Adam decays `variable` this step (weight_decay set, not excluded)."""
  return opt.weight_decay is not None and bool(opt._use_weight_decay(tf_variable(variable)))


def _keras_dtype(value):
  """What keras.ops takes as the dtype of `value` (a Python int or float is weak; a list or tuple
  is what Keras's conversion makes of it: [1e-7] is float32)."""
  if isinstance(value, (list, tuple)):
    try:
      return keras.ops.convert_to_tensor(value).dtype
    except (TypeError, ValueError):
      return type(value)  # (what Keras cannot convert: promoted_terms says so)
  return getattr(value, "dtype", type(value))


def promoted_terms(opt, dtype):
  """The hyperparameter terms of Keras's update_step that keras.ops computes in another dtype than
  the variable's `dtype` (e.g. ["1 - beta_1"] for a NumPy float64 beta_1 on a float32 variable)."""
  dtype = keras.backend.standardize_dtype(dtype)
  try:
    terms = (("1 - beta_1", 1 - opt.beta_1), ("1 - beta_2", 1 - opt.beta_2),
             ("epsilon", opt.epsilon))
    return [name for name, value in terms
            if keras.backend.result_type(dtype, _keras_dtype(value)) != dtype]
  except (TypeError, ValueError):
    # A hyperparameter keras.ops has no dtype for (a list, None, a string): Keras's own update_step
    # computes it (_hyperparameters.py has raised Keras's error, before any write, where there is
    # one: a step plan is made before that check).
    return ["a hyperparameter of a type keras.ops converts itself"]


_PROMOTED = {}


def promoted_terms_cached(opt, dtype):
  """promoted_terms, kept per (dtype, the hyperparameters' types): asked per variable per step."""
  key = (dtype, _keras_dtype(opt.beta_1), _keras_dtype(opt.beta_2), _keras_dtype(opt.epsilon))
  terms = _PROMOTED.get(key)
  if terms is None:
    terms = _PROMOTED[key] = promoted_terms(opt, dtype)
  return terms

