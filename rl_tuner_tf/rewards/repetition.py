"""Rule 3, excessive repetition: -100 for a note repeated too many times.

Walk back from the end of the composition counting steps equal to the new
note; a note-off step marks "rests seen", a no-event step "holds seen", any
other note stops the walk. Excessive if the note is note-off and the count is
> 1; or with no holds and no rests seen the count is > 4; or with holds or
rests seen the count is > 6. (A no-event new note counts earlier no-event
steps as repeats: holding too long is repetition.)
"""
from typing import Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from data_pipeline import encoding
from rl_tuner_tf.rewards import composition

PENALTY = -100.0
MAX_PLAIN_REPEATS = 4
MAX_REPEATS_WITH_HOLDS_OR_RESTS = 6
MAX_NOTE_OFF_REPEATS = 1


def repetition_walk(state: composition.CompositionState, action: tf.Tensor
                    ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """-> (count [B] int32, holds_seen [B] bool, rests_seen [B] bool)."""
  action = tf.cast(action, tf.int32)[:, tf.newaxis]
  notes = state.notes
  filled = composition.positions(state) < state.beat
  same = tf.equal(notes, action)
  rest = tf.equal(notes, encoding.NOTE_OFF) & ~same
  hold = tf.equal(notes, encoding.NO_EVENT) & ~same
  # A step is passed over when it repeats the note or is a rest / hold; the
  # walk from beat-1 backwards covers step j iff steps j..beat-1 are all
  # passable. Unused steps (>= beat) count as passable so a reversed
  # cumulative product over the whole row gives exactly that.
  passable = tf.cast(same | rest | hold | ~filled, tf.int32)
  covered = tf.cast(tf.math.cumprod(passable, axis=1, reverse=True), tf.bool)
  covered &= filled
  count = tf.reduce_sum(tf.cast(covered & same, tf.int32), axis=1)
  holds_seen = tf.reduce_any(covered & hold, axis=1)
  rests_seen = tf.reduce_any(covered & rest, axis=1)
  return count, holds_seen, rests_seen


def is_excessive_repetition(state: composition.CompositionState,
                            action: tf.Tensor) -> tf.Tensor:
  """[B] bool: rule 3 fires for this note."""
  count, holds_seen, rests_seen = repetition_walk(state, action)
  interrupted = holds_seen | rests_seen
  note_off = tf.equal(tf.cast(action, tf.int32), encoding.NOTE_OFF)
  return ((note_off & (count > MAX_NOTE_OFF_REPEATS))
          | (~interrupted & (count > MAX_PLAIN_REPEATS))
          | (interrupted & (count > MAX_REPEATS_WITH_HOLDS_OR_RESTS)))


def repetition_reward(state: composition.CompositionState,
                      action: tf.Tensor, penalty: float = PENALTY
                      ) -> tf.Tensor:
  return tf.where(is_excessive_repetition(state, action),
                  tf.constant(penalty, tf.float32), 0.0)
