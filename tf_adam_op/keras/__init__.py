"""Keras 3 optimizers on tf_adam_op's fused ops: drop-ins for keras.optimizers.Adam and AdamW.

    import tf_adam_op.keras
    model.compile(optimizer=tf_adam_op.keras.Adam(1e-3), loss=...)

Same constructor, variable names, configs and numbers as Keras's own (see docs/keras.md), with one
multi-tensor op per (device, dtype) group per step, the fused sparse op for IndexedSlices, and
`lazy=True` (LazyAdam) as an option. Needs Keras 3 with the TensorFlow backend.
"""

import keras as _keras

if not _keras.__version__.startswith("3."):
  raise ImportError(
      f"tf_adam_op.keras needs Keras 3 (TensorFlow 2.16 and later), found Keras "
      f"{_keras.__version__}; with Keras 2 (tf_keras) use tf_adam_op.AdamOptimizer")
if _keras.backend.backend() != "tensorflow":
  raise ImportError(f"tf_adam_op.keras needs Keras's TensorFlow backend, not "
                    f"{_keras.backend.backend()!r} (set KERAS_BACKEND=tensorflow)")

from tf_adam_op.keras.adam import Adam  # noqa: E402
from tf_adam_op.keras.adam import AdamW  # noqa: E402

__all__ = ["Adam", "AdamW"]
