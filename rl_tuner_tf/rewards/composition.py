"""The composition a music-theory reward looks at, as batched tensors.

All B compositions of a batch advance in lockstep: ``beat`` (the number of
notes already composed) is one scalar, so every rule is a handful of
vectorised ops over ``[B, num_notes]`` and the caller's 32-step loop can live
in a ``tf.while_loop`` (reference section 3: composition empty, beat 0 and
leap state cleared at the start of each composition).
"""
from typing import NamedTuple, Tuple, Union

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from data_pipeline import encoding

NO_LEAP = 0
ASCENDING = 1
DESCENDING = -1
NO_NOTE = -1  # leapt_from when no leap is pending


class CompositionState(NamedTuple):
  """Everything the rules need about the compositions so far.

  notes: [B, num_notes] int32 class tokens; entries at index >= beat unused.
  beat: [] int32, notes already in every composition.
  leap_direction: [B] int32, pending leap: 0 none, +1 up, -1 down.
  leapt_from: [B] int32, the note a pending leap started from (NO_NOTE: none).
  steps_since_leap: [B] int32, steps since the last leap (rule 8).
  """
  notes: tf.Tensor
  beat: tf.Tensor
  leap_direction: tf.Tensor
  leapt_from: tf.Tensor
  steps_since_leap: tf.Tensor


def initial_state(batch_size: Union[int, tf.Tensor],
                  num_notes: Union[int, tf.Tensor] = 32) -> CompositionState:
  """Empty compositions: beat 0, leap state cleared."""
  if isinstance(num_notes, int) and num_notes < 1:
    raise ValueError(f"num_notes must be >= 1, got {num_notes}")
  zeros = tf.zeros([batch_size], tf.int32)
  return CompositionState(
      notes=tf.zeros([batch_size, num_notes], tf.int32),
      beat=tf.constant(0, tf.int32),
      leap_direction=zeros,
      leapt_from=zeros + NO_NOTE,
      steps_since_leap=zeros)


def num_notes(state: CompositionState) -> Union[int, tf.Tensor]:
  """The composition length (32 by default), a Python int when static."""
  static = state.notes.shape[1]
  return static if static is not None else tf.shape(state.notes)[1]


def positions(state: CompositionState) -> tf.Tensor:
  """[1, num_notes] int32 indices 0..num_notes-1."""
  return tf.range(tf.shape(state.notes)[1], dtype=tf.int32)[tf.newaxis, :]


def is_real_note(tokens: tf.Tensor) -> tf.Tensor:
  """True for pitches (classes 2..37), False for note-off / no-event."""
  return tokens >= encoding.NUM_SPECIAL_EVENTS


def with_action(state: CompositionState, action: tf.Tensor) -> tf.Tensor:
  """[B, num_notes]: the compositions with ``action`` written at ``beat``.

  Entries after ``beat`` are left as they were (unused).
  """
  action = tf.cast(action, tf.int32)
  return tf.where(positions(state) == state.beat, action[:, tf.newaxis],
                  state.notes)


def append(state: CompositionState, action: tf.Tensor
           ) -> CompositionState:
  """State after ``action`` is appended (leap fields untouched)."""
  return state._replace(notes=with_action(state, action), beat=state.beat + 1)


def previous_real_note(state: CompositionState
                       ) -> Tuple[tf.Tensor, tf.Tensor]:
  """The last pitch before ``beat``, walking back over 0/1.

  Returns (has_previous [B] bool, previous [B] int32; 0 where there is none).
  """
  filled = positions(state) < state.beat
  real = filled & is_real_note(state.notes)
  last_index = tf.reduce_max(tf.where(real, positions(state), -1), axis=1)
  has_previous = last_index >= 0
  previous = tf.gather(state.notes, tf.maximum(last_index, 0), axis=1,
                       batch_dims=1)
  return has_previous, tf.where(has_previous, previous, 0)


def pitch_class(tokens: tf.Tensor) -> tf.Tensor:
  """Pitch class 0..11 (C = 0) of pitch tokens (meaningless for 0/1)."""
  return (tokens - encoding.NUM_SPECIAL_EVENTS + encoding.MIN_PITCH) % 12
