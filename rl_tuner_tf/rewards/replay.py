"""Replays whole melodies through the rules, note by note, in one graph.

Used by the Table 1 statistics and by tests: ``replay_melodies(tokens)``
gives, for every step, each rule's value, r_MT and the Table 1 events, exactly
as the environment would have computed them while composing.
"""
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional

from data_pipeline import keras_setup  # noqa: F401
import numpy as np
import tensorflow as tf

from data_pipeline.encoding import NUM_CLASSES
from rl_tuner_tf.rewards import composition
from rl_tuner_tf.rewards import music_theory
from rl_tuner_tf.rewards import token_reading as reading_lib


class Replay(NamedTuple):
  """Per-step results, each [N, T]: total (r_MT) and per_rule float32,
  events bool; final_state: the CompositionState after the last note."""
  total: tf.Tensor
  per_rule: Dict[str, tf.Tensor]
  events: Dict[str, tf.Tensor]
  final_state: composition.CompositionState


def _replay(tokens, weights):
  tokens = tf.convert_to_tensor(tokens, tf.int32)
  batch_size = tf.shape(tokens)[0]
  num_notes = tokens.shape[1]
  state = composition.initial_state(batch_size, num_notes)
  names = music_theory.rule_names()
  event_names = music_theory.EVENT_NAMES

  def arrays(dtype, n):
    return [tf.TensorArray(dtype, size=num_notes) for _ in range(n)]

  totals = tf.TensorArray(tf.float32, size=num_notes)
  rule_arrays = arrays(tf.float32, len(names))
  event_arrays = arrays(tf.bool, len(event_names))
  for step in tf.range(num_notes):
    result = music_theory.evaluate_note(state, tokens[:, step], weights)
    state = result.new_state
    totals = totals.write(step, result.total)
    rule_arrays = [a.write(step, result.per_rule[n])
                   for a, n in zip(rule_arrays, names)]
    event_arrays = [a.write(step, result.events[n])
                    for a, n in zip(event_arrays, event_names)]

  def stacked(array):
    return tf.transpose(array.stack())  # [T, N] -> [N, T]

  return Replay(
      total=stacked(totals),
      per_rule={n: stacked(a) for n, a in zip(names, rule_arrays)},
      events={n: stacked(a) for n, a in zip(event_names, event_arrays)},
      final_state=state)


_COMPILED = {}


def check_melodies(tokens: tf.types.experimental.TensorLike) -> tf.Tensor:
  """Validates int melodies [N, T] of class tokens; returns them as int32."""
  if not tf.is_tensor(tokens):
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
      raise ValueError(f"melodies must be [N, T], got shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= NUM_CLASSES):
      raise ValueError(f"melody tokens must lie in [0, {NUM_CLASSES - 1}], "
                       f"found [{tokens.min()}, {tokens.max()}]")
    if not np.issubdtype(tokens.dtype, np.integer):
      raise ValueError(f"melody tokens must be integers, got {tokens.dtype}")
  elif len(tokens.shape) != 2:
    raise ValueError(f"melodies must be [N, T], got shape {tokens.shape}")
  return tf.cast(tokens, tf.int32)


def compiled(builder: Callable[[tf.Tensor, Dict[str, float]], Any],
             num_notes: int, weights: Optional[Mapping[str, float]] = None
             ) -> Callable[[tf.Tensor], Any]:
  """A cached tf.function ``f(tokens [None, num_notes] int32)`` running
  ``builder(tokens, resolved_weights)``; rebuilt when the rule set changes."""
  resolved = music_theory.resolve_weights(weights)
  custom = music_theory._CUSTOM_RULES  # pylint: disable=protected-access
  cache_key = (builder, int(num_notes), tuple(sorted(resolved.items())),
               tuple((name, id(fn)) for name, fn in custom.items()))
  fn = _COMPILED.get(cache_key)
  if fn is None:
    fn = tf.function(
        lambda t: builder(t, resolved),
        input_signature=[tf.TensorSpec([None, int(num_notes)], tf.int32)])
    _COMPILED[cache_key] = fn
  return fn


def replay_melodies(tokens: tf.types.experimental.TensorLike,
                    weights: Optional[Mapping[str, float]] = None,
                    token_reading: str = "paper") -> Replay:
  """tokens [N, T] int (T static) -> Replay, computed in a tf.function.

  token_reading: how the rules read tokens 0/1 (rewards/token_reading.py).
  One compiled graph per (T, rule set, weights); any N reuses it.
  """
  tokens = reading_lib.rule_view(check_melodies(tokens), token_reading)
  return compiled(_replay, tokens.shape[1], weights)(tokens)
