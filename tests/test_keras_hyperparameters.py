"""Hyperparameters as Keras judges them (tf_adam_op/keras/_hyperparameters.py, docs/keras.md).

Keras accepts for beta_1, beta_2, epsilon and weight_decay whatever its arithmetic accepts, and
raises its own error (after writing what it updated first) for the rest. Ours, against Keras's
class in the same process: the same error type, raised before anything is written, in eager,
tf.function and XLA steps; Keras's numbers, bit for bit, for what Keras accepts; a ValueError
where a hyperparameter of several values meets an update Keras has no rule for (8-bit states,
lazy rows), with nothing written.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

keras = pytest.importorskip("keras")
if not keras.__version__.startswith("3."):
  pytest.skip(f"tf_adam_op.keras needs Keras 3, found {keras.__version__}", allow_module_level=True)

import numpy as np
import tensorflow as tf

import tf_adam_op.keras as tk

MODES = ("eager", "tf.function", "xla")
COLUMNS = 80  # the last dimension of every variable but the scalar: a per-element value's length


def _compiled(fn, mode):
  return fn if mode == "eager" else tf.function(fn, jit_compile=(mode == "xla"))


def _variables(kinds):
  """Keras variables of ("dtype", shape) each, distinct values."""
  return [keras.Variable(np.linspace(0.5, 1.5, int(np.prod(shape))).reshape(shape) + i,
                         dtype=dtype, name=f"w{i}") for i, (dtype, shape) in enumerate(kinds)]


def _gradient(var):
  n = int(np.prod(var.shape))
  return tf.cast(tf.reshape(tf.range(n, dtype=tf.float32) % 7 - 3, var.shape), var.dtype)


def _run(cls, kwargs, kinds, mode, steps=2):
  """(error or None, the state before, the state after): every variable, slot and iterations."""
  variables = _variables(kinds)
  opt = cls(learning_rate=0.01, **kwargs)
  opt.build(variables)
  state = lambda: [np.array(v.numpy()) for v in variables + list(opt.variables)]
  before = state()
  step = _compiled(lambda: opt.apply([_gradient(v) for v in variables], variables), mode)
  try:
    for _ in range(steps):
      step()
  except Exception as error:  # (its type is what is compared)
    return error, before, state()
  return None, before, state()


def _assert_unchanged(after, before):
  for i, (a, b) in enumerate(zip(after, before)):
    assert a.tobytes() == b.tobytes(), f"value {i} was written"


MIXED = [("float32", (64, COLUMNS)), ("float16", (COLUMNS,)), ("float64", (3, COLUMNS))]
WITH_A_SCALAR = [("float32", (COLUMNS,)), ("float32", ())]
REFUSED = {  # what Keras's step raises for, and on which variables
    "beta_1=None": ({"beta_1": None}, MIXED),
    "beta_2=None": ({"beta_2": None}, MIXED),
    "beta_1 a string": ({"beta_1": "0.9"}, MIXED),
    "beta_1 a list (1 - [0.9])": ({"beta_1": [0.9]}, MIXED),
    "beta_2 a tuple": ({"beta_2": (0.999,)}, MIXED),
    "epsilon=None": ({"epsilon": None}, MIXED),
    "epsilon a string": ({"epsilon": "1e-7"}, MIXED),
    "weight_decay a string": ({"weight_decay": "0.1"}, MIXED),
    "epsilon of 3 values": ({"epsilon": np.full(3, 1e-7, np.float32)}, MIXED),
    "epsilon per column, a scalar variable": (
        {"epsilon": np.full(COLUMNS, 1e-7, np.float32)}, WITH_A_SCALAR),
    "weight_decay [0.1], a scalar variable": ({"weight_decay": [0.1]}, WITH_A_SCALAR),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("state_bits", [32, 8])
def test_what_keras_refuses_is_keras_error_before_anything_is_written(case, mode, state_bits):
  """Keras's error type (its cast's ValueError, TF's UnimplementedError for a string cast eagerly,
  Python's TypeError for `1 - [0.9]`, a shape error where its broadcast is not the variable's
  shape), with every variable, slot and `iterations` as before (Keras's own step has written the
  variables it updated first; an outside check found ours did too, or refused with another
  type). With 8-bit states (the float32 variable's) Keras's class is the reference for the type."""
  kwargs, kinds = REFUSED[case]
  keras_error, _, _ = _run(keras.optimizers.AdamW, kwargs, kinds, mode)
  assert keras_error is not None, "Keras accepted it"
  error, before, after = _run(tk.AdamW, dict(kwargs, state_bits=state_bits), kinds, mode)
  assert type(error) is type(keras_error), (error, keras_error)
  _assert_unchanged(after, before)


ONE_VALUE = {  # Keras broadcasts one value over the variable
    "epsilon [1e-6]": {"epsilon": [1e-6]},
    "epsilon a (1,) array": {"epsilon": np.array([1e-6], np.float32)},
    "beta_1 a (1, 1) array": {"beta_1": np.array([[0.8]], np.float32)},
    "beta_2 a (1,) tensor": {"beta_2": tf.constant([0.99])},
    "weight_decay (0.1,)": {"weight_decay": (0.1,)},
    "weight_decay a (1,) tensor": {"weight_decay": tf.constant([0.1])},
}


def _the_element(value):
  """The one value of a container, as a number of its own kind (a Python float, a NumPy scalar of
  the array's dtype, a scalar tensor): `1 - beta` rounds differently for each."""
  if isinstance(value, (list, tuple)):
    return value[0]
  if tf.is_tensor(value):
    return tf.reshape(value, [])
  return value.reshape(())[()]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(ONE_VALUE))
def test_one_value_in_a_container_is_that_value(case, mode):
  """float32/float64 variables: Keras's numbers, bit for bit (under XLA, those of Keras's step
  without XLA, as for any hyperparameter: docs/keras.md). 16-bit variables and 8-bit states, which
  ours computes in float32: the bits of the same optimizer given the plain number."""
  kwargs = ONE_VALUE[case]
  kinds = [("float32", (64, COLUMNS)), ("float64", (3, COLUMNS))]
  keras_error, _, expected = _run(keras.optimizers.AdamW, kwargs, kinds,
                                  "eager" if mode == "xla" else mode)
  error, _, ours = _run(tk.AdamW, kwargs, kinds, mode)
  assert keras_error is None and error is None, (keras_error, error)
  for i, (a, e) in enumerate(zip(ours, expected)):
    assert a.tobytes() == e.tobytes(), f"value {i} differs from Keras's"
  (name, _), = kwargs.items()
  plain = {name: _the_element(kwargs[name])}
  for kinds, state_bits in ([("bfloat16", (64, COLUMNS))], 32), ([("float32", (64, COLUMNS))], 8):
    error, _, ours = _run(tk.AdamW, dict(kwargs, state_bits=state_bits), kinds, mode)
    _, _, expected = _run(tk.AdamW, dict(plain, state_bits=state_bits), kinds, mode)
    assert error is None, error
    for i, (a, e) in enumerate(zip(ours, expected)):
      assert a.tobytes() == e.tobytes(), f"{kinds}, state_bits={state_bits}: value {i}"


PER_ELEMENT = {
    "epsilon per column": {"epsilon": np.full(COLUMNS, 1e-6, np.float32)},
    "beta_1 per column": {"beta_1": np.linspace(0.8, 0.9, COLUMNS).astype(np.float32)},
    "weight_decay per column": {"weight_decay": np.full(COLUMNS, 0.1, np.float32)},
}


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
@pytest.mark.parametrize("case", sorted(PER_ELEMENT))
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_a_value_per_element_is_keras_own_update(case, dtype, mode):
  """Keras broadcasts it element by element; the fused ops take one value, so Keras's own
  update_step (and decay pass) updates those variables, 16-bit ones too: Keras's numbers."""
  kinds = [(dtype, (64, COLUMNS)), (dtype, (COLUMNS,))]
  keras_error, _, expected = _run(keras.optimizers.AdamW, PER_ELEMENT[case], kinds, mode)
  error, _, ours = _run(tk.AdamW, PER_ELEMENT[case], kinds, mode)
  assert keras_error is None and error is None, (keras_error, error)
  for i, (a, e) in enumerate(zip(ours, expected)):
    assert a.tobytes() == e.tobytes(), f"value {i} differs from Keras's"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("update", ["8-bit states", "lazy rows"])
def test_a_value_per_element_where_keras_has_no_rule_is_value_error(update, mode):
  """8-bit states and lazy rows are ours alone (Keras has no rule for them) and take one value of
  each hyperparameter: a ValueError naming the variable and the hyperparameter, nothing written."""
  variables = _variables([("float32", (64, COLUMNS))])
  if update == "8-bit states":
    opt = tk.AdamW(epsilon=np.full(COLUMNS, 1e-6, np.float32), state_bits=8)
    grad = lambda: _gradient(variables[0])
  else:
    opt = tk.AdamW(epsilon=np.full(COLUMNS, 1e-6, np.float32), lazy=True)
    grad = lambda: tf.IndexedSlices(tf.ones((2, COLUMNS)), tf.constant([1, 5]),
                                    tf.constant([64, COLUMNS]))
  opt.build(variables)
  before = [np.array(v.numpy()) for v in variables + list(opt.variables)]
  step = _compiled(lambda: opt.apply([grad()], variables), mode)
  with pytest.raises(ValueError, match=f"w0.*{update}.*epsilon has more"):
    step()
  _assert_unchanged([np.array(v.numpy()) for v in variables + list(opt.variables)], before)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("beta_1", [np.float64(0.9), np.array([0.9])], ids=["np.float64", "(1,)"])
def test_lazy_rows_stay_lazy_whatever_the_betas_type(beta_1, mode):
  """A NumPy float64 beta on a float32 variable makes Keras compute in float64, so Keras's own
  update_step updates such a variable; with lazy=True that update made every row move (m of rows
  earlier steps named), silently not lazy (found in review). Lazy rows are now always ours: only
  the rows named move, with the bits of the same step given beta_1 as a Python float."""
  def run(beta):
    table = keras.Variable(np.ones((10, 4), np.float32))
    opt = tk.Adam(learning_rate=0.1, beta_1=beta, lazy=True)
    opt.build([table])
    step = _compiled(lambda rows: opt.apply(
        [tf.IndexedSlices(tf.ones((len(rows), 4)), tf.constant(rows), tf.constant([10, 4]))],
        [table]), mode)
    step([1, 3])
    before = table.numpy().copy()
    step([5])
    return before, table.numpy()
  before, after = run(beta_1)
  assert np.flatnonzero((after != before).any(axis=1)).tolist() == [5]
  assert after.tobytes() == run(0.9)[1].tobytes()
