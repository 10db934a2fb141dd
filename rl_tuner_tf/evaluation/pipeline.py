"""The evaluation job behind ``python -m rl_tuner_tf.evaluate`` (kept free of
absl flags so it can be imported next to other entry points' flags).

For each model: sample N melodies from its policy, Table 1 statistics,
melodies.npy / log_p.npy / table1.json / samples/ under <output_dir>/<model>/,
then <output_dir>/table1.md and the HTML report.
"""
import glob
import os
import time

from absl import logging

from data_pipeline import atomic_files
from data_pipeline import run_lock
from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn
from rl_tuner_tf.evaluation import generate
from rl_tuner_tf.evaluation import report
from rl_tuner_tf.evaluation import samples
from rl_tuner_tf.evaluation import table1


class SettingError(ValueError):
  """A bad setting; the message names the command-line flag."""


def find_tuned_models(run_dir):
  """Folders holding tuned.json, up to two levels below run_dir."""
  found = []
  for pattern in ("*", os.path.join("*", "*")):
    found += glob.glob(os.path.join(run_dir, pattern,
                                    melody_policy.TUNED_CONFIG))
  return sorted({os.path.dirname(p) for p in found})


def check_settings(num_melodies, batch_size, num_notes, num_samples,
                   run_dir=None):
  for name, value, minimum in (("num_melodies", num_melodies, 1),
                               ("batch_size", batch_size, 1),
                               ("num_notes", num_notes, 8),
                               ("num_samples", num_samples, 0)):
    if value < minimum:
      raise SettingError(f"--{name} must be >= {minimum}, got {value}")
  if run_dir is not None and not os.path.isdir(run_dir):
    raise SettingError(f"--run_dir: {run_dir!r} is not a directory")


def load_models(note_rnn_checkpoint, tuned_model_dirs):
  """-> [(name, kind, q_network or None, reward_rnn)], validated up front."""
  for model_dir in tuned_model_dirs:
    if not os.path.exists(os.path.join(model_dir, melody_policy.TUNED_CONFIG)):
      raise SettingError(f"--tuned_model_dirs: {model_dir!r} is not a tuned "
                         f"model ({melody_policy.TUNED_CONFIG} missing)")
  if note_rnn_checkpoint and not os.path.exists(
      os.path.join(note_rnn_checkpoint, note_rnn.CONFIG_FILENAME)):
    raise SettingError(
        f"--note_rnn_checkpoint: no Note RNN checkpoint in "
        f"{note_rnn_checkpoint!r} (pass --note_rnn_checkpoint= to skip the "
        "Note RNN row)")
  models = []
  if note_rnn_checkpoint:
    try:
      models.append(("note_rnn", "note_rnn", None,
                     note_rnn.load(note_rnn_checkpoint)))
    except note_rnn.CheckpointMismatchError as e:  # damaged files, too
      raise SettingError(f"--note_rnn_checkpoint: {e}") from None
  names = {m[0] for m in models}
  for model_dir in tuned_model_dirs:
    try:
      algorithm, q_network, reward_rnn, _ = melody_policy.load_tuned(model_dir)
    except note_rnn.CheckpointMismatchError as e:  # damaged files, too
      raise SettingError(f"--tuned_model_dirs: {e}") from None
    name = algorithm
    if name in names:
      name = f"{algorithm}_{os.path.basename(os.path.normpath(model_dir))}"
    names.add(name)
    models.append((name, algorithm, q_network, reward_rnn))
  if not models:
    raise SettingError("nothing to evaluate: give --note_rnn_checkpoint, "
                       "--tuned_model_dirs or --run_dir")
  return models


def evaluate_models(models, output_dir, num_melodies=100000, seed=0,
                    batch_size=generate.DEFAULT_BATCH_SIZE, num_notes=32,
                    num_samples=5, prime_all_classes=False, log=print):
  """Generates, scores and writes each model; returns {name: stats}."""
  results = {}
  for name, kind, q_network, reward_rnn in models:
    model_dir = os.path.join(output_dir, name)
    os.makedirs(model_dir, exist_ok=True)
    start = time.time()
    tokens, log_p = generate.generate_melodies(
        kind, q_network, reward_rnn, num_melodies, seed, num_notes=num_notes,
        batch_size=batch_size, prime_all_classes=prime_all_classes)
    generated = time.time()
    stats = table1.compute_table1(tokens, log_p)
    scored = time.time()
    stats.update({"model": name, "kind": kind, "seed": seed,
                  "prime_all_classes": bool(prime_all_classes),
                  "generation_seconds": round(generated - start, 2),
                  "statistics_seconds": round(scored - generated, 2)})
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
    logging.info(message)
    log(message)
    results[name] = stats
  atomic_files.write_text(os.path.join(output_dir, "table1.md"),
                          table1.markdown_table(results))
  return results


def run(note_rnn_checkpoint=note_rnn.SHIPPED_CHECKPOINT_DIR,
        tuned_model_dirs=(), run_dir=None, output_dir=None,
        num_melodies=100000, seed=0, batch_size=generate.DEFAULT_BATCH_SIZE,
        num_notes=32, num_samples=5, prime_all_classes=False, log=print):
  """The whole job -> (results {model: stats}, output_dir, report path).

  run_dir: a training run; when tuned_model_dirs is empty every tuned model
  in it is evaluated, output_dir defaults to <run_dir>/evaluation and the
  report (with the run's Figure 2) goes to <run_dir>/report.html.
  """
  check_settings(num_melodies, batch_size, num_notes, num_samples, run_dir)
  tuned = list(tuned_model_dirs)
  if run_dir is not None and not tuned:
    tuned = find_tuned_models(run_dir)
  output_dir = output_dir or (os.path.join(run_dir, "evaluation") if run_dir
                              else os.path.join("runs", "evaluation"))
  models = load_models(note_rnn_checkpoint, tuned)
  with run_lock.hold(output_dir, log=log):  # one evaluation per output_dir
    results = evaluate_models(
        models, output_dir, num_melodies=num_melodies, seed=seed,
        batch_size=batch_size, num_notes=num_notes, num_samples=num_samples,
        prime_all_classes=prime_all_classes, log=log)
    report_path = report.write_report(run_dir or output_dir,
                                      eval_dir=output_dir)
  return results, output_dir, report_path
