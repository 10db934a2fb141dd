"""Rules 5 and 6, motif and repeated motif.

Motif (rule 5): with the new note appended, if the composition has >= 8 steps
and its last 8 steps hold >= 3 distinct real notes (not note-off/no-event):
+3 + max(0, 0.3 (distinct - 3)).
Repeated motif (rule 6): if that motif (the same 8 tokens) also occurs
anywhere in the composition before its last 7 steps (``composition[:-7]``,
the composition without the new note -- so never overlapping the motif):
+4 + max(0, distinct - 3).
"""
from typing import Optional, Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from data_pipeline import encoding
from rl_tuner_tf.rewards import composition

BAR_LENGTH = 8
MIN_DISTINCT_NOTES = 3
MOTIF_REWARD = 3.0
MOTIF_BONUS_PER_NOTE = 0.3
REPEATED_MOTIF_REWARD = 4.0
REPEATED_MOTIF_BONUS_PER_NOTE = 1.0


def last_motif(state: composition.CompositionState, action: tf.Tensor,
               bar_length: int = BAR_LENGTH
               ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """-> (is_motif [B] bool, distinct [B] int32, window [B, bar_length]).

  window: the last ``bar_length`` steps of the composition with ``action``
  appended (clamped at step 0 while shorter; then is_motif is False).
  """
  notes = composition.with_action(state, action)
  length = state.beat + 1
  index = tf.maximum(length - bar_length + tf.range(bar_length), 0)
  window = tf.gather(notes, index, axis=1)
  present = tf.reduce_max(
      tf.one_hot(window, encoding.NUM_CLASSES, dtype=tf.int32), axis=1)
  distinct = tf.reduce_sum(present[:, encoding.NUM_SPECIAL_EVENTS:], axis=1)
  is_motif = (length >= bar_length) & (distinct >= MIN_DISTINCT_NOTES)
  return is_motif, distinct, window


def is_repeated_motif(
    state: composition.CompositionState, action: tf.Tensor,
    bar_length: int = BAR_LENGTH,
    motif: Optional[Tuple[tf.Tensor, tf.Tensor, tf.Tensor]] = None
) -> Tuple[tf.Tensor, tf.Tensor]:
  """-> (repeated [B] bool, distinct [B] int32): rule 6 fires.

  motif: ``last_motif(state, action, bar_length)`` if already computed.
  """
  is_motif, distinct, window = motif or last_motif(state, action, bar_length)
  if state.notes.shape[1] is not None and state.notes.shape[1] < bar_length:
    return tf.zeros_like(is_motif), distinct
  # All bar_length-windows of the stored composition, by start index i.
  frames = tf.signal.frame(state.notes, bar_length, 1, axis=1)
  same = tf.reduce_all(tf.equal(frames, window[:, tf.newaxis, :]), axis=2)
  # The earlier occurrence must fit in composition[:-(bar_length - 1)]:
  # i + bar_length <= beat - (bar_length - 1).
  start = tf.range(tf.shape(frames)[1])[tf.newaxis, :]
  allowed = start + bar_length <= state.beat - (bar_length - 1)
  repeated = is_motif & tf.reduce_any(same & allowed, axis=1)
  return repeated, distinct


def bonus_value(fires: tf.Tensor, distinct: tf.Tensor, reward_amount: float,
                bonus_per_note: float) -> tf.Tensor:
  """reward_amount + max(0, bonus_per_note (distinct - 3)) where ``fires``."""
  extra = tf.cast(distinct - MIN_DISTINCT_NOTES, tf.float32)
  value = reward_amount + tf.maximum(0.0, bonus_per_note * extra)
  return tf.where(fires, value, 0.0)


def motif_reward(state: composition.CompositionState, action: tf.Tensor,
                 reward_amount: float = MOTIF_REWARD,
                 bonus_per_note: float = MOTIF_BONUS_PER_NOTE) -> tf.Tensor:
  is_motif, distinct, _ = last_motif(state, action)
  return bonus_value(is_motif, distinct, reward_amount, bonus_per_note)


def repeated_motif_reward(
    state: composition.CompositionState, action: tf.Tensor,
    reward_amount: float = REPEATED_MOTIF_REWARD,
    bonus_per_note: float = REPEATED_MOTIF_BONUS_PER_NOTE) -> tf.Tensor:
  repeated, distinct = is_repeated_motif(state, action)
  return bonus_value(repeated, distinct, reward_amount, bonus_per_note)
