"""Rule 4, autocorrelation: penalise melodies that echo themselves.

For the composition x (class indices, length n) with the new note appended,
at lags 1, 2, 3:  coeff = sum((x[lag:] - m) (x[:n-lag] - m)) / n / var(x)
(m the mean, var the population variance; NaN when var is 0 -- a constant
melody -- and then skipped). Each |coeff| > 0.15 costs 3 |coeff|.
The same coefficients, on whole melodies, are Table 1's autocorrelation rows.
"""
from typing import Sequence, Union

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf.rewards import composition

LAGS = (1, 2, 3)
THRESHOLD = 0.15
PENALTY_WEIGHT = 3.0


def autocorrelation_coefficients(notes: tf.types.experimental.TensorLike,
                                 length: Union[int, tf.Tensor],
                                 lags: Sequence[int] = LAGS) -> tf.Tensor:
  """[B, len(lags)] float32 coefficients of notes[:, :length] (NaN: constant).

  notes: [B, T] int tokens, entries at index >= length ignored.
  length: [] int, 1 <= length <= T. A lag >= length gives 0 (empty sum),
  unless the melody is constant (NaN), as numpy would.
  """
  notes = tf.convert_to_tensor(notes)
  length = tf.cast(length, tf.int32)
  valid = tf.range(tf.shape(notes)[1])[tf.newaxis, :] < length
  x = tf.cast(notes, tf.float32)
  n = tf.cast(length, tf.float32)
  mean = tf.reduce_sum(tf.where(valid, x, 0.0), axis=1, keepdims=True) / n
  centred = tf.where(valid, x - mean, 0.0)  # zero outside the melody
  variance = tf.reduce_sum(tf.square(centred), axis=1) / n
  # Constant (or one-note) melodies: variance 0 -> NaN, decided exactly on
  # the integer tokens rather than on a float that could round.
  constant = tf.reduce_all(
      tf.equal(notes, notes[:, :1]) | tf.logical_not(valid), axis=1)
  coefficients = []
  for lag in lags:
    if lag >= notes.shape[1]:
      products = tf.zeros_like(variance)
    else:
      products = tf.reduce_sum(centred[:, lag:] * centred[:, :-lag], axis=1)
    coeff = products / n / tf.where(constant, 1.0, variance)
    coefficients.append(tf.where(constant, float("nan"), coeff))
  return tf.stack(coefficients, axis=1)


def autocorrelation_reward(state: composition.CompositionState,
                           action: tf.Tensor, threshold: float = THRESHOLD,
                           penalty_weight: float = PENALTY_WEIGHT
                           ) -> tf.Tensor:
  coeffs = autocorrelation_coefficients(
      composition.with_action(state, action), state.beat + 1)
  magnitude = tf.abs(coeffs)
  costly = tf.logical_not(tf.math.is_nan(coeffs)) & (magnitude > threshold)
  return -tf.reduce_sum(tf.where(costly, penalty_weight * magnitude, 0.0),
                        axis=1)
