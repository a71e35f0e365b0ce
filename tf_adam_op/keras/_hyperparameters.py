"""Keras's judgement of Adam's hyperparameters, made before anything is written (docs/keras.md).

Keras accepts for beta_1, beta_2, epsilon and weight_decay whatever its arithmetic accepts:
`update_step` casts the betas (`ops.cast(self.beta_1, dtype)`), mixes `1 - self.beta_1`,
`1 - self.beta_2` and `self.epsilon` into keras.ops as they are, and AdamW's decay pass casts
`self.weight_decay`; each result broadcasts against the variable. So a one-element list, a NumPy
array of shape (1,) or of the variable's last dimension all work, and None, a string, or a list
that Keras subtracts from 1 raise Keras's (or TensorFlow's) error - in Keras, after it has written
the variables it updated before.

Here Keras's own conversions run first, on a scalar of each variable's dtype and in Keras's order
(every decay, then each variable's update), so an error is the one Keras raises in this mode, with
a note naming the hyperparameter, and is raised before any write. What Keras accepts is then
computed: a value of one element by the fused ops (as a scalar: the numbers Keras's broadcasting
gives), a value with one element per variable element by Keras's own update_step (the fused ops
take one value), except with 8-bit states and lazy rows, which Keras has no rule for: a
ValueError there.
Plain values (Python and NumPy numbers, scalar tensors and variables) need none of this and skip it.
"""

import keras
import numpy as np
import tensorflow as tf

from tf_adam_op._step import checks
from tf_adam_op.keras import _decisions

_NAMES = ("beta_1", "beta_2", "epsilon", "weight_decay")


def _values(opt):
  """(name, value) of the hyperparameters; weight_decay only where set (None: no decay)."""
  return [(name, getattr(opt, name)) for name in _NAMES
          if name != "weight_decay" or opt.weight_decay is not None]


def value_shape(value):
  """The shape keras.ops gives `value` (a tuple), or None where it cannot be told (no fixed shape,
  a ragged list)."""
  shape = getattr(value, "shape", None)
  if shape is None:
    if not isinstance(value, (list, tuple)):
      return ()  # a number, None or a string: what converts at all converts to a scalar
    try:
      return np.shape(value)
    except ValueError:
      return None
  shape = tf.TensorShape(shape)
  return tuple(shape.as_list()) if shape.is_fully_defined() else None


def _is_plain(value):
  """A value every Keras step takes as one number: a Python or NumPy number, a scalar tensor or
  variable of a real dtype."""
  if isinstance(value, (int, float, np.number)):
    return True
  dtype = getattr(value, "dtype", None)
  return (tf.is_tensor(value) or isinstance(value, tf.Variable)) and value_shape(value) == () and (
      tf.as_dtype(dtype).is_floating or tf.as_dtype(dtype).is_integer)


def all_plain(opt):
  return all(_is_plain(value) for _, value in _values(opt))


def signature(opt):
  """What the hyperparameters' judgement depends on besides the variables: their kinds and shapes
  (a step plan made under others is not reused)."""
  return tuple((name, str(getattr(value, "dtype", type(value))), value_shape(value))
               for name, value in _values(opt))


def per_element(opt):
  """The names of the hyperparameters with more than one value (or a shape not known): Keras's
  arithmetic broadcasts them over the variable, the fused ops take one value."""
  names = []
  for name, value in _values(opt):
    if _is_plain(value):
      continue
    shape = value_shape(value)
    if shape is None or int(np.prod(shape)) > 1:
      names.append(name)
  return names


def as_one_value(tensor):
  """A converted hyperparameter of one element (shape (1,), (1, 1) ...) as the scalar the fused
  ops take: each element of Keras's broadcast result is this value."""
  if tensor.shape.rank == 0:
    return tensor
  return tf.reshape(tensor, [])


def _keras_error(error, name, value):
  """Keras's own error, with a note naming the hyperparameter (Python 3.11+ prints notes)."""
  if hasattr(error, "add_note"):
    error.add_note(f"tf_adam_op.keras: raised converting {name}={value!r} as Keras's update step "
                   "converts it; nothing was written")
  return error


