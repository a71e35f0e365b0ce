"""SavedModel: a tf.Module holding the optimizer and a train-step tf.function saves, loads in a fresh
process after `import tf_adam_op`, and trains on exactly as an uninterrupted run. Stock v1 Adam
cannot be loaded (its revived optimizer has no add_slot); loading ours without the package fails
with a message that says to import it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "saved_model_roundtrip.py")


def _run(tmp_path, *args):
  return subprocess.run([sys.executable, SCRIPT, *args], cwd=tmp_path, capture_output=True,
                        text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _weights(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return [np.array(w, np.float32) for w in json.loads(result.stdout.strip().splitlines()[-1])]


# Saved models several tests load, each saved once (a fresh process costs seconds): the model after
# 1 and 3 steps, and uninterrupted runs of 7 steps (saved too, so that every run traces the same
# functions) whose weights a resumed run must equal.
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  folder = tmp_path_factory.mktemp("saved")
  made = {}

  def get(which, steps):
    key = (which, steps)
    if key not in made:
      path = folder / f"{which}{steps}"
      made[key] = (path, _weights(_run(folder, "save", str(path), which, str(steps))))
    return made[key]
  return get


def test_saved_model_loads_in_a_fresh_process_and_trains_on_exactly(tmp_path, saved):
  resumed = _weights(_run(tmp_path, "load", str(saved("ours", 3)[0]), "4", "import"))
  for a, b in zip(resumed, saved("ours", 7)[1]):
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("which", ["ours", "adamw"], ids=["adam", "adamw_amsgrad"])
def test_save_load_train_save_load_train_trains_on_exactly(tmp_path, saved, which):
  """A loaded model saves again (its packed handle vectors revive as ours, vhat's too), and the
  twice-loaded model trains on exactly as an uninterrupted run."""
  first = saved(which, 3)[0]
  _weights(_run(tmp_path, "load", str(first), "2", "import", str(tmp_path / "second")))
  resumed = _weights(_run(tmp_path, "load", str(tmp_path / "second"), "2", "import"))
  for a, b in zip(resumed, saved(which, 7)[1]):
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("which", ["keras", "keras8"], ids=["float32_states", "8bit_states"])
def test_keras_optimizer_in_a_module_saves_loads_saves_and_trains_on_exactly(tmp_path, saved,
                                                                             which):
  """tf_adam_op.keras.Adam in a tf.Module's train step, as stock Keras Adam: the packed handle
  vectors its traced step captures are saved with it (float32 states), and the 8-bit states'
  variables too; loaded in a fresh process, trained, saved again and loaded again, it trains on
  exactly as an uninterrupted run."""
  pytest.importorskip("keras", minversion="3")
  first = saved(which, 3)[0]
  _weights(_run(tmp_path, "load", str(first), "2", "import", str(tmp_path / "second")))
  resumed = _weights(_run(tmp_path, "load", str(tmp_path / "second"), "2", "import"))
  for a, b in zip(resumed, saved(which, 7)[1]):
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_a_loaded_step_is_ordered_with_other_ops_on_its_variables(tmp_path, saved):
  _weights(_run(tmp_path, "ordered", str(saved("ours", 1)[0]), "0", "import"))


def test_stock_v1_adam_cannot_be_loaded_but_ours_can(tmp_path):
  _weights(_run(tmp_path, "save", str(tmp_path / "stock"), "stock", "2"))
  result = _run(tmp_path, "load", str(tmp_path / "stock"), "1", "no-import")
  assert result.returncode != 0 and "add_slot" in result.stderr


def test_loading_without_importing_the_package_says_to_import_it(tmp_path, saved):
  """TF fails on the first unregistered op it meets, and the import marker comes first."""
  result = _run(tmp_path, "load", str(saved("ours", 1)[0]), "1", "no-import")
  assert result.returncode != 0
  assert "Op type not registered 'Import_tf_adam_op_before_loading_this_graph'" in result.stderr


def test_the_import_marker_precedes_this_packages_ops_in_every_saved_function(saved):
  """What makes the message above hold for any saved function, not just this model's."""
  from tensorflow.core.protobuf import saved_model_pb2
  from tf_adam_op import ops
  saved_model = saved_model_pb2.SavedModel()
  with open(saved("ours", 1)[0] / "saved_model.pb", "rb") as f:
    saved_model.ParseFromString(f.read())
  ours = set(ops.OP_NAMES) | {"Import_tf_adam_op_before_loading_this_graph"}
  functions_using_ours = 0
  for function in saved_model.meta_graphs[0].graph_def.library.function:
    our_nodes = [node.op for node in function.node_def if node.op in ours]
    if our_nodes:
      functions_using_ours += 1
      assert our_nodes[0] == "Import_tf_adam_op_before_loading_this_graph", our_nodes
      assert our_nodes.count(our_nodes[0]) == 1
  assert functions_using_ours > 0


TF1_IMPORT = """
import sys
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
meta_graph = meta_graph_pb2.MetaGraphDef()
with open(sys.argv[1], "rb") as f:
  meta_graph.ParseFromString(f.read())
with tf.Graph().as_default():
  tf.compat.v1.train.import_meta_graph(meta_graph)
"""


def test_a_tf1_meta_graph_imported_without_the_package_says_to_import_it(tmp_path):
  import tensorflow as tf
  import tf_adam_op
  with tf.Graph().as_default():
    var = tf.compat.v1.Variable(np.ones(3, np.float32), use_resource=False)
    tf_adam_op.AdamOptimizer(0.1).minimize(tf.reduce_sum(var * var))
    meta_graph = tf.compat.v1.train.export_meta_graph()
  (tmp_path / "graph.pb").write_bytes(meta_graph.SerializeToString())
  result = subprocess.run([sys.executable, "-c", TF1_IMPORT, str(tmp_path / "graph.pb")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode != 0
  assert "Op type not registered 'Import_tf_adam_op_before_loading_this_graph'" in result.stderr


def test_a_model_with_more_variable_lists_than_the_optimizer_caches_still_saves(tmp_path):
  """Every packed handle vector a traced function captures stays tracked, however many lists the
  optimizer has seen since (its cache of eager-only ones is bounded)."""
  import tensorflow as tf
  import tf_adam_op
  from tf_adam_op._step import packed
  module = tf.Module()
  module.optimizer = tf_adam_op.AdamOptimizer(0.1)
  module.weights = [tf.Variable(np.full(3, float(i), np.float32)) for i in range(2, 40)]
  lists = [module.weights[i:i + 2] for i in range(packed.LISTS_KEPT + 4)]

  @tf.function(input_signature=[])
  def train_first_list():
    module.optimizer.apply_gradients([(tf.ones(3), v) for v in lists[0]])

  module.train_first_list = train_first_list
  train_first_list()  # traced over lists[0] first: its packed vectors are captured
  for variables in lists[1:]:  # then many more lists, eagerly
    module.optimizer.apply_gradients([(tf.ones(3), v) for v in variables])
  tf.saved_model.save(module, str(tmp_path / "many_lists"))
  loaded = tf.saved_model.load(str(tmp_path / "many_lists"))
  before = [v.numpy() for v in loaded.weights[:2]]
  loaded.train_first_list()
  assert all((v.numpy() != b).all() for v, b in zip(loaded.weights[:2], before))
