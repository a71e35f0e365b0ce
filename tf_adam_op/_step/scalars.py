"""StepScalars: the scalar inputs of one step's updates of one compute dtype, as a value.

Each optimizer family computes them as its host computes them (v1: stock's beta power accumulators
and hyperparameter tensors; Keras: `beta ** (iterations + 1)`, its `1 - beta` rounding, its weight
decay times the learning rate) and passes them down; the op layer (apply.py) and the XLA composite
(composite.py) read nothing else of the optimizer.
"""

import dataclasses
from typing import Any, Optional


@dataclasses.dataclass(frozen=True)
class StepScalars:
  """beta1_power, beta2_power, lr, beta1, beta2, epsilon in the update's compute dtype (float32 for
  16-bit and float32 variables, float64 for float64 ones), and the variant inputs:

  one_minus_beta: (1 - beta1, 1 - beta2) as the host rounds them (Keras: a Python double rounded
    once), or None for the ops' own 1 - beta (stock's rule);
  weight_decay: the decoupled decay, for the updates that decay; with weight_decay_times_lr
    var -= (var * weight_decay) * lr (Keras 3), else var -= weight_decay * var (TF1 contrib).
  The beta powers are None where the op reads them from the accumulators itself (v1's advancing
  multi-tensor op).
  """
  beta1_power: Any
  beta2_power: Any
  lr: Any
  beta1: Any
  beta2: Any
  epsilon: Any
  one_minus_beta: Optional[tuple] = None
  weight_decay: Any = None
  weight_decay_times_lr: bool = False

  def inputs(self):
    """The six scalar inputs in the ops' order (stock ApplyAdam's)."""
    return (self.beta1_power, self.beta2_power, self.lr, self.beta1, self.beta2, self.epsilon)

  def hyperparameters(self):
    """lr, beta1, beta2, epsilon: the inputs of an op that reads the beta powers itself."""
    return (self.lr, self.beta1, self.beta2, self.epsilon)

  def options(self, decays):
    """The ops' keyword inputs for an update that includes the weight decay or not."""
    options = {}
    if self.one_minus_beta is not None:
      options["one_minus_beta"] = self.one_minus_beta
    if decays and self.weight_decay is not None:
      options["weight_decay"] = self.weight_decay
      options["weight_decay_times_lr"] = self.weight_decay_times_lr
    return options
