"""What the property-based differential tests share (test_differential_keras.py, _v1.py): drawing
hyperparameter values of every type a user passes, variables of every dtype and shape, gradients
of every kind the host framework takes, and comparing every variable bit for bit.

The documented differences (docs/keras.md, docs/usage.md) are stated once, in `Tolerance`: where a
case has one, the test says which and compares as that difference allows; everywhere else, bit for
bit. `hypothesis` draws the cases, seeded (derandomize) and bounded: TF_ADAM_OP_DIFFERENTIAL_EXAMPLES
scales the number of examples (default 1: the CI budget; e.g. 10 for a longer search).
"""

import dataclasses
import os

from hypothesis import event as _event
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
import numpy as np
import tensorflow as tf

SCALE = float(os.environ.get("TF_ADAM_OP_DIFFERENTIAL_EXAMPLES", "1"))


def bounded(examples):
  """Seeded, bounded hypothesis settings: `examples` (times SCALE) cases, no deadline (tracing and
  XLA compiles are slow), no example database (a run depends on the code alone)."""
  return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True,
                  database=None, print_blob=True,
                  phases=(Phase.explicit, Phase.generate, Phase.shrink),
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- hyperparameter values, as users pass them ------------------------------------------------

NUMBER_TYPES = ("python", "numpy32", "numpy64")
# One value in a container: Keras's arithmetic broadcasts it over the variable (a list is refused
# where Keras computes `1 - beta`; on a scalar variable the broadcast shape (1,) is refused).
ONE_ELEMENT_TYPES = ("list1", "array1", "tensor1")


def as_type(value, kind):
  if kind == "tensor32":
    return tf.constant(value, tf.float32)
  if kind in ONE_ELEMENT_TYPES:
    return {"list1": lambda: [float(value)], "array1": lambda: np.array([value], np.float32),
            "tensor1": lambda: tf.constant([value], tf.float32)}[kind]()
  return {"python": float, "numpy32": np.float32, "numpy64": np.float64}[kind](value)


def number(values, types=NUMBER_TYPES):
  """A hyperparameter from `values`, as a Python float, np.float32 or np.float64 (or, where `types`
  says so, a float32 tensor)."""
  return st.builds(as_type, st.sampled_from(values), st.sampled_from(types))


# --- variables and gradients ------------------------------------------------------------------

SHAPES = ((), (5,), (3, 4), (0,), (0, 3), (6, 2))
GRADIENT_KINDS = ("dense", "dense", "dense", "slices", "slices", "broadcast", "bad_shape",
                  "bad_index")


@dataclasses.dataclass(frozen=True)
class VariableSpec:
  dtype: str
  shape: tuple
  scope: str  # a name scope: "layer_norm" (what exclusion patterns name) or "dense"


@dataclasses.dataclass(frozen=True)
class GradientSpec:
  kind: str
  indices: tuple = ()  # for slices and bad_index


def variable_specs(dtypes):
  return st.builds(VariableSpec, st.sampled_from(dtypes), st.sampled_from(SHAPES),
                   st.sampled_from(("layer_norm", "dense")))


@st.composite
def gradient_spec(draw, var, kinds=GRADIENT_KINDS):
  """A gradient kind that `var` can take (slices need rows; an out-of-range index needs rank)."""
  kind = draw(st.sampled_from(kinds))
  rows = var.shape[0] if var.shape else None
  if kind in ("slices", "bad_index") and rows is None:
    kind = "dense"
  if kind == "slices":
    count = draw(st.integers(0, 4)) if rows else 0
    return GradientSpec(kind, tuple(draw(st.integers(0, rows - 1)) for _ in range(count)))
  if kind == "bad_index":
    good = [draw(st.integers(0, rows - 1)) for _ in range(draw(st.integers(0, 2)))] if rows else []
    return GradientSpec(kind, tuple(good + [draw(st.sampled_from((rows, rows + 3, -1)))]))
  return GradientSpec(kind)


def broadcast_shape(shape):
  """A shape that broadcasts to `shape` without being it (or `shape` itself for a scalar)."""
  if not shape:
    return ()
  return (1,) + tuple(shape[1:])


def make_gradient(spec, var_spec, rng, tf_dtype):
  """The gradient tensor (or IndexedSlices) `spec` describes, random values of `tf_dtype`."""
  values = lambda shape: tf.constant(rng.standard_normal(shape), tf_dtype)
  if spec.kind == "dense":
    return values(var_spec.shape)
  if spec.kind == "broadcast":
    return values(broadcast_shape(var_spec.shape))
  if spec.kind == "bad_shape":
    return values(tuple(var_spec.shape) + (2,))
  rows = (len(spec.indices),) + tuple(var_spec.shape[1:])
  return tf.IndexedSlices(values(rows), tf.constant(spec.indices, tf.int32),
                          tf.constant(var_spec.shape, tf.int32))


def run_steps(step, state, before, grads_of_step, steps):
  """Runs `steps` steps, each on grads_of_step(): (the state after them or at the failure, the
  state before the failing step (or before the steps), the error or None). A step that fails must
  write nothing; an earlier one may have written (e.g. gradient accumulation's first step, which
  uses no hyperparameter: Keras raises for a bad one in the step that uses it)."""
  first = before
  for _ in range(steps):
    grads = grads_of_step()
    try:
      step(grads)
    except Exception as error:
      return state(), before, error
    before = state()
  return state(), first, None


def event(text):
  """hypothesis's statistics line (ignored when a check runs outside a search)."""
  try:
    _event(text)
  except InvalidArgument:
    pass


def compiled(fn, mode):
  if mode == "eager":
    return fn
  return tf.function(fn, jit_compile=(mode == "xla"))


def bits(x):
  return np.atleast_1d(np.asarray(x)).tobytes()


def assert_state(actual, expected, rtol=None, label=""):
  """Every value equal bit for bit, or within rtol where a documented difference allows it."""
  assert len(actual) == len(expected), label
  for i, (a, e) in enumerate(zip(actual, expected)):
    if rtol is None:
      assert bits(a) == bits(e), f"{label} value {i}:\n ours {a}\n ref  {e}"
    else:
      np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(e, np.float64),
                                 rtol=rtol, atol=rtol, err_msg=f"{label} value {i}")