def _converted(name, value, convert):
  try:
    return convert()
  except Exception as error:  # Keras's (or TF's) own, of its own type
    raise _keras_error(error, name, value) from None


def _shape_error(message):
  checks._raise_shape_error(message)  # of the type Keras's arithmetic raises in this mode


def _broadcast(names, shape, other, var, who):
  """The shape keras.ops broadcasts two terms of `var`'s update to (None if not known), or its
  error."""
  if shape is None or other is None:
    return None
  try:
    return np.broadcast_shapes(shape, other)
  except ValueError:
    _shape_error(f"{who}: {names} have shapes {shape} and {other}, which do not broadcast "
                 f"together (in the update of variable {_decisions.error_name(var)!r})")


def _check_broadcast(name, shape, var, who):
  """Keras's arithmetic broadcasts a term of shape `shape` against the variable and assigns the
  result to it: a broadcast that is not the variable's shape is its shape error."""
  var_shape = value_shape(var)
  if shape is None or var_shape is None:
    return
  try:
    broadcast = np.broadcast_shapes(shape, var_shape)
  except ValueError:
    broadcast = None
  if broadcast != var_shape:
    _shape_error(f"{who}: {name} has shape {shape}, which does not broadcast to the shape "
                 f"{var_shape} of variable {_decisions.error_name(var)!r} (Keras's arithmetic "
                 "needs it to)")


def check_before_writes(opt, variables, takes_one_value, who):
  """Keras's conversions of the hyperparameters for each of `variables` (Keras variables), in the
  order its step makes them: an error before anything is written where Keras raises one, and a
  ValueError where a hyperparameter of more than one value meets an update that takes one
  (`takes_one_value(variable)`: why, e.g. "8-bit states", or None)."""
  if all_plain(opt):
    return
  distinct = list({(v.dtype, value_shape(v), takes_one_value(v)): v for v in variables}.values())
  if opt.weight_decay is not None:
    for var in distinct:  # Keras's decay pass, for every variable before any update
      if _decisions.uses_weight_decay(opt, var):
        term = _converted("weight_decay", opt.weight_decay,
                          lambda var=var: tf.cast(opt.weight_decay, var.dtype))
        _check_broadcast("weight_decay", value_shape(term), var, who)
  for var in distinct:
    _check_update_step(opt, var, who)
    several = [name for name in per_element(opt)
               if name != "weight_decay" or _decisions.uses_weight_decay(opt, var)]
    why = takes_one_value(var)
    if several and why:
      shapes = ", ".join(str(value_shape(getattr(opt, name))) for name in several)
      raise ValueError(
          f"{who}: the update of variable {_decisions.error_name(var)!r} ({why}: Keras has no "
          f"rule for it) takes one value of each hyperparameter; {', '.join(several)} has more "
          f"(shape {shapes})")


def _check_update_step(opt, var, who):
  """Keras's update_step for `var`, its conversions and broadcasts in its order: both betas cast,
  their powers combined (alpha), `1 - beta_1` into m, `1 - beta_2` into v, epsilon into the
  update of the variable (alpha's shape too)."""
  dtype = var.dtype
  probe = keras.ops.zeros((), dtype)
  beta_1 = _converted("beta_1", opt.beta_1, lambda: keras.ops.cast(opt.beta_1, dtype))
  beta_2 = _converted("beta_2", opt.beta_2, lambda: keras.ops.cast(opt.beta_2, dtype))
  alpha = _broadcast("beta_1 and beta_2", value_shape(beta_1), value_shape(beta_2), var, who)
  for name, value in (("beta_1", opt.beta_1), ("beta_2", opt.beta_2)):
    term = _converted(name, value, lambda value=value: keras.ops.multiply(probe, 1 - value))
    _check_broadcast(name, value_shape(term), var, who)
  epsilon = _converted("epsilon", opt.epsilon, lambda: keras.ops.add(probe, opt.epsilon))
  update = _broadcast("epsilon and the betas", value_shape(epsilon), alpha, var, who)
  _check_broadcast("beta_1, beta_2 and epsilon", update, var, who)
