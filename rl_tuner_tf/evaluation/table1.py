"""Table 1 of the paper: music-theory statistics of generated melodies.

Every melody is replayed note by note through the same rule functions the
reward uses (``rl_tuner_tf.rewards``), in one compiled graph per chunk, and
counted with the definitions and denominators of the reference (section 7):

  notes excessively repeated   rule 3 fires                / (N * 32)
  notes not in key             note outside the key set    / (N * 32)
  melodies starting with tonic beat 0 and class 14         / N
  notes in motif               rule 5's motif exists        / (N * 32)
  notes in repeated motif      rule 6 fires                / (N * 32)
  leaps resolved               resolved / (resolved + doubled)  (rule 8)
  autocorrelation lag 1/2/3    of the whole melody, mean over melodies
                               ignoring NaN (constant melodies)
  unique max / min note        the max class / lowest real note occurs once / N
plus mean r_MT per note and, given the per-step log p(a|s) under the Note RNN,
mean log p.
"""
import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

from data_pipeline import keras_setup  # noqa: F401
import numpy as np
import tensorflow as tf

from rl_tuner_tf.evaluation import objective
from rl_tuner_tf.rewards import autocorrelation
from rl_tuner_tf.rewards import extremes
from rl_tuner_tf.rewards import music_theory
from rl_tuner_tf.rewards import replay
from rl_tuner_tf.rewards import token_reading as reading_lib

DEFAULT_CHUNK = 20000

# (json key, label, how to print) in the paper's row order.
ROWS = (
    ("notes_excessively_repeated", "Notes excessively repeated", "percent"),
    ("autocorrelation_lag1", "Mean autocorrelation - lag 1", "float"),
    ("autocorrelation_lag2", "Mean autocorrelation - lag 2", "float"),
    ("autocorrelation_lag3", "Mean autocorrelation - lag 3", "float"),
    ("notes_not_in_key", "Notes not in key", "percent"),
    ("melodies_starting_with_tonic", "Melodies starting with tonic", "percent"),
    ("leaps_resolved", "Leaps resolved", "percent"),
    ("melodies_with_unique_max_note", "Melodies with unique max note", "percent"),
    ("melodies_with_unique_min_note", "Melodies with unique min note", "percent"),
    ("notes_in_motif", "Notes in motif", "percent"),
    ("notes_in_repeated_motif", "Notes in repeated motif", "percent"),
    ("mean_log_p", "Mean log p(a|s) under the Note RNN", "float"),
    ("mean_r_mt", "Mean r_MT per note", "float"),
    ("kl_objective", "KL-regularised objective (95 % CI)", "objective"),
)
# Rows shown only when a model has the statistic: r_RM, a reward model's
# mean score of the melodies (evaluation with a reward model).
OPTIONAL_ROWS = (
    ("r_rm", "Mean r_RM, the reward model's score (95 % CI)", "mean_ci"),
)

# The paper's Table 1 (reference section 7), as fractions.
PAPER_TABLE1 = {
    "note_rnn": {
        "notes_excessively_repeated": 0.633, "autocorrelation_lag1": -0.16,
        "autocorrelation_lag2": 0.14, "autocorrelation_lag3": -0.13,
        "notes_not_in_key": 0.001, "melodies_starting_with_tonic": 0.009,
        "leaps_resolved": 0.772, "melodies_with_unique_max_note": 0.647,
        "melodies_with_unique_min_note": 0.494, "notes_in_motif": 0.059,
        "notes_in_repeated_motif": 0.00007},
    "q": {
        "notes_excessively_repeated": 0.0, "autocorrelation_lag1": -0.11,
        "autocorrelation_lag2": 0.03, "autocorrelation_lag3": 0.03,
        "notes_not_in_key": 0.01, "melodies_starting_with_tonic": 0.288,
        "leaps_resolved": 0.911, "melodies_with_unique_max_note": 0.564,
        "melodies_with_unique_min_note": 0.519, "notes_in_motif": 0.757,
        "notes_in_repeated_motif": 0.0011},
    "psi": {
        "notes_excessively_repeated": 0.0002, "autocorrelation_lag1": -0.10,
        "autocorrelation_lag2": -0.01, "autocorrelation_lag3": 0.01,
        "notes_not_in_key": 0.006, "melodies_starting_with_tonic": 0.287,
        "leaps_resolved": 0.90, "melodies_with_unique_max_note": 0.594,
        "melodies_with_unique_min_note": 0.583, "notes_in_motif": 0.738,
        "notes_in_repeated_motif": 0.0009},
    "g": {
        "notes_excessively_repeated": 0.0003, "autocorrelation_lag1": 0.55,
        "autocorrelation_lag2": 0.31, "autocorrelation_lag3": 0.17,
        "notes_not_in_key": 0.287, "melodies_starting_with_tonic": 0.0,
        "leaps_resolved": 0.522, "melodies_with_unique_max_note": 0.371,
        "melodies_with_unique_min_note": 0.565, "notes_in_motif": 0.693,
        "notes_in_repeated_motif": 0.0001},
}


