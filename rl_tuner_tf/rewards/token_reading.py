"""How the rules read tokens 0 and 1 (reference sections 1 and 9).

  paper    0 = note-off, 1 = no-event: the meaning the Note RNN was trained
           with (data_pipeline/encoding.py), and the paper's. The default.
  magenta  the original code's rules: its rl_tuner.py declares NOTE_OFF = 0,
           NO_EVENT = 1, but its Note RNN's data path encodes 0 = no-event and
           1 = note-off, so every rule and statistic reads the model's holds
           as note-offs and its note-offs as holds.

The rules themselves always use the paper's meaning; a reading is applied
where tokens enter them (the environment's action, replayed melodies), by
swapping 0 and 1 under ``magenta``. Nothing else changes: the networks, the
compositions they read and the melodies written to disk keep our encoding.
"""
from typing import Union

from data_pipeline import keras_setup  # noqa: F401
import numpy as np
import tensorflow as tf

from data_pipeline import encoding

READINGS = ("paper", "magenta")


def check_reading(reading: str) -> None:
  if reading not in READINGS:
    raise ValueError(f"unknown token reading {reading!r}; expected one of "
                     f"{READINGS}")


def rule_view(tokens: Union[tf.Tensor, np.ndarray], reading: str = "paper"
              ) -> Union[tf.Tensor, np.ndarray]:
  """The tokens as the rules see them under ``reading`` (tensor or array)."""
  check_reading(reading)
  if reading == "paper":
    return tokens
  if tf.is_tensor(tokens):
    swapped = tf.where(tf.equal(tokens, encoding.NOTE_OFF),
                       tf.constant(encoding.NO_EVENT, tokens.dtype),
                       tf.constant(encoding.NOTE_OFF, tokens.dtype))
    return tf.where(tokens < encoding.NUM_SPECIAL_EVENTS, swapped, tokens)
  tokens = np.asarray(tokens)
  out = tokens.copy()
  out[tokens == encoding.NOTE_OFF] = encoding.NO_EVENT
  out[tokens == encoding.NO_EVENT] = encoding.NOTE_OFF
  return out
