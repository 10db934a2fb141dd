"""The evaluation job behind ``python -m rl_tuner_tf.evaluate`` (kept free of
absl flags so it can be imported next to other entry points' flags).

For each model: sample N melodies from its policy, Table 1 statistics (read
with the model's token reading: its run's ``token_reading``),
melodies.npy / log_p.npy / table1.json / samples/ under <output_dir>/<model>/,
then <output_dir>/table1.md and the HTML report. A run holding several seeds
(or a c / gamma grid) also gets <output_dir>/table1.json: every statistic as
mean +- 95 % confidence interval over seeds with the per-seed values
(evaluation/seeds.py), and a c sweep its table and plot.
A model whose results in <output_dir>/<model>/ were computed from the same
model files, the same settings and the same statistics code is not sampled
again (its table1.json holds that ``evaluation_key``): rerunning an
evaluation that was killed, or one over a grid that grew, only evaluates
what is new or changed. ``force`` evaluates everything.
Every model also gets the KL-regularised objective (objective.py) with its
95 % CI, at the c of its run (tuned.json's config), the Note RNN at the c its
run's tuned models share; ``objective_c`` overrides both; else
objective.DEFAULT_C.
"""
import dataclasses
import glob
import hashlib
import json
import os
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)


from data_pipeline import atomic_files
from data_pipeline import run_lock
from rl_tuner_tf import configuration
from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn
from rl_tuner_tf import reward_model
import numpy as np

from rl_tuner_tf.evaluation import beyond_rules
from rl_tuner_tf.evaluation import generate
from rl_tuner_tf.evaluation import objective
from rl_tuner_tf.evaluation import reference as reference_lib
from rl_tuner_tf.evaluation import report
from rl_tuner_tf.evaluation import samples
from rl_tuner_tf.evaluation import seeds
from rl_tuner_tf.evaluation import table1
from rl_tuner_tf.rewards import token_reading as reading_lib


