"""What the XLA kernel tests share: the custom calls' names in HLO, the step count, twin variables,
which custom calls of a compiled step depend on which (structural ordering checks)."""

import re

import tensorflow as tf


DENSE_TARGET = 'custom_call_target="tf_adam_op_dense_adam"'
SPARSE_TARGET = 'custom_call_target="tf_adam_op_sparse_adam"'
STEPS = 3


def _hlo(fn, *args):
  return fn.experimental_get_compiler_ir(*args)(stage="hlo")


def _twins(values):
  """Two sets of variables with the same values: one for the XLA step, one for the op's."""
  return ([tf.Variable(x) for x in values], [tf.Variable(x) for x in values])


def entry_calls(hlo):
  """The entry computation's instructions: name -> operand names, and name -> custom call target
  (tf_adam_op's)."""
  entry = hlo[hlo.index("\nENTRY"):]
  entry = entry[:entry.index("\n}")]
  operands, targets = {}, {}
  for line in entry.splitlines()[1:]:
    match = re.match(r"\s*(?:ROOT )?%(\S+) = (.*)", line)
    if match is None:
      continue
    name, rest = match.groups()
    operands[name] = re.findall(r"%([\w.\-]+)", rest)
    target = re.search(r'custom_call_target="(tf_adam_op_\w+)"', rest)
    if target:
      targets[name] = target.group(1)
  return operands, targets


def ancestors(operands, name):
  """Every instruction `name` depends on through its operands (`operands` as entry_calls gives)."""
  seen, pending = set(), [name]
  while pending:
    for operand in operands.get(pending.pop(), ()):
      if operand not in seen:
        seen.add(operand)
        pending.append(operand)
  return seen


def calls_not_after(hlo, target, first_target):
  """The `target` custom calls of an XLA step's HLO that do not depend, through their operands, on
  a `first_target` call; and the number of those."""
  operands, targets = entry_calls(hlo)
  firsts = {n for n, t in targets.items() if t == first_target}
  return ([n for n, t in targets.items()
           if t == target and not firsts & ancestors(operands, n)], len(firsts))


def outputs_not_after(hlo, first_target):
  """The values an XLA step's entry computation returns (what it writes: each variable's new value)
  that do not depend, through their operands, on a `first_target` call; and the number of values."""
  operands, targets = entry_calls(hlo)
  entry = hlo[hlo.index("\nENTRY"):]
  root = re.search(r"^\s*ROOT %(\S+) = ", entry, re.M).group(1)
  firsts = {n for n, t in targets.items() if t == first_target}
  return [n for n in operands[root] if not firsts & ancestors(operands, n)], len(operands[root])


def graph_ancestors(op):
  """Every op `op` depends on through its inputs (data, not control), in its TF graph."""
  seen, pending = set(), [op]
  while pending:
    for tensor in pending.pop().inputs:
      if tensor.op not in seen:
        seen.add(tensor.op)
        pending.append(tensor.op)
  return seen
