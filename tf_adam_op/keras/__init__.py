"""Keras 3 optimizers on tf_adam_op's fused ops: drop-ins for keras.optimizers.Adam and AdamW.

    import tf_adam_op.keras
    model.compile(optimizer=tf_adam_op.keras.Adam(1e-3), loss=...)

Same constructor, variable names, configs and numbers as Keras's own (see docs/keras.md), with one
multi-tensor op per (device, dtype) group per step, the fused sparse op for IndexedSlices, and
`lazy=True` (LazyAdam) as an option. Needs Keras 3 with the TensorFlow backend.
"""

from tf_adam_op.keras.adam import Adam
from tf_adam_op.keras.adam import AdamW

__all__ = ["Adam", "AdamW"]