ConfigError = configuration.ConfigError
# load_models' entries: (name, kind, q_network or None, reward_rnn, settings).
LoadedModel = Tuple[str, str, Optional[note_rnn.NoteRNN], note_rnn.NoteRNN,
                    Dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class EvaluationConfig(configuration.Values):
  """What to evaluate and how (``python -m rl_tuner_tf.evaluate``'s flags)."""
  note_rnn_checkpoint: str = configuration.setting(
      note_rnn.SHIPPED_CHECKPOINT_DIR, "Note RNN checkpoint for the "
      "'note_rnn' row; empty: no Note RNN row.")
  tuned_model_dirs: Tuple[str, ...] = configuration.setting(
      default_factory=tuple, help="Tuned models (written by "
      "melody_policy.save_tuned): q, psi, g, rl_only, ppo or rloo.")
  run_dir: Optional[str] = configuration.setting(
      None, "A training run: evaluates every tuned model in it, writes to "
      "<run_dir>/evaluation and the report to <run_dir>/report.html.")
  output_dir: Optional[str] = configuration.setting(
      None, "Where results go (default <run_dir>/evaluation, or "
      "runs/evaluation).")
  num_melodies: int = configuration.setting(
      100000, "Melodies per model (paper: 100,000).",
      check=configuration.positive_int)
  seed: int = configuration.setting(0, "Seed of the melody sampler.")
  batch_size: int = configuration.setting(
      generate.DEFAULT_BATCH_SIZE, "Melodies sampled per graph call.",
      check=configuration.positive_int)
  num_notes: int = configuration.setting(
      32, "Notes per melody.",
      check=configuration.at_least(8))
  num_samples: int = configuration.setting(
      5, "MIDI / WAV / piano roll per model.",
      check=configuration.at_least(0))
  token_reading: Optional[str] = configuration.setting(
      None, "How the statistics read tokens 0/1 (default: each tuned model's"
      " run setting, and theirs for the Note RNN row).",
      choices=reading_lib.READINGS)
  prime_all_classes: bool = configuration.setting(
      False, "Draw the primer note from all 38 classes (the original draws "
      "0..36).")
  objective_c: Optional[float] = configuration.setting(
      None, "c of the KL-regularised objective E[sum r_MT/c + log p - log "
      "pi] (default: each tuned model's run's c, the Note RNN the c they "
      "share; else 0.5).",
      check=configuration.optional(configuration.positive))
  beyond_rules: bool = configuration.setting(
      True, "Also measure every model against real held-out melodies with "
      "metrics no reward optimises (beyond_rules.json / .md; "
      "rl_tuner_tf/evaluation/beyond_rules.py).")
  reference_tfrecord_dir: Optional[str] = configuration.setting(
      None, "Corpus (TFRecords) whose validation melodies are the real "
      "reference (default: the one the Note RNN's provenance names, else the"
      " embedded corpus, built when missing).")
  reward_model_dir: Optional[str] = configuration.setting(
      None, "A reward model (the model/ folder train_reward_model writes): "
      "every model's melodies also get its mean score r_RM with a 95 % CI "
      "(table1.json r_rm, a Table 1 row). Default: the reward model the "
      "tuned models were trained with, when they name one and the same.")
  force: bool = configuration.setting(
      False, "Sample and score every model again, even those whose results "
      "in the output directory were computed from the same model files, "
      "settings and statistics code (those are reused by default).")


def find_tuned_models(run_dir: str) -> List[str]:
  """Folders holding tuned.json, up to three levels below run_dir
  (<run>/<algorithm>/model, and <run>/<grid point>/<algorithm>/model)."""
  found = []
  for pattern in ("*", os.path.join("*", "*"), os.path.join("*", "*", "*")):
    found += glob.glob(os.path.join(run_dir, pattern,
                                    melody_policy.TUNED_CONFIG))
  return sorted({os.path.dirname(p) for p in found})


def model_name(algorithm: str, model_dir: str,
               run_dir: Optional[str] = None) -> str:
  """'q' for <run>/q/model; 'q_c2-seed3' for <run>/c2-seed3/q/model."""
  if run_dir is not None:
    parts = os.path.relpath(os.path.dirname(os.path.normpath(model_dir)),
                            run_dir).split(os.sep)
    if len(parts) == 2 and parts[1] == algorithm:
      return f"{algorithm}_{parts[0]}"
  return algorithm


def load_models(note_rnn_checkpoint: Optional[str],
                tuned_model_dirs: Sequence[str],
                run_dir: Optional[str] = None) -> List[LoadedModel]:
  """-> [(name, kind, q_network or None, reward_rnn, settings)], validated up
  front; settings: the run's config from tuned.json ({} for the Note RNN)."""
  for model_dir in tuned_model_dirs:
    if not os.path.exists(os.path.join(model_dir, melody_policy.TUNED_CONFIG)):
      raise ConfigError("tuned_model_dirs", f"{model_dir!r} is not a tuned "
                        f"model ({melody_policy.TUNED_CONFIG} missing)")
  if note_rnn_checkpoint and not os.path.exists(
      os.path.join(note_rnn_checkpoint, note_rnn.CONFIG_FILENAME)):
    raise ConfigError(
        "note_rnn_checkpoint", f"no Note RNN checkpoint in "
        f"{note_rnn_checkpoint!r} (pass --note_rnn_checkpoint= to skip the "
        "Note RNN row)")
  models = []
  if note_rnn_checkpoint:
    try:
      models.append(("note_rnn", "note_rnn", None,
                     note_rnn.load(note_rnn_checkpoint), {}))
    except note_rnn.CheckpointMismatchError as e:  # damaged files, too
      raise ConfigError("note_rnn_checkpoint", str(e)) from None
  names = {m[0] for m in models}
  for model_dir in tuned_model_dirs:
    try:
      algorithm, q_network, reward_rnn, tuned = melody_policy.load_tuned(
          model_dir)
    except note_rnn.CheckpointMismatchError as e:  # damaged files, too
      raise ConfigError("tuned_model_dirs", str(e)) from None
    name = model_name(algorithm, model_dir, run_dir)
    if name in names:
      name = f"{algorithm}_{os.path.basename(os.path.normpath(model_dir))}"
    names.add(name)
    models.append((name, algorithm, q_network, reward_rnn,
                   tuned.get("config", {})))
  if not models:
    raise ConfigError("note_rnn_checkpoint", "nothing to evaluate: give "
                      "--note_rnn_checkpoint, --tuned_model_dirs or --run_dir")
  return models


def common_token_reading(models: Sequence[LoadedModel]) -> str:
  """The token reading of the tuned models (the Note RNN row is read the
  same way); "paper" when there are none. Mixed readings are an error."""
  readings = {m[4].get("token_reading", "paper") for m in models if m[4]}
  if len(readings) > 1:
    raise ConfigError("token_reading", f"the tuned models were trained with "
                      f"different token readings {sorted(readings)}; evaluate"
                      " them apart or give --token_reading")
  return readings.pop() if readings else "paper"


def run_c(tuned_model_dir: str) -> Optional[float]:
  """The c a tuned model was trained with (tuned.json), or None."""
  with open(os.path.join(tuned_model_dir, melody_policy.TUNED_CONFIG)) as f:
    c = (json.load(f).get("config") or {}).get("c")
  return float(c) if isinstance(c, (int, float)) else None


def objective_cs(note_rnn_checkpoint: Optional[str],
                 tuned_model_dirs: Sequence[str],
                 objective_c: Optional[float] = None) -> List[float]:
  """[c per model of load_models(...)], in its order: objective_c if given,
  else each tuned model's own c, the Note RNN the c its tuned models share,
  else objective.DEFAULT_C."""
  if objective_c is not None:
    n = len(tuned_model_dirs) + (1 if note_rnn_checkpoint else 0)
    return [float(objective_c)] * n
  tuned = [run_c(d) for d in tuned_model_dirs]
  shared = {c for c in tuned if c is not None}
  note = shared.pop() if len(shared) == 1 else objective.DEFAULT_C
  tuned = [objective.DEFAULT_C if c is None else c for c in tuned]
  return ([note] if note_rnn_checkpoint else []) + tuned


def _hash_files(paths, root=None):
  digest = hashlib.sha256()
  for path in sorted(paths):
    digest.update(os.path.relpath(path, root or "/").encode() + b"\0")
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
  return digest.hexdigest()


def model_fingerprint(directory: str) -> str:
  """sha256 of every file under a model or checkpoint directory (names and
  contents): two directories with the same files give the same value."""
  paths = [os.path.join(d, n) for d, _, names in os.walk(directory)
           for n in names if not n.startswith(".")]
  return _hash_files(paths, root=directory)


def statistics_code_fingerprint() -> str:
  """sha256 of the code that turns a model into its results (sampling,
  Table 1, the objective, the rules): results computed by other code are not
  reused."""
  here = os.path.dirname(os.path.abspath(__file__))
  rewards = os.path.join(os.path.dirname(here), "rewards")
  paths = [os.path.join(here, n) for n in ("generate.py", "table1.py",
                                           "objective.py")]
  paths += glob.glob(os.path.join(rewards, "*.py"))
  return _hash_files(paths, root=os.path.dirname(here))


def _from_json(value):
  """table1.json -> stats as compute_table1 gives them (null -> NaN)."""
  if isinstance(value, dict):
    return {k: _from_json(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_from_json(v) for v in value]
  return float("nan") if value is None else value


def _reusable(model_dir, key, num_samples):
  """The stats saved in model_dir when they were computed with ``key`` and
  every output is there; else None."""
  wanted = ["melodies.npy", "log_p.npy"] + (["samples"] if num_samples else [])
  if not all(os.path.exists(os.path.join(model_dir, n)) for n in wanted):
    return None
  try:
    with open(os.path.join(model_dir, "table1.json")) as f:
      saved = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(saved, dict) or saved.get("evaluation_key") != key:
    return None
  return _from_json(saved)


def evaluate_models(
    models: Sequence[LoadedModel], output_dir: str, num_melodies: int = 100000,
    seed: int = 0, batch_size: int = generate.DEFAULT_BATCH_SIZE,
    num_notes: int = 32, num_samples: int = 5,
    prime_all_classes: bool = False, token_reading: Optional[str] = None,
    log: Callable[[str], Any] = print,
    objective_c: Optional[Union[float, Sequence[float]]] = None,
    fingerprints: Optional[Sequence[Optional[str]]] = None,
    reuse: bool = True, reward_model_dir: Optional[str] = None
) -> Dict[str, Dict[str, Any]]:
  """Generates, scores and writes each model; returns {name: stats}.

  token_reading: how the rules read tokens 0/1 for every model; None: each
  tuned model's own (from its run's settings), and theirs for the Note RNN.
  objective_c: c of the KL-regularised objective: one number, or a list
  (one per model); None: objective.DEFAULT_C.
  fingerprints: one per model (model_fingerprint of its files), or None;
  each model's results record their evaluation_key (its fingerprint, the
  settings, the statistics code), and with ``reuse`` a model whose saved
  results carry the same key is not sampled again.
  reward_model_dir: a saved reward model; each model's stats get ``r_rm``,
  its mean score of the model's melodies with a 95 % CI half-width.
  """
  if token_reading is not None:
    reading_lib.check_reading(token_reading)
  default_reading = token_reading or common_token_reading(models)
  if objective_c is None or isinstance(objective_c, (int, float)):
    objective_c = [objective_c or objective.DEFAULT_C] * len(models)
  if fingerprints is None:
    fingerprints = [None] * len(models)
  code = statistics_code_fingerprint() if any(fingerprints) else None
  scorer = reward_model.load(reward_model_dir) if reward_model_dir else None
  # r_RM's model counts in the reuse key by its files
  reward_model_key = model_fingerprint(reward_model_dir) if reward_model_dir else None
  results = {}
  for (name, kind, q_network, reward_rnn, settings), c, fingerprint in zip(
      models, objective_c, fingerprints):
    reading = token_reading or settings.get("token_reading", default_reading)
    model_dir = os.path.join(output_dir, name)
    key = None
    if fingerprint:
      key = {"model_files": fingerprint, "statistics_code": code,
             "kind": kind, "num_melodies": int(num_melodies),
             "seed": int(seed), "batch_size": int(batch_size),
             "num_notes": int(num_notes),
             "prime_all_classes": bool(prime_all_classes),
             "token_reading": reading, "objective_c": float(c),
             "num_samples": int(num_samples)}
      if reward_model_key is not None:
        key["reward_model"] = reward_model_key
      saved = _reusable(model_dir, key, num_samples) if reuse else None
      if saved is not None:
        log(f"{name}: results reused from {model_dir} (same model files, "
            "settings and statistics code)")
        results[name] = saved
        continue
    os.makedirs(model_dir, exist_ok=True)
    log(f"{name}: sampling {num_melodies} melodies of {num_notes} notes")
    start = time.time()
    tokens, log_p, log_pi = generate.generate_melodies(
        kind, q_network, reward_rnn, num_melodies, seed, num_notes=num_notes,
        batch_size=batch_size, prime_all_classes=prime_all_classes,
        return_log_pi=True)
    generated = time.time()
    stats = table1.compute_table1(tokens, log_p, token_reading=reading)
    stats["kl_objective"] = objective.kl_objective(tokens, log_p, log_pi, c,
                                                   token_reading=reading)
    if scorer is not None:
      mean, ci95 = beyond_rules.mean_ci(
          reward_model.score_in_batches(scorer, tokens, batch_size=4096))
      stats["r_rm"] = dict(mean=mean, ci95=ci95,
                           reward_model=os.path.abspath(reward_model_dir))
    scored = time.time()
    stats.update({"model": name, "kind": kind, "seed": seed,
                  "run_settings": {k: settings[k] for k in seeds.RUN_KEYS
                                   if k in settings},
                  "prime_all_classes": bool(prime_all_classes),
                  "generation_seconds": round(generated - start, 2),
                  "statistics_seconds": round(scored - generated, 2)})
    if key is not None:
      stats["evaluation_key"] = key
    atomic_files.save_npy(os.path.join(model_dir, "melodies.npy"), tokens)
    atomic_files.save_npy(os.path.join(model_dir, "log_p.npy"), log_p)
    atomic_files.write_json(os.path.join(model_dir, "table1.json"),
                            table1.to_json_ready(stats))
    if num_samples > 0:
      with atomic_files.replace_dir(os.path.join(model_dir, "samples")) as tmp:
        samples.write_samples(tokens, tmp, num_samples=num_samples,
                              prefix=name, title=name)
    message = (f"{name}: {num_melodies} melodies sampled in "
               f"{generated - start:.1f} s, Table 1 in {scored - generated:.1f} s")
    log(message)
    results[name] = stats
  atomic_files.write_text(os.path.join(output_dir, "table1.md"),
                          table1.markdown_table(results))
  seeds.write_summaries(results, output_dir)
  if num_samples > 0:  # one melody of each model, stacked (pianorolls.png)
    report.write_piano_rolls(output_dir, results)
  return results


BEYOND_RULES = "beyond_rules.json"
BEYOND_RULES_FLOOR = "beyond_rules_floor.json"


def _beyond_rules_code():
  here = os.path.dirname(os.path.abspath(__file__))
  return _hash_files([os.path.join(here, n) for n in
                      ("beyond_rules.py", "reference.py")], root=here)


def measure_beyond_rules(
    results: Mapping[str, Mapping[str, Any]], output_dir: str,
    reference_dir: str, model_rnn: note_rnn.NoteRNN, num_notes: int = 32,
    seed: int = 0, log: Callable[[str], Any] = print, reuse: bool = True
) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:
  """Each evaluated model's melodies against real held-out ones
  (beyond_rules.py): <output_dir>/<model>/beyond_rules.json, the floor
  <output_dir>/beyond_rules_floor.json, beyond_rules.md (mean +- 95 % CI
  over seeds), beyond_rules.png (Yang & Lerch densities) and
  beyond_rules_vs_rules.png (r_MT against distance from real melodies, a
  point per model). A model's file is reused when its melodies, the
  reference corpus, the Note RNN of the Frechet distance, the seed and the
  code are the same."""
  start = time.time()
  reference = reference_lib.load(reference_dir, num_notes, seed=seed)
  with open(os.path.join(reference_dir, "manifest.json"), "rb") as f:
    corpus = hashlib.sha256(f.read()).hexdigest()
  weights = hashlib.sha256()
  for w in model_rnn.get_weights():  # the space of the Frechet distance
    weights.update(np.ascontiguousarray(w).tobytes())
  base = {"reference_manifest": corpus, "code": _beyond_rules_code(),
          "feature_rnn": weights.hexdigest(), "seed": int(seed),
          "num_notes": int(num_notes)}
  log(f"beyond the rules: {len(reference.a)} + {len(reference.b)} held-out "
      f"windows of {num_notes} steps from {reference_dir}")
  floor = beyond_rules.measure(reference.a, reference, model_rnn, seed=seed)
  floor.update(key=base, reference_tfrecord_dir=reference_dir)
  atomic_files.write_json(os.path.join(output_dir, BEYOND_RULES_FLOOR),
                          table1.to_json_ready(floor))
  measured, groups, firsts = {}, {}, {}
  for name, stats in results.items():
    model_dir = os.path.join(output_dir, name)
    tokens = np.load(os.path.join(model_dir, "melodies.npy"))
    key = dict(base, melodies=hashlib.sha256(tokens.tobytes()).hexdigest())
    path = os.path.join(model_dir, BEYOND_RULES)
    metrics = None
    if reuse and os.path.exists(path):
      with open(path) as f:
        saved = json.load(f)
      if saved.get("key") == key:
        metrics = _from_json(saved)
    if metrics is None:
      metrics = beyond_rules.measure(tokens, reference, model_rnn, seed=seed)
      metrics.update(key=key, model=name)
      atomic_files.write_json(path, table1.to_json_ready(metrics))
    measured[name] = metrics
    group, _ = seeds.group_and_seed(name, stats)
    groups.setdefault(group, []).append(metrics)
    firsts.setdefault(group, metrics)
  atomic_files.write_text(
      os.path.join(output_dir, "beyond_rules.md"),
      beyond_rules.markdown_table(floor, seeds.ordered(groups)))
  with atomic_files.open_atomic(os.path.join(output_dir, "beyond_rules.png"),
                                "wb") as f:
    beyond_rules.plot_densities(floor, firsts, f)
  with atomic_files.open_atomic(
      os.path.join(output_dir, "beyond_rules_vs_rules.png"), "wb") as f:
    beyond_rules.plot_rules_against_realism(
        _realism_points(results, measured), floor, f)
  log(f"beyond the rules: {len(measured)} model(s) in "
      f"{time.time() - start:.1f} s -> {output_dir}/beyond_rules.md")
  return floor, measured


def _realism_points(results, measured):
  """plot_rules_against_realism's points: one per model group (its seeds),
  in Table 1's order of kinds, each kind's points by c."""
  grouped = {}
  for name, stats in results.items():
    group, _ = seeds.group_and_seed(name, stats)
    kind = stats.get("kind", name)
    entry = grouped.setdefault(group, {
        "kind": kind, "label": group[len(kind):].lstrip("_"),
        "c": stats.get("run_settings", {}).get("c") or 0.0,
        "r_mt": [], "metrics": {}})
    entry["r_mt"].append(stats.get("mean_r_mt"))
    for key, value in measured[name].items():
      if isinstance(value, (int, float)):
        entry["metrics"].setdefault(key, []).append(value)
  kinds = list(seeds.ordered({e["kind"]: None for e in grouped.values()}))
  entries = sorted(grouped.values(),
                   key=lambda e: (kinds.index(e["kind"]), e["c"], e["label"]))
  return [(e["kind"], e["label"], e["r_mt"], e["metrics"]) for e in entries]


def trained_reward_model(models: Sequence[LoadedModel]) -> Optional[str]:
  """The reward model the tuned models were trained with (their runs'
  reward_model_dir), when they name one and the same; else None."""
  named = {settings.get("reward_model_dir") for _, _, _, _, settings in models
           if settings.get("reward_model_dir")}
  return named.pop() if len(named) == 1 else None


def run(config: EvaluationConfig, log: Callable[[str], Any] = print
        ) -> Tuple[Dict[str, Dict[str, Any]], str, str]:
  """The whole job -> (results {model: stats}, output_dir, report path).

  config.beyond_rules: also measure every model against real held-out
  melodies (measure_beyond_rules), those of reference_tfrecord_dir; None:
  the corpus the Note RNN was trained on (its provenance), else the embedded
  corpus, built when missing.

  config.run_dir: a training run; when tuned_model_dirs is empty every tuned
  model in it is evaluated, output_dir defaults to <run_dir>/evaluation and
  the report (with the run's Figure 2) goes to <run_dir>/report.html.
  config.force: sample every model again, even where results computed from
  the same files and settings are already in output_dir.
  """
  run_dir = config.run_dir
  if run_dir is not None and not os.path.isdir(run_dir):
    raise ConfigError("run_dir", f"{run_dir!r} is not a directory")
  note_rnn_checkpoint = config.note_rnn_checkpoint
  tuned_model_dirs = config.tuned_model_dirs
  tuned = list(tuned_model_dirs)
  if run_dir is not None and not tuned:
    tuned = find_tuned_models(run_dir)
  output_dir = config.output_dir or (
      os.path.join(run_dir, "evaluation") if run_dir
      else os.path.join("runs", "evaluation"))
  models = load_models(note_rnn_checkpoint, tuned, run_dir=run_dir)
  fingerprints = [model_fingerprint(d) for d in
                  ([note_rnn_checkpoint] if note_rnn_checkpoint else []) +
                  tuned]
  reward_model_dir = config.reward_model_dir or trained_reward_model(models)
  with run_lock.hold(output_dir, log=log):  # one evaluation per output_dir
    results = evaluate_models(
        models, output_dir, num_melodies=config.num_melodies,
        seed=config.seed, batch_size=config.batch_size,
        num_notes=config.num_notes, num_samples=config.num_samples,
        prime_all_classes=config.prime_all_classes,
        token_reading=config.token_reading, log=log,
        objective_c=objective_cs(note_rnn_checkpoint, tuned,
                                 config.objective_c),
        fingerprints=fingerprints, reuse=not config.force,
        reward_model_dir=reward_model_dir)
    if config.beyond_rules:
      reference_dir = (config.reference_tfrecord_dir or
                       reference_lib.default_tfrecord_dir(note_rnn_checkpoint,
                                                          log=log))
      measure_beyond_rules(results, output_dir, reference_dir, models[0][3],
                           num_notes=config.num_notes, seed=config.seed,
                           log=log, reuse=not config.force)
    report_path = report.write_report(run_dir or output_dir,
                                      eval_dir=output_dir)
  return results, output_dir, report_path
