"""tf_adam_op: a fused, exact drop-in for tf.compat.v1.train.AdamOptimizer.

    import tf_adam_op
    opt = tf_adam_op.AdamOptimizer(learning_rate=1e-3)   # instead of tf.compat.v1.train.AdamOptimizer

The op library is loaded on first use (tf_adam_op.ops) and checked against the installed TensorFlow;
`tf_adam_op.load()` loads it eagerly, e.g. before tf.saved_model.load.
"""

from tf_adam_op import ops
from tf_adam_op._loader import op_library as load
from tf_adam_op.optimizer import AdamOptimizer

__all__ = ["AdamOptimizer", "ops", "load", "__version__"]
__version__ = "0.1.0"
