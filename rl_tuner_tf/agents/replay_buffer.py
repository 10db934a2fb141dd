"""The tuner's replay buffer: TF-Agents' uniform buffer, sampled from a
checkpointed random generator.

``TFUniformReplayBuffer.get_next`` draws its rows with stateful random ops,
whose position lives in the op kernels: it cannot be saved, so a run resumed
from a checkpoint samples other minibatches than the uninterrupted run would,
and each of an iteration's U minibatches costs one op-by-op ``get_next``
(about 30 ops). ``SeededUniformReplayBuffer`` keeps TF-Agents' storage and
its sampling distribution -- a 2-step item uniform over the valid ids of
every composition's row, the composition uniform too, both with replacement
-- and draws the ids of all U minibatches at once from a
``tf.random.Generator`` that the tuner's checkpoint holds. A resumed run then
trains on exactly the minibatches of an uninterrupted one.

tf-agents is pinned to 0.19 (its last release); this subclass reads the
buffer's row table and last id, as ``get_next`` itself does.
"""
from typing import Sequence

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf
from tf_agents.replay_buffers import tf_uniform_replay_buffer
from tf_agents.typing import types


class SeededUniformReplayBuffer(tf_uniform_replay_buffer.TFUniformReplayBuffer):
  """TFUniformReplayBuffer plus ``sample_steps`` from a given generator."""

  def sample_steps(self, generator: tf.random.Generator,
                   outer_shape: Sequence[int],
                   num_steps: int = 2) -> types.NestedTensor:
    """Items of ``num_steps`` consecutive steps, shaped outer_shape + [num_steps].

    generator: a tf.random.Generator (its state advances). The rows are drawn
    as get_next(sample_batch_size, num_steps) draws them: an id uniform in the
    valid range [min_id, max_id) (so all num_steps steps are stored), a
    composition uniform in [0, batch_size).
    """
    with tf.name_scope("sample_steps"):
      num_steps_t = tf.constant(num_steps, tf.int64)
      min_id, max_id = tf_uniform_replay_buffer._valid_range_ids(  # pylint: disable=protected-access
          self._get_last_id(), self._max_length, num_steps_t)
      check = tf.debugging.assert_greater(
          max_id, min_id,
          message=f"the replay buffer holds no {num_steps}-step item yet")
      with tf.control_dependencies([check]):
        ids = generator.uniform(outer_shape, minval=min_id, maxval=max_id,
                                dtype=tf.int64)
      compositions = generator.uniform(outer_shape, minval=0,
                                       maxval=self._batch_size,
                                       dtype=tf.int64)
      steps = tf.range(num_steps, dtype=tf.int64)
      rows = (tf.math.mod(ids[..., None] + steps, self._max_length)
              + compositions[..., None] * self._max_length)
      # The table lives where the buffer was built (the CPU by default); the
      # generator stays wherever the tuner put it.
      with tf.device(self._device), tf.name_scope(self._scope):
        return self._data_table.read(rows)
