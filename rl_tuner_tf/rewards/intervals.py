"""Rule 7, preferred intervals (values x5).

The previous real note is found by walking back over note-off / no-event
(none: 0). A no-event after a C or G: +0.3, after anything else +0.075; a
note-off after a C or G: +0.15, else +0.05. (The original calls C and G
"third or fifth"; they are the tonic and the fifth.) Otherwise, with
interval = |a - prev| semitones: a fifth from a C or G +0.1; a major third
from a C or E +0.15; else a major 7th -0.3, beyond an octave -1.0, major 3rd
+0.09, major 2nd +0.08, 4th +0.07, major 6th +0.05, 5th +0.02, anything else
(unison, half step, minor 3rd, tritone, minor 6th, minor 7th, octave) 0.
"""
from typing import Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from data_pipeline import encoding
from rl_tuner_tf.rewards import composition

SCALER = 5.0
HOLD_AFTER_C_OR_G = 0.3
HOLD = 0.075
REST_AFTER_C_OR_G = 0.15
REST = 0.05
IN_KEY_FIFTH = 0.1    # a fifth from C or G
IN_KEY_THIRD = 0.15   # a major third from C or E
# Other intervals in semitones -> value; beyond an octave: BEYOND_OCTAVE.
INTERVAL_VALUES = {11: -0.3, 4: 0.09, 2: 0.08, 5: 0.07, 9: 0.05, 7: 0.02}
OCTAVE = 12
BEYOND_OCTAVE = -1.0
FIFTH = 7
MAJOR_THIRD = 4
_C, _E, _G = 0, 4, 7  # pitch classes


def interval_from_previous(state: composition.CompositionState,
                           action: tf.Tensor
                           ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """-> (has_previous [B] bool, previous [B] int32, interval [B] int32).

  interval = |action - previous real note| (meaningless where action is 0/1
  or there is no previous real note).
  """
  has_previous, previous = composition.previous_real_note(state)
  interval = tf.abs(tf.cast(action, tf.int32) - previous)
  return has_previous, previous, interval


def preferred_intervals_reward(state: composition.CompositionState,
                               action: tf.Tensor, scaler: float = SCALER
                               ) -> tf.Tensor:
  action = tf.cast(action, tf.int32)
  has_previous, previous, interval = interval_from_previous(state, action)
  pc = composition.pitch_class(previous)
  after_c_or_g = (pc == _C) | (pc == _G)
  after_c_or_e = (pc == _C) | (pc == _E)

  value = tf.zeros_like(interval, tf.float32)
  for semitones, amount in INTERVAL_VALUES.items():
    value = tf.where(interval == semitones, amount, value)
  value = tf.where(interval > OCTAVE, BEYOND_OCTAVE, value)
  value = tf.where((interval == FIFTH) & after_c_or_g, IN_KEY_FIFTH, value)
  value = tf.where((interval == MAJOR_THIRD) & after_c_or_e, IN_KEY_THIRD,
                   value)
  value = tf.where(tf.equal(action, encoding.NOTE_OFF),
                   tf.where(after_c_or_g, REST_AFTER_C_OR_G, REST), value)
  value = tf.where(tf.equal(action, encoding.NO_EVENT),
                   tf.where(after_c_or_g, HOLD_AFTER_C_OR_G, HOLD), value)
  return tf.where(has_previous, scaler * value, 0.0)
