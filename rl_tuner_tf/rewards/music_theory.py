"""r_MT: the weighted sum of the music-theory rules (reference section 6).

Every rule sees the composition *before* the new note is appended. The
environment turns r_MT into the paper's reward (Eq. 3,
r = log p(a|s) + r_MT / c); the division by c is not done here.

User rules: ``register_reward(name, fn)`` with ``fn(state, action) -> [B]
float32``; they are summed with weight 1.0 unless ``weights`` says otherwise.
"""
import collections
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf.rewards import autocorrelation
from rl_tuner_tf.rewards import composition
from rl_tuner_tf.rewards import extremes
from rl_tuner_tf.rewards import intervals
from rl_tuner_tf.rewards import key
from rl_tuner_tf.rewards import leap_resolution
from rl_tuner_tf.rewards import motif
from rl_tuner_tf.rewards import repetition
from rl_tuner_tf.rewards import tonic

BUILTIN_RULES = ("key", "tonic", "repetition", "autocorrelation", "motif",
                 "repeated_motif", "preferred_intervals", "leap_resolution",
                 "unique_extremes")
DEFAULT_WEIGHTS = {name: 1.0 for name in BUILTIN_RULES}

# How Figure 2 reads r_MT for a melody: its mean per note (the paper's
# reference) or its last note only (what the original's evaluation computed).
FIGURE2_R_MT = ("mean", "last_note")

EVENT_NAMES = ("not_in_key", "starts_with_tonic", "repeated", "in_motif",
               "in_repeated_motif", "leap_resolved", "leap_doubled")

_CUSTOM_RULES = collections.OrderedDict()


class NoteEvaluation(NamedTuple):
  """What the rules say about one note of B compositions.

  total: [B] float32 r_MT (weighted). per_rule: rule name -> [B] float32
  (unweighted). events: the Table 1 counts for this note, [B] bool each:
  not_in_key, starts_with_tonic, repeated (rule 3), in_motif (rule 5),
  in_repeated_motif (rule 6), leap_resolved, leap_doubled (rule 8).
  new_state: the note appended, beat + 1, leap state updated.
  """
  total: tf.Tensor
  per_rule: Dict[str, tf.Tensor]
  events: Dict[str, tf.Tensor]
  new_state: composition.CompositionState


def register_reward(
    name: str,
    fn: Callable[[composition.CompositionState, tf.Tensor],
                 tf.types.experimental.TensorLike]) -> None:
  """Adds a user rule ``fn(state, action) -> [B] float32`` to r_MT."""
  if not isinstance(name, str) or not name:
    raise ValueError(f"reward name must be a non-empty string, got {name!r}")
  if name in BUILTIN_RULES or name in _CUSTOM_RULES:
    raise ValueError(f"a reward named {name!r} is already registered")
  if not callable(fn):
    raise TypeError(f"reward {name!r}: fn must be callable, got {fn!r}")
  _CUSTOM_RULES[name] = fn


def unregister_reward(name: str) -> None:
  if name not in _CUSTOM_RULES:
    raise KeyError(f"no user reward named {name!r} "
                   f"(registered: {list(_CUSTOM_RULES)})")
  del _CUSTOM_RULES[name]


def rule_names() -> Tuple[str, ...]:
  """Built-in rules, then user rules, in summation order."""
  return BUILTIN_RULES + tuple(_CUSTOM_RULES)


def resolve_weights(weights: Optional[Mapping[str, float]] = None
                    ) -> Dict[str, float]:
  """Full {rule: weight}: 1.0 for every rule the caller does not mention."""
  resolved = {name: 1.0 for name in rule_names()}
  resolved.update(DEFAULT_WEIGHTS)
  if weights:
    unknown = sorted(set(weights) - set(resolved))
    if unknown:
      raise ValueError(f"unknown reward rule(s) {unknown} in weights; known: "
                       f"{list(resolved)}")
    resolved.update({name: float(w) for name, w in weights.items()})
  return resolved


def evaluate_note(state: composition.CompositionState, action: tf.Tensor,
                  weights: Optional[Mapping[str, float]] = None
                  ) -> NoteEvaluation:
  """All rules, their weighted sum r_MT and Table 1 events for ``action``."""
  action = tf.cast(action, tf.int32)
  weights = resolve_weights(weights)

  repeated = repetition.is_excessive_repetition(state, action)
  last_motif = motif.last_motif(state, action)
  in_motif, distinct, _ = last_motif
  in_repeated_motif, _ = motif.is_repeated_motif(state, action,
                                                 motif=last_motif)
  leap_outcome, leap_state = leap_resolution.leap_step(state, action)
  not_in_key = key.not_in_key(action)

  per_rule = collections.OrderedDict()
  per_rule["key"] = key.key_reward(state, action)
  per_rule["tonic"] = tonic.tonic_reward(state, action)
  per_rule["repetition"] = tf.where(repeated, repetition.PENALTY, 0.0)
  per_rule["autocorrelation"] = autocorrelation.autocorrelation_reward(
      state, action)
  per_rule["motif"] = motif.bonus_value(  # rule 5
      in_motif, distinct, motif.MOTIF_REWARD, motif.MOTIF_BONUS_PER_NOTE)
  per_rule["repeated_motif"] = motif.bonus_value(  # rule 6
      in_repeated_motif, distinct, motif.REPEATED_MOTIF_REWARD,
      motif.REPEATED_MOTIF_BONUS_PER_NOTE)
  per_rule["preferred_intervals"] = intervals.preferred_intervals_reward(
      state, action)
  per_rule["leap_resolution"] = leap_resolution.outcome_reward(leap_outcome)
  per_rule["unique_extremes"] = extremes.unique_extremes_reward(state, action)
  for name, fn in _CUSTOM_RULES.items():
    value = tf.convert_to_tensor(fn(state, action))
    if value.dtype != tf.float32:
      value = tf.cast(value, tf.float32)
    per_rule[name] = tf.broadcast_to(value, tf.shape(action))

  total = tf.add_n([weights[name] * value for name, value in per_rule.items()])
  events = {
      "not_in_key": not_in_key,
      "starts_with_tonic": tonic.starts_with_tonic(state, action),
      "repeated": repeated,
      "in_motif": in_motif,
      "in_repeated_motif": in_repeated_motif,
      "leap_resolved": tf.equal(leap_outcome, leap_resolution.RESOLVED),
      "leap_doubled": tf.equal(leap_outcome, leap_resolution.DOUBLED),
  }
  new_state = composition.append(state, action)._replace(
      leap_direction=leap_state.leap_direction,
      leapt_from=leap_state.leapt_from,
      steps_since_leap=leap_state.steps_since_leap)
  return NoteEvaluation(total, dict(per_rule), events, new_state)


def music_theory_reward(
    state: composition.CompositionState, action: tf.Tensor,
    weights: Optional[Mapping[str, float]] = None
) -> Tuple[tf.Tensor, Dict[str, tf.Tensor], composition.CompositionState]:
  """-> (total [B] r_MT, per_rule {name: [B]}, new_state)."""
  result = evaluate_note(state, action, weights)
  return result.total, result.per_rule, result.new_state
