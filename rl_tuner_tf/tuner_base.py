"""What every tuner shares: the compiled run loop and its public surface.

``tuning.Tuner`` (q, psi, g, rl_only: composes notes into a replay buffer and
trains off-policy) and ``on_policy_tuning.OnPolicyTuner`` (its PPOTuner and RLOOTuner: composes
whole compositions, then trains on them) differ only in what one iteration
does. Both subclass ``TunerBase``, which owns the loop that runs iterations in
one graph and stops at the first non-finite loss, the counters the main job
reads, and the statistics variables that record a bad loss.
"""
from typing import Dict, Optional

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf import note_rnn


def copy_network(source: note_rnn.NoteRNN, name: str) -> note_rnn.NoteRNN:
  """A new NoteRNN with the same architecture and weights as ``source``."""
  model = note_rnn.NoteRNN(source.layer_sizes, name=name)
  model.set_weights(source.get_weights())
  return model


class TunerBase:
  """The run loop and public surface of a tuner.

  A subclass sets ``config``, ``notes_composed`` (int64 variable, notes
  composed so far) and ``checkpoint``, calls ``_init_base()`` (then
  ``self._stats`` holds ``nonfinite`` and ``bad_loss``; add its own
  statistics there), and implements ``_iteration`` (graph code: compose and
  train once), ``notes_per_iteration``, ``num_updates`` and
  ``read_and_reset_stats``.
  """

  def _init_base(self):
    self._stats = tf.Module(name="train_stats")
    self._stats.nonfinite = tf.Variable(False, trainable=False)
    self._stats.bad_loss = tf.Variable(0.0, trainable=False)
    self._run_fn = tf.function(self._run, autograph=False)

  def _iteration(self):
    raise NotImplementedError

  def _record_bad_loss(self, loss):
    """Graph code: remembers the first non-finite loss; the run stops."""
    with tf.control_dependencies([self._stats.nonfinite.assign(True),
                                  self._stats.bad_loss.assign(loss)]):
      return tf.constant(True)

  def _run(self, num_iterations):
    def cond(i):
      return tf.logical_and(i < num_iterations,
                            tf.logical_not(self._stats.nonfinite))

    def body(i):
      with tf.control_dependencies([self._iteration()]):
        return i + 1
    return tf.while_loop(cond, body, [tf.constant(0)],
                         parallel_iterations=1)[0]

  def run(self, num_iterations: int) -> int:
    """Runs num_iterations iterations (notes_per_iteration notes each).

    Returns the number of iterations done (fewer if a loss was not finite;
    then ``nonfinite_loss`` is set and no update used that loss).
    """
    return int(self._run_fn(tf.constant(int(num_iterations))))

  @property
  def nonfinite_loss(self) -> Optional[float]:
    """None, or the first non-finite loss value seen."""
    if bool(self._stats.nonfinite.numpy()):
      return float(self._stats.bad_loss.numpy())
    return None

  @property
  def num_notes_composed(self) -> int:
    return int(self.notes_composed.numpy())

  @property
  def notes_per_iteration(self) -> int:
    raise NotImplementedError

  @property
  def num_updates(self) -> int:
    raise NotImplementedError

  def read_and_reset_stats(self) -> Dict[str, float]:
    raise NotImplementedError
