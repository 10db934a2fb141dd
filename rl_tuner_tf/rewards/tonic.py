"""Rule 2, tonic: the melody starts on the tonic and ends the final bar well.

With F = num_notes - 4 (the first step of the final bar of four): at beat 0 or
F, +3 for the tonic (class 14, C4); at F + 1, +3 for no-event (hold it); at
beats after F + 1, +3 for no-event or note-off.
"""
from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from data_pipeline import encoding
from rl_tuner_tf.rewards import composition

REWARD = 3.0
FINAL_BAR_OFFSET = 4


def starts_with_tonic(state: composition.CompositionState,
                      action: tf.Tensor, tonic: int = encoding.TONIC_CLASS
                      ) -> tf.Tensor:
  """[B] bool: the note is the first of the melody and is the tonic."""
  return tf.logical_and(tf.equal(state.beat, 0), tf.equal(action, tonic))


def tonic_reward(state: composition.CompositionState, action: tf.Tensor,
                 reward_amount: float = REWARD,
                 tonic: int = encoding.TONIC_CLASS) -> tf.Tensor:
  action = tf.cast(action, tf.int32)
  beat = state.beat
  final_bar = composition.num_notes(state) - FINAL_BAR_OFFSET  # F
  is_hold = tf.equal(action, encoding.NO_EVENT)
  is_hold_or_rest = is_hold | tf.equal(action, encoding.NOTE_OFF)
  hit = tf.where(
      (beat == 0) | (beat == final_bar), tf.equal(action, tonic),
      tf.where(beat == final_bar + 1, is_hold,
               tf.where(beat > final_bar + 1, is_hold_or_rest,
                        tf.zeros_like(is_hold))))
  return tf.where(hit, tf.constant(reward_amount, tf.float32), 0.0)
