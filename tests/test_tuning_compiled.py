"""The XLA-compiled update loop of rl_tuner_tf.tuning against today's loop.

``LoopTuner`` keeps the loop as it was before compilation: op by op, each
update reading its minibatch straight from the iteration's draw (the same
draw from the replay generator), with no stash; the compiled Tuner copies
the iteration's minibatches into its stash first and runs the updates as one
XLA program.
"""
import numpy as np
import pytest
import tensorflow as tf

from rl_tuner_tf import note_rnn
from rl_tuner_tf import tuning


class LoopTuner(tuning.Tuner):
  """The pre-compilation update loop, kept here as the reference."""

  def _train_updates(self):
    cfg = self.config.off_policy

    items = self.replay_buffer.sample_steps(
        self.replay_generator,
        [cfg.updates_per_iteration(), cfg.update_batch_size()], num_steps=2)

    def body(i):
      experience = tf.nest.map_structure(lambda t: t[i], items)
      loss_info = self.agent.train(experience)
      loss = loss_info.loss
      finite = tf.math.is_finite(loss)
      with tf.control_dependencies([
          self._stats.loss_sum.assign_add(tf.where(finite, loss, 0.0)),
          self._stats.value_sum.assign_add(
              tf.where(finite, loss_info.extra["mean_value"], 0.0)),
          self._stats.loss_count.assign_add(1.0),
          tf.cond(finite, lambda: tf.constant(True),
                  lambda: self._record_bad_loss(loss))]):
        return i + 1

    done = tf.while_loop(lambda i: i < cfg.updates_per_iteration(), body,
                         [tf.constant(0)], parallel_iterations=1)
    with tf.control_dependencies([done]):
      return tf.constant(True)


@pytest.fixture(scope="module")
def source():
  # One model for all runs: Keras' unseeded initializers differ per call.
  return note_rnn.NoteRNN()


def _run(source, tuner_class, algorithm, **kwargs):
  config = tuning.TuningConfig.of(
      algorithm=algorithm, num_notes=200, num_compositions=40,
      minibatches_per_update=1, exploration_period=200, replay_capacity=1000,
      seed=3)
  tuner = tuner_class(config, source, **kwargs)
  assert tuner.run(5) == 5
  stats = tuner.read_and_reset_stats()
  return ([v.numpy() for v in tuner.q_network.variables]
          + [v.numpy() for v in tuner.target_q_network.variables],
          stats, tuner.num_updates)


@pytest.mark.parametrize("algorithm", ["q", "g"])
def test_uncompiled_updates_equal_the_sample_update_loop(source, algorithm):
  reference, ref_stats, ref_updates = _run(source, LoopTuner, algorithm,
                                           jit_compile=False)
  staged, stats, updates = _run(source, tuning.Tuner, algorithm,
                                jit_compile=False)
  assert updates == ref_updates == 8 * 4
  assert stats["loss"] == ref_stats["loss"]
  for a, b in zip(reference, staged):
    np.testing.assert_array_equal(a, b)


def test_compiled_updates_match_up_to_rounding(source):
  reference, ref_stats, _ = _run(source, tuning.Tuner, "q", jit_compile=False)
  compiled, stats, updates = _run(source, tuning.Tuner, "q", jit_compile=True)
  assert updates == 8 * 4
  worst = max(float(np.max(np.abs(a - b)))
              for a, b in zip(reference, compiled))
  assert worst < 1e-4, worst
  assert stats["loss"] == pytest.approx(ref_stats["loss"], rel=1e-4)


def _graph_nodes(concrete_function):
  graph_def = concrete_function.graph.as_graph_def()
  nodes = list(graph_def.node)
  for function in graph_def.library.function:
    nodes.extend(function.node_def)
  return nodes


def test_run_is_one_graph_without_host_callbacks_and_places_strictly(source):
  """run(n) is one tf.function call (one trace, one XLA update program) whose
  graph has no Python callback or print ops (no per-step host round trip),
  and every op can be placed where it asks with soft placement off (an op
  pinned to a device that cannot run it would fail here). The replay
  buffer's ops ask for 'cpu:*' (TF-Agents' default), see tuning.py."""
  config = tuning.TuningConfig.of(
      algorithm="q", num_notes=200, num_compositions=40,
      exploration_period=200, replay_capacity=1000, seed=3)
  soft = tf.config.get_soft_device_placement()
  tf.config.set_soft_device_placement(False)
  try:
    tuner = tuning.Tuner(config, source)
    assert tuner.run(2) == 2 and tuner.run(3) == 3
  finally:
    tf.config.set_soft_device_placement(soft)
  assert tuner.num_updates > 0
  assert tuner._run_fn.experimental_get_tracing_count() == 1  # pylint: disable=protected-access
  assert tuner._update_loop_fn.experimental_get_tracing_count() == 1  # pylint: disable=protected-access
  nodes = _graph_nodes(tuner._run_fn.get_concrete_function(tf.constant(2)))  # pylint: disable=protected-access
  host_callbacks = {"PyFunc", "EagerPyFunc", "PyFuncStateless", "PrintV2",
                    "Print"}
  assert not [n.name for n in nodes if n.op in host_callbacks]
  pinned = {n.device for n in nodes if n.device}
  assert pinned <= {"/device:CPU:*",
                    "/job:localhost/replica:0/task:0/device:CPU:0"}, pinned
  outside = [n.name for n in nodes if n.device and n.op != "NoOp" and not (
      "ReplayBuffer" in n.name or "critical_section" in n.name)]
  assert not outside, f"ops outside the replay buffer pinned: {outside}"
