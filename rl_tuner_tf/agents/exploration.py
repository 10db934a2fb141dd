"""Exploration during tuning (reference section 5).

epsilon-greedy: with probability epsilon a uniformly random note (classes
  0..random_note_max, 36 as the original's off-by-one draw), otherwise the
  policy's greedy note (argmax of Eq. 5 / 12 / 14's logits). Epsilon is
  annealed linearly from 1.0 to 0.1 over the exploration period (the
  original: 500,000 of 1,000,000 notes), then stays at 0.1.
Boltzmann: the note is sampled from the policy's softmax
  (Q: softmax(Q); Psi: softmax(Psi); G: softmax(log p + G)), optionally at a
  temperature. The sampled note is played; the policy info also carries the
  argmax (``greedy_action``): the original stores that argmax in replay as the
  action while it appends the sampled note, which ``TuningConfig.
  boltzmann_store_argmax`` reproduces (tuning.py's replay observer).
"""
from typing import Dict

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf.agents import policies

MODES = ("egreedy", "boltzmann")


class LinearEpsilon:
  """epsilon(n) = start + (end - start) * min(1, n / period), n = notes so far."""

  def __init__(self, notes_counter, start=1.0, end=0.1, period=500_000):
    if period <= 0:
      raise ValueError(f"exploration period must be > 0, got {period}")
    for name, value in (("start", start), ("end", end)):
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"epsilon {name} must be in [0, 1], got {value}")
    self._counter = notes_counter
    self.start, self.end, self.period = float(start), float(end), float(period)

  def __call__(self):
    fraction = tf.minimum(
        1.0, tf.cast(self._counter, tf.float32) / self.period)
    return self.start + (self.end - self.start) * fraction


class EpsilonGreedyMelodyPolicy(policies.MelodyPolicy):
  """A random note with probability epsilon(), else the greedy note."""

  def __init__(self, time_step_spec, action_spec, q_network, kind, epsilon,
               random_note_max=36, primer=None, seed=0, name=None):
    super().__init__(time_step_spec, action_spec, q_network, kind, greedy=True,
                     primer=primer, seed=seed, name=name)
    self._epsilon = epsilon if callable(epsilon) else (lambda: epsilon)
    self._random_note_max = int(random_note_max)

  def _select(self, logits, time_step):
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    batch = tf.shape(greedy)
    explore = self._generator.uniform(batch) < self._epsilon()
    random_note = self._generator.uniform(
        batch, 0, self._random_note_max + 1, tf.int32)
    return tf.where(explore, random_note, greedy)


class BoltzmannMelodyPolicy(policies.MelodyPolicy):
  """Samples the note from softmax(policy logits / temperature)."""

  def __init__(self, time_step_spec, action_spec, q_network, kind,
               temperature=1.0, primer=None, seed=0, name=None):
    if not temperature > 0:
      raise ValueError(f"Boltzmann temperature must be > 0, got {temperature}")
    super().__init__(time_step_spec, action_spec, q_network, kind,
                     greedy=False, primer=primer, seed=seed, name=name)
    self._temperature = float(temperature)

  def extra_info_spec(self, action_spec: tf.TensorSpec
                      ) -> Dict[str, tf.TensorSpec]:
    return {"greedy_action": action_spec}

  def extra_info(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
    return {"greedy_action": tf.argmax(logits, axis=-1, output_type=tf.int32)}

  def _select(self, logits, time_step):
    return policies.sample_from_logits(self._generator,
                                       logits / self._temperature)