def _chunk_sums(tokens, weights):
  """Sums over one chunk of melodies [n, T] (a graph; small outputs)."""
  result = replay._replay(tokens, weights)  # pylint: disable=protected-access
  num_notes = tokens.shape[1]

  def count(name):
    return tf.reduce_sum(tf.cast(result.events[name], tf.int64))

  coeffs = autocorrelation.autocorrelation_coefficients(tokens, num_notes)
  defined = tf.logical_not(tf.math.is_nan(coeffs))
  unique_max, unique_min = extremes.unique_extremes(tokens)
  sums = {name: count(name) for name in music_theory.EVENT_NAMES}
  sums.update({
      "unique_max": tf.reduce_sum(tf.cast(unique_max, tf.int64)),
      "unique_min": tf.reduce_sum(tf.cast(unique_min, tf.int64)),
      "autocorrelation_sum": tf.reduce_sum(
          tf.where(defined, tf.cast(coeffs, tf.float64), 0.0), axis=0),
      "autocorrelation_count": tf.reduce_sum(tf.cast(defined, tf.int64), 0),
      "r_mt_sum": tf.reduce_sum(tf.cast(result.total, tf.float64)),
  })
  for name, values in result.per_rule.items():
    sums["rule/" + name] = tf.reduce_sum(tf.cast(values, tf.float64))
  return sums


def _ratio(numerator, denominator):
  return float(numerator) / float(denominator) if denominator else float("nan")


def compute_table1(melodies: np.ndarray, log_p: Optional[np.ndarray] = None,
                   weights: Optional[Mapping[str, float]] = None,
                   chunk_size: int = DEFAULT_CHUNK,
                   token_reading: str = "paper") -> Dict[str, Any]:
  """Table 1 statistics of melodies [N, T] -> dict (fractions, not percent).

  log_p: optional [N, T] log p(a|s) of each note under the Note RNN.
  weights: rule weights for mean r_MT (default: all 1).
  token_reading: how the rules and statistics read tokens 0/1 ("paper", or
    "magenta": the original code's swapped reading; rewards/token_reading.py).
    Recorded in the result.
  """
  tokens = reading_lib.rule_view(replay.check_melodies(melodies).numpy(),
                                 token_reading)
  num_melodies, num_notes = tokens.shape
  if num_melodies == 0:
    raise ValueError("no melodies to evaluate")
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
  fn = replay.compiled(_chunk_sums, num_notes, weights)
  totals = {}
  for start in range(0, num_melodies, chunk_size):
    sums = fn(tf.constant(tokens[start:start + chunk_size]))
    for name, value in sums.items():
      totals[name] = totals.get(name, 0) + value.numpy()

  total_notes = num_melodies * num_notes
  resolved, doubled = int(totals["leap_resolved"]), int(totals["leap_doubled"])
  stats = {
      "num_melodies": int(num_melodies),
      "num_notes_per_melody": int(num_notes),
      "token_reading": token_reading,
      "notes_excessively_repeated": _ratio(totals["repeated"], total_notes),
      "notes_not_in_key": _ratio(totals["not_in_key"], total_notes),
      "melodies_starting_with_tonic": _ratio(totals["starts_with_tonic"],
                                             num_melodies),
      "notes_in_motif": _ratio(totals["in_motif"], total_notes),
      "notes_in_repeated_motif": _ratio(totals["in_repeated_motif"],
                                        total_notes),
      "leaps_resolved": _ratio(resolved, resolved + doubled),
      "num_leaps_resolved": resolved,
      "num_leaps_doubled": doubled,
      "melodies_with_unique_max_note": _ratio(totals["unique_max"],
                                              num_melodies),
      "melodies_with_unique_min_note": _ratio(totals["unique_min"],
                                              num_melodies),
      "mean_r_mt": _ratio(totals["r_mt_sum"], total_notes),
      "mean_rule_reward": {
          name[len("rule/"):]: _ratio(value, total_notes)
          for name, value in totals.items() if name.startswith("rule/")},
  }
  for i, lag in enumerate(autocorrelation.LAGS):
    stats[f"autocorrelation_lag{lag}"] = _ratio(
        totals["autocorrelation_sum"][i], totals["autocorrelation_count"][i])
  if log_p is not None:
    log_p = np.asarray(log_p, np.float64)
    if log_p.shape != tokens.shape:
      raise ValueError(f"log_p has shape {log_p.shape}, melodies {tokens.shape}")
    stats["mean_log_p"] = float(log_p.mean())
  return stats


