"""Rule 8, leap resolution: a leap (>= 7 semitones) should be followed by a
move back the other way, not by a second leap in the same direction.

State machine per composition (updated on every note except the first of a
composition; note-off / no-event only increment steps_since_leap):
- a leap while a leap is pending in the same direction: doubled (-5); the
  pending leap stays;
- a leap in the opposite direction: resolved (+5) only if steps_since_leap
  > 6; the pending leap clears either way;
- a leap with none pending: remember its direction and the note leapt from;
- after any leap steps_since_leap = 0;
- a non-leap real note: steps_since_leap += 1, and if the pending leap went
  up and the note is now <= the note leapt from (down: >=), the leap is
  resolved gradually (+5) and clears.
"""
from typing import NamedTuple, Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf.rewards import composition
from rl_tuner_tf.rewards import intervals

LEAP = 7  # semitones: a fifth or more
STEPS_BETWEEN_LEAPS = 6
RESOLVED_REWARD = 5.0
DOUBLED_PENALTY = -5.0

RESOLVED = 1
DOUBLED = -1
NO_OUTCOME = 0


class LeapState(NamedTuple):
  leap_direction: tf.Tensor
  leapt_from: tf.Tensor
  steps_since_leap: tf.Tensor


def leap_step(state: composition.CompositionState, action: tf.Tensor,
              steps_between_leaps: int = STEPS_BETWEEN_LEAPS
              ) -> Tuple[tf.Tensor, LeapState]:
  """One step of the state machine.

  Returns (outcome [B] int32: RESOLVED / DOUBLED / NO_OUTCOME, LeapState).
  """
  action = tf.cast(action, tf.int32)
  direction = state.leap_direction
  leapt_from = state.leapt_from
  steps = state.steps_since_leap
  has_previous, previous, interval = intervals.interval_from_previous(
      state, action)
  nonempty = tf.fill(tf.shape(action), state.beat > 0)
  real = composition.is_real_note(action)
  is_leap = nonempty & real & has_previous & (interval >= LEAP)
  is_step = nonempty & real & ~is_leap  # includes "no previous real note"
  new_direction = tf.where(action > previous, composition.ASCENDING,
                           composition.DESCENDING)

  pending = tf.not_equal(direction, composition.NO_LEAP)
  doubled = is_leap & pending & tf.equal(direction, new_direction)
  reversed_leap = is_leap & pending & tf.not_equal(direction, new_direction)
  leap_resolved = reversed_leap & (steps > steps_between_leaps)
  first_leap = is_leap & ~pending
  gradual = is_step & (
      (tf.equal(direction, composition.ASCENDING) & (action <= leapt_from))
      | (tf.equal(direction, composition.DESCENDING) & (action >= leapt_from)))

  clear = reversed_leap | gradual
  out_direction = tf.where(first_leap, new_direction,
                           tf.where(clear, composition.NO_LEAP, direction))
  out_from = tf.where(first_leap, previous,
                      tf.where(clear, composition.NO_NOTE, leapt_from))
  out_steps = tf.where(is_leap, 0,
                       tf.where(nonempty & ~is_leap, steps + 1, steps))
  outcome = tf.where(leap_resolved | gradual, RESOLVED,
                     tf.where(doubled, DOUBLED, NO_OUTCOME))
  return outcome, LeapState(out_direction, out_from, out_steps)


def outcome_reward(outcome: tf.Tensor,
                   resolved_reward: float = RESOLVED_REWARD,
                   doubled_penalty: float = DOUBLED_PENALTY) -> tf.Tensor:
  return tf.where(tf.equal(outcome, RESOLVED), resolved_reward,
                  tf.where(tf.equal(outcome, DOUBLED), doubled_penalty, 0.0))


def leap_resolution_reward(state: composition.CompositionState,
                           action: tf.Tensor) -> Tuple[tf.Tensor, LeapState]:
  """-> (reward [B] float32, LeapState after the note)."""
  outcome, leap_state = leap_step(state, action)
  return outcome_reward(outcome), leap_state
