"""The v1 optimizers' hyperparameters: as given (numbers, tensors, callables), checked, and made
into this thread's tensors for each step.

Stock's rules: a callable is called at each step's _prepare, everything is converted with
tf.convert_to_tensor (a Python float becomes float32) and cast to the update's compute dtype where
used. Python numbers out of range are a ValueError at construction; tensors and callables are
checked when their value is known (eager steps). In eager mode, plain numbers are converted once
and kept, not every step.
"""

import numbers
import threading

import tensorflow as tf

from tf_adam_op import ops

# name -> (valid, rule): NaN fails every comparison, so it is rejected.
_RANGES = {
    "learning_rate": (lambda x: x >= 0, "must be >= 0"),
    # Stock accepts 1.0, which freezes the beta powers (TF's own tests rely on it).
    "beta1": (lambda x: 0 <= x <= 1, "must be in [0, 1]"),
    "beta2": (lambda x: 0 <= x <= 1, "must be in [0, 1]"),
    "epsilon": (lambda x: x >= 0, "must be >= 0"),
    "weight_decay": (lambda x: x >= 0, "must be >= 0"),
}


def is_number(value):
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_ranges(values, who):
  """ValueError for values out of range ({name: value}); values that are not numbers pass."""
  for name, value in values.items():
    valid, rule = _RANGES[name]
    if is_number(value) and not valid(value):
      raise ValueError(f"{who}: {name} {rule}, got {value!r}")


class Hyperparameters:
  """The hyperparameters as given, and the tensors of this thread's step.

  Args:
    given: {name: value} in the order the step converts them.
    who: the optimizer's name in errors.
  """

  def __init__(self, given, who):
    self._given = dict(given)
    self._direct = set()
    self._who = who
    check_ranges(self._given, who)
    # Per thread: two threads stepping one optimizer each see their own step's tensors.
    self._this_step = threading.local()
    self._eager_cache = None

  def add(self, name, value, direct=False):
    """One more hyperparameter (AdamWOptimizer's weight_decay). `direct`: a Python number is
    converted straight to the update's compute dtype (as contrib's `weight_decay * var` did), not
    through float32."""
    check_ranges({name: value}, self._who)
    self._given[name] = value
    if direct:
      self._direct.add(name)

  def tensor(self, name):
    """This thread's tensor of `name` (as converted by prepare), or None before any step."""
    tensors = getattr(self._this_step, "tensors", None)
    return None if tensors is None else tensors[name]

  def prepare(self, call_if_callable):
    """This step's tensors: callables called, values checked where known (eager), converted."""
    self._eager_cache = None
    values = {n: call_if_callable(x) for n, x in self._given.items()}
    if tf.executing_eagerly():  # values are known: check callables and tensors too
      check_ranges({n: float(x) if tf.is_tensor(x) and x.shape.rank == 0 else x
                    for n, x in values.items()}, self._who)
    self._this_step.tensors = {n: tf.convert_to_tensor(x, name=n) for n, x in values.items()}

  def prepare_eagerly(self, call_if_callable):
    """prepare, with the tensors of plain-number hyperparameters kept from step to step (callables
    and tensors are re-evaluated every step, as in stock)."""
    values = tuple(self._given.values())
    if not all(map(is_number, values)):
      self.prepare(call_if_callable)
      return
    cache = self._eager_cache
    if cache is None or cache["values"] != values:
      cache = self._eager_cache = {
          "values": values,
          "tensors": {n: tf.convert_to_tensor(x, name=n) for n, x in self._given.items()}}
    self._this_step.tensors = cache["tensors"]

  def in_compute_dtype(self, name, dtype):
    """`name`'s tensor in the compute dtype of an update of `dtype` variables (eagerly, for plain
    numbers, cast once)."""
    compute = ops.compute_dtype(dtype)
    cache = self._eager_cache if tf.executing_eagerly() else None
    key = (name, compute)
    if cache is not None and key in cache:
      return cache[key]
    value = self._given[name]
    if name in self._direct and is_number(value):
      tensor = tf.constant(value, compute, name=name)
    else:
      tensor = tf.cast(self.tensor(name), compute)
    if cache is not None:
      cache[key] = tensor
    return tensor