def mean_music_theory_reward(melodies: np.ndarray,
                             weights: Optional[Mapping[str, float]] = None,
                             token_reading: str = "paper",
                             last_note_only: bool = False) -> float:
  """Mean r_MT per note of melodies [N, T] (Figure 2's second curve), or with
  ``last_note_only`` the mean r_MT of each melody's last note (what the
  original code's Figure 2 kept)."""
  if last_note_only:
    totals = replay.replay_melodies(melodies, weights, token_reading).total
    return float(np.mean(totals.numpy()[:, -1]))
  return compute_table1(melodies, weights=weights,
                        token_reading=token_reading)["mean_r_mt"]


def _cell(value, style):
  if style == "objective":
    return objective.format_objective(value) if isinstance(value, dict) else "n/a"
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  if style == "mean_ci":  # {mean, ci95}; ci95 None for a single melody
    return (f"{value['mean']:.2f}" if value["ci95"] is None else
            f"{value['mean']:.2f} ± {value['ci95']:.2f}")
  if style == "percent":
    return f"{100.0 * value:.3g} %" if value < 0.01 else f"{100.0 * value:.1f} %"
  return f"{value:.2f}" if style == "float" else str(value)


def to_json_ready(stats: Any) -> Any:
  """NaN -> None, so json.dump writes null (valid JSON)."""
  if isinstance(stats, dict):
    return {k: to_json_ready(v) for k, v in stats.items()}
  if isinstance(stats, float) and math.isnan(stats):
    return None
  return stats


MODEL_ORDER = ("note_rnn", "q", "psi", "g", "rl_only", "ppo", "rloo")


def ordered(results: Mapping[str, Any]) -> Dict[str, Any]:
  """results re-ordered as the paper's columns, unknown names last."""
  names = [n for n in MODEL_ORDER if n in results]
  names += sorted(n for n in results if n not in MODEL_ORDER)
  return {n: results[n] for n in names}


def table_cells(results: Mapping[str, Mapping[str, Any]]
                ) -> Tuple[List[str], List[List[str]]]:
  """-> (header [str], rows [[str]]): each model's value, and the paper's
  beside it for the models the paper reports (note_rnn, q, psi, g)."""
  results = ordered(results)
  header = ["statistic"]
  for model in results:
    header.append(f"{model} (ours)")
    if model in PAPER_TABLE1:
      header.append(f"{model} (paper)")
  rows = []
  optional = [row for row in OPTIONAL_ROWS
              if any(stats.get(row[0]) is not None
                     for stats in results.values())]
  for key, label, style in ROWS + tuple(optional):
    cells = [label]
    for model, stats in results.items():
      cells.append(_cell(stats.get(key), style))
      if model in PAPER_TABLE1:
        cells.append(_cell(PAPER_TABLE1[model].get(key), style))
    rows.append(cells)
  return header, rows


def table_footnote(results: Mapping[str, Mapping[str, Any]]) -> str:
  n = ", ".join(f"{m} {s.get('num_melodies')}" for m, s in ordered(results).items())
  text = (f"Melodies per model: {n} (paper: 100,000). Fractions of notes are "
          "over N x 32 notes, of melodies over N; leaps resolved = resolved / "
          "(resolved + doubled); autocorrelation averaged over melodies whose "
          "value is defined (not constant).")
  cs = {m: s["kl_objective"]["c"] for m, s in ordered(results).items()
        if isinstance(s.get("kl_objective"), dict)}
  if cs:
    text += (" KL-regularised objective: E[sum_t r_MT/c + log p(a|s) - "
             "log pi(a|s)] per composition, pi the policy as sampled, mean "
             "± 95 % CI half-width; c: " +
             ", ".join(f"{m} {c:g}" for m, c in cs.items()) + ".")
  return text


def markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
  """results: {model name: stats dict} -> Markdown table, ours beside the paper."""
  header, rows = table_cells(results)

  def line(cells):
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

  lines = [line(header), "|" + "---|" * len(header)]
  lines += [line(r) for r in rows]
  return "\n".join(lines) + "\n\n" + table_footnote(results) + "\n"
