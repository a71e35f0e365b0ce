"""The tf.compat.v1.train optimizers: AdamOptimizer (stock's drop-in) and AdamWOptimizer (TF1
contrib's). The class holds the state and picks each update's path (optimizer.py, paths.py); the
step is made by the shared step layer (tf_adam_op/_step) from values this package computes as
stock does (hyperparameters.py, step.py)."""

from tf_adam_op.v1.adamw import AdamWOptimizer
from tf_adam_op.v1.optimizer import AdamOptimizer

__all__ = ["AdamOptimizer", "AdamWOptimizer"]
