"""Rule 9, unique extremes, on the note that completes the composition:
+3 if the highest class value occurs exactly once (the original takes the
max over all classes, note-off / no-event included); +3 if the lowest real
note (0/1 excluded) occurs exactly once.
"""
from typing import Optional, Tuple, Union

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from data_pipeline import encoding
from rl_tuner_tf.rewards import composition

REWARD = 3.0


def unique_extremes(notes: tf.types.experimental.TensorLike,
                    length: Optional[Union[int, tf.Tensor]] = None
                    ) -> Tuple[tf.Tensor, tf.Tensor]:
  """-> (unique_max [B] bool, unique_min [B] bool) of notes[:, :length]."""
  notes = tf.convert_to_tensor(notes)
  if length is None:
    valid = tf.ones_like(notes, tf.bool)
  else:
    valid = tf.range(tf.shape(notes)[1])[tf.newaxis, :] < length
  highest = tf.reduce_max(tf.where(valid, notes, -1), axis=1, keepdims=True)
  unique_max = tf.equal(
      tf.reduce_sum(tf.cast(valid & tf.equal(notes, highest), tf.int32), 1), 1)
  real = valid & composition.is_real_note(notes)
  lowest = tf.reduce_min(tf.where(real, notes, encoding.NUM_CLASSES), axis=1,
                         keepdims=True)
  unique_min = tf.reduce_any(real, axis=1) & tf.equal(
      tf.reduce_sum(tf.cast(real & tf.equal(notes, lowest), tf.int32), 1), 1)
  return unique_max, unique_min


def unique_extremes_reward(state: composition.CompositionState,
                           action: tf.Tensor, reward_amount: float = REWARD
                           ) -> tf.Tensor:
  unique_max, unique_min = unique_extremes(
      composition.with_action(state, action), state.beat + 1)
  value = (tf.cast(unique_max, tf.float32) + tf.cast(unique_min, tf.float32))
  last_note = tf.equal(state.beat + 1, composition.num_notes(state))
  return tf.where(last_note, reward_amount * value, 0.0)
