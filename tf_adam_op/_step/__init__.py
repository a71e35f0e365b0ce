"""The step layer both optimizer families share (docs/design.md, "The Python layers").

grouping.py and plan.py decide which updates share a multi-tensor op and keep that per variable
list; packed.py packs handles; scalars.py is the per-step value of scalar inputs the families
compute as their hosts do; apply.py makes the ops from those values; composite.py is the rule in
TF ops for XLA steps without the ops' XLA kernels; xla.py says which XLA path and orders by data;
checks.py checks gradients before anything is written. Nothing here reads an optimizer.
"""
