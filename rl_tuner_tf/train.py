r"""Tunes the Note RNN with RL: ``python -m rl_tuner_tf.train``.

    python -m rl_tuner_tf.train --algorithm=q,psi,g,rl_only \
        --output_dir=runs/paper

For each algorithm, in ``<output_dir>/<algorithm>/``:
  checkpoints/      the latest state of the run (networks, optimizer,
                    environment, replay buffer, counters); rerunning the same
                    command resumes from it -- also after kill -9
  tensorboard/      loss, mean log p, mean r_MT, each rule's mean reward,
                    exploration rate, notes/s
  figure2.csv       step,mean_log_p,mean_r_mt of 100 melodies sampled from the
                    current policy every --figure2_every_notes (Figure 2)
  model/            the tuned model (melody_policy.save_tuned)
  config.json       the settings of the run (a resume must match them)
and, when every algorithm is done, the evaluation report.

Defaults are the paper's (c 0.5, gamma 0.5, eta 0.01, minibatch 32 every 5
notes, replay 100,000, epsilon 1.0 -> 0.1 over 500,000 of 1,000,000 notes).
The original code's values: --c=10 (its reward_scaler 0.1), --gamma=0.95
(its library default). --minibatches_per_update=1 is the paper's exact
update schedule; the default 8 takes the same transitions in 8x fewer,
8x larger updates (see rl_tuner_tf/tuning.py).
"""
import csv
import dataclasses
import datetime
import hashlib
import json
import math
import os
import subprocess
import sys
import time

from absl import app
from absl import logging
from absl import flags

from rl_tuner_tf import keras_setup  # noqa: F401
import numpy as np
import tensorflow as tf

from data_pipeline import atomic_files
from data_pipeline import run_lock
from rl_tuner_tf import checkpointing
from rl_tuner_tf import melody_environment
from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn
from rl_tuner_tf import tuning
from rl_tuner_tf.agents import targets

FLAGS = flags.FLAGS
_DEFAULTS = tuning.TuningConfig()

flags.DEFINE_list("algorithm", ["q"],
                  "Algorithms to tune, comma-separated: q, psi, g, rl_only.")
flags.DEFINE_integer("num_notes", _DEFAULTS.num_notes,
                     "Notes composed (training steps) per algorithm.")
flags.DEFINE_float("c", _DEFAULTS.c,
                   "Eq. 3's c: r = log p(a|s) + r_MT/c. The original's "
                   "reward_scaler 0.1 is c = 10.")
flags.DEFINE_float("gamma", _DEFAULTS.gamma,
                   "Discount (paper 0.5; the original library default 0.95).")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate,
                   "Adam learning rate for one paper-sized minibatch.")
flags.DEFINE_float("lr_multiplier", None,
                   "Learning-rate multiplier for merged updates "
                   "(default sqrt(minibatches_per_update)).")
flags.DEFINE_float("target_update_rate", _DEFAULTS.target_update_rate,
                   "Soft target update eta per paper minibatch.")
flags.DEFINE_integer("minibatch_size", _DEFAULTS.minibatch_size,
                     "Transitions per paper minibatch.")
flags.DEFINE_integer("train_every_n_notes", _DEFAULTS.train_every_n_notes,
                     "One paper minibatch per this many notes.")
flags.DEFINE_integer("minibatches_per_update", _DEFAULTS.minibatches_per_update,
                     "Paper minibatches merged into one gradient update "
                     "(1 = the paper's exact schedule).")
flags.DEFINE_integer("replay_capacity", _DEFAULTS.replay_capacity,
                     "Replay memory size in transitions.")
flags.DEFINE_float("gradient_clip_norm", _DEFAULTS.gradient_clip_norm,
                   "Each gradient is clipped to this norm (0: off).")
flags.DEFINE_enum("exploration", _DEFAULTS.exploration,
                  ["egreedy", "boltzmann"], "Exploration mode.")
flags.DEFINE_integer("exploration_period", None,
                     "Notes over which epsilon anneals (default num_notes/2).")
flags.DEFINE_float("epsilon_start", _DEFAULTS.epsilon_start, "Initial epsilon.")
flags.DEFINE_float("epsilon_end", _DEFAULTS.epsilon_end, "Final epsilon.")
flags.DEFINE_float("boltzmann_temperature", _DEFAULTS.boltzmann_temperature,
                   "Softmax temperature of Boltzmann exploration.")
flags.DEFINE_integer("num_compositions", _DEFAULTS.num_compositions,
                     "Compositions composed in parallel.")
flags.DEFINE_integer("num_notes_in_melody", _DEFAULTS.num_notes_in_melody,
                     "Steps per composition.")
flags.DEFINE_integer("random_note_max", _DEFAULTS.random_note_max,
                     "Random priming note drawn from 0..this (36 as the "
                     "original; 37 for every class).")
flags.DEFINE_float("terminal_discount", _DEFAULTS.terminal_discount,
                   "Discount at a composition's last note (1: bootstrap "
                   "through it, as the original).")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed.")
flags.DEFINE_string("note_rnn_checkpoint", note_rnn.SHIPPED_CHECKPOINT_DIR,
                    "Note RNN checkpoint directory (default: the shipped one).")
flags.DEFINE_string("primer_midi", None,
                    "Prime every composition with this MIDI file's first "
                    "melody instead of a random note.")
flags.DEFINE_list("primer_melody", None,
                  "Prime with these tokens (comma-separated classes 0..37).")
flags.DEFINE_bool("primer_corpus", False,
                  "Prime each composition with a random training melody's "
                  "first --primer_length notes (the original's random_midi "
                  "mode), drawn in the graph from a pool of "
                  "--primer_pool_size of them.")
flags.DEFINE_string("primer_tfrecord_dir", None,
                    "Melody TFRecords of --primer_corpus (default: the "
                    "embedded corpus, built when missing).")
flags.DEFINE_integer("primer_length", 16,
                     "Notes of each --primer_corpus primer (16 = one bar).")
flags.DEFINE_integer("primer_pool_size", 2000,
                     "Training melodies in the --primer_corpus pool.")
flags.DEFINE_string("output_dir", None,
                    "Run directory (default runs/tune_<algorithms>_seed<seed>"
                    "; an existing run there is resumed).")
flags.DEFINE_integer("checkpoint_every_notes", None,
                     "Checkpoint period in notes (default num_notes/10).")
flags.DEFINE_integer("figure2_every_notes", None,
                     "Figure 2 sampling period in notes (default num_notes/10,"
                     " the reference's 100,000 of 1,000,000).")
flags.DEFINE_integer("figure2_melodies", 100,
                     "Melodies sampled per Figure 2 point.")
flags.DEFINE_integer("log_every_notes", None,
                     "Progress line period in notes (default num_notes/50).")
flags.DEFINE_integer("report_melodies", 10000,
                     "Melodies per model for the final evaluation report.")
flags.DEFINE_bool("report", True,
                  "Write the evaluation report when all algorithms are done.")

# Settings whose change would make a resumed run a different run.
_RESUME_KEYS = [f.name for f in dataclasses.fields(tuning.TuningConfig)
                if f.name != "algorithm"] + ["note_rnn_checkpoint", "primer"]


class NonFiniteLossError(RuntimeError):
  pass


def config_from_flags(algorithm):
  values = {f.name: getattr(FLAGS, f.name)
            for f in dataclasses.fields(tuning.TuningConfig)
            if f.name != "algorithm"}
  return tuning.TuningConfig(algorithm=algorithm, **values)


def _round_up(value, multiple):
  return max(multiple, int(math.ceil(value / multiple)) * multiple)


def periods(config):
  """(log, checkpoint, figure2) periods in notes, multiples of an iteration."""
  b = config.num_compositions
  default = {"log": config.num_notes // 50, "checkpoint": config.num_notes // 10,
             "figure2": config.num_notes // 10}
  chosen = {"log": FLAGS.log_every_notes,
            "checkpoint": FLAGS.checkpoint_every_notes,
            "figure2": FLAGS.figure2_every_notes}
  out = {}
  for name in ("log", "checkpoint", "figure2"):
    value = chosen[name]
    if value is not None and value <= 0:
      raise tuning.ConfigError(f"{name}_every_notes", f"must be > 0 (got {value})")
    out[name] = _round_up(value if value is not None else default[name], b)
  return out


def load_primer(log=print):
  """-> None, a primer melody (tokens) or a pool of primers ([N, K] array)."""
  given = [f for f in ("primer_corpus", "primer_midi", "primer_melody")
           if FLAGS[f].value]
  if len(given) > 1:
    raise tuning.ConfigError(
        given[0], f"give only one of --{', --'.join(given)}")
  if not FLAGS.primer_corpus:
    for name in ("primer_tfrecord_dir", "primer_length", "primer_pool_size"):
      if not FLAGS[name].using_default_value:
        raise tuning.ConfigError(name, "is only used with --primer_corpus")
  if FLAGS.primer_corpus:
    return load_corpus_primers(log)
  if FLAGS.primer_melody:
    try:
      tokens = [int(t) for t in FLAGS.primer_melody]
    except ValueError as e:
      raise tuning.ConfigError("primer_melody",
                               f"tokens must be integers: {e}") from e
    if not tokens or min(tokens) < 0 or max(tokens) > 37:
      raise tuning.ConfigError("primer_melody",
                               f"tokens must be classes 0..37, got {tokens}")
    return tokens
  if FLAGS.primer_midi:
    from data_pipeline import convert  # pylint: disable=g-import-not-at-top
    if not os.path.isfile(FLAGS.primer_midi):
      raise tuning.ConfigError("primer_midi",
                               f"no such file {FLAGS.primer_midi!r}")
    try:
      melodies = convert.midi_file_to_melodies(FLAGS.primer_midi)
    except convert.UnusableFileError as e:
      raise tuning.ConfigError(
          "primer_midi", f"{FLAGS.primer_midi!r} has no usable melody: {e}"
      ) from e
    return [int(t) for t in melodies[0]]
  return None


def load_corpus_primers(log=print):
  """The --primer_corpus pool: [N, primer_length] tokens."""
  from data_pipeline import corpus  # pylint: disable=g-import-not-at-top
  from data_pipeline import tfrecords  # pylint: disable=g-import-not-at-top
  for name in ("primer_length", "primer_pool_size"):
    if FLAGS[name].value < 1:
      raise tuning.ConfigError(name, f"must be >= 1 (got {FLAGS[name].value})")
  directory = FLAGS.primer_tfrecord_dir
  if directory is None:
    if not tfrecords.shard_paths(corpus.default_tfrecord_dir(), "train"):
      log("--primer_corpus: the embedded corpus is not built yet; building "
          f"it in {corpus.default_tfrecord_dir()} (a few minutes, once)")
    directory = corpus.ensure_default_corpus(log=log)
  elif not tfrecords.shard_paths(directory, "train"):
    raise tuning.ConfigError("primer_tfrecord_dir",
                             f"no train shards in {directory!r}")
  try:
    prefixes = melody_environment.corpus_primers(
        directory, FLAGS.primer_length, FLAGS.primer_pool_size)
  except ValueError as e:
    raise tuning.ConfigError("primer_length", str(e)) from e
  log(f"Priming each composition with one of {len(prefixes):,} "
      f"{FLAGS.primer_length}-note training-melody primers from {directory}")
  return prefixes


def primer_setting(primer):
  """The primer as recorded in config.json (a pool: its size and digest)."""
  if primer is None or np.ndim(primer) == 1:
    return primer
  primer = np.asarray(primer, np.int32)
  return {"pool_size": int(primer.shape[0]), "length": int(primer.shape[1]),
          "sha256": hashlib.sha256(primer.tobytes()).hexdigest()}


def default_output_dir(algorithms):
  return os.path.join("runs", f"tune_{'_'.join(algorithms)}_seed{FLAGS.seed}")


def _format_seconds(seconds):
  seconds = int(max(0, seconds))
  return str(datetime.timedelta(seconds=seconds))


def _check_resume_config(path, settings):
  """Writes config.json, or checks an existing run used the same settings."""
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    changed = {k: (previous.get(k), settings[k]) for k in _RESUME_KEYS
               if previous.get(k) != settings[k]}
    if changed:
      lines = "\n  ".join(f"--{k}: was {a!r}, now {b!r}"
                          for k, (a, b) in changed.items())
      raise tuning.ConfigError(
          "output_dir",
          f"{os.path.dirname(path)!r} holds a run with other settings; "
          f"choose another --output_dir or restore them:\n  {lines}")
    return
  atomic_files.write_json(path, settings)


def _read_figure2(path):
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return list(csv.DictReader(f))


def _write_figure2(path, rows):
  with atomic_files.open_atomic(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["step", "mean_log_p", "mean_r_mt"])
    writer.writeheader()
    writer.writerows(rows)


def figure2_point(tuner, step):
  from rl_tuner_tf.evaluation import generate  # pylint: disable=g-import-not-at-top
  mean_log_p, mean_r_mt = generate.figure2_point(
      tuner.config.algorithm, tuner.q_network, tuner.reward_rnn,
      num_melodies=FLAGS.figure2_melodies, seed=tuner.config.seed + step,
      num_notes=tuner.config.num_notes_in_melody)
  return {"step": str(step), "mean_log_p": f"{mean_log_p:.6f}",
          "mean_r_mt": f"{mean_r_mt:.6f}"}


def tune(algorithm, source_model, run_dir, primer, log=print):
  """Trains one algorithm in run_dir (resuming if it holds a checkpoint).

  Returns the directory of the saved tuned model. Raises
  run_lock.RunLockedError when another process is tuning in run_dir.
  """
  with run_lock.hold(run_dir, log=log):
    return _tune_locked(algorithm, source_model, run_dir, primer, log)


def _tune_locked(algorithm, source_model, run_dir, primer, log):
  config = config_from_flags(algorithm)
  config.validate()
  every = periods(config)
  os.makedirs(run_dir, exist_ok=True)
  settings = dataclasses.asdict(config)
  settings["note_rnn_checkpoint"] = os.path.abspath(FLAGS.note_rnn_checkpoint)
  settings["primer"] = primer_setting(primer)
  _check_resume_config(os.path.join(run_dir, "config.json"), settings)
  model_dir = os.path.join(run_dir, "model")
  if os.path.exists(os.path.join(model_dir, melody_policy.TUNED_CONFIG)):
    log(f"[{algorithm}] already tuned: {model_dir}")
    return model_dir

  tuner = tuning.Tuner(config, source_model, primer=primer)
  checkpoint_dir = os.path.join(run_dir, "checkpoints")
  manager = checkpointing.manager(tuner.checkpoint, checkpoint_dir)
  resumed = checkpointing.restore_latest(
      tuner.checkpoint, checkpoint_dir, log=log,
      check=lambda status: status.assert_consumed())
  if resumed:
    log(f"[{algorithm}] resuming from {resumed} at note "
        f"{tuner.num_notes_composed:,}")
  start_notes = tuner.num_notes_composed
  figure2_path = os.path.join(run_dir, "figure2.csv")
  # Points sampled after the checkpoint we resumed from are recomputed.
  figure2_rows = [r for r in _read_figure2(figure2_path)
                  if int(r["step"]) <= start_notes]
  if start_notes == 0:  # the untuned policy: Figure 2's first point
    figure2_rows = [figure2_point(tuner, 0)]
  _write_figure2(figure2_path, figure2_rows)
  writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))

  b = config.num_compositions
  notes = start_notes
  started = time.time()
  window = (started, notes)  # the rate is measured since the last log line
  log(f"[{algorithm}] tuning {config.num_notes:,} notes: {b} compositions in "
      f"parallel, {config.updates_per_iteration()} updates of "
      f"{config.update_batch_size()} transitions per {b} notes; "
      f"output {run_dir}")
  while notes < config.num_notes:
    next_stop = min([config.num_notes] +
                    [(notes // p + 1) * p for p in every.values()])
    iterations = (next_stop - notes) // b
    tuner.run(iterations)
    bad = tuner.nonfinite_loss
    if bad is not None:
      raise NonFiniteLossError(
          f"[{algorithm}] the training loss became {bad} near note "
          f"{tuner.num_notes_composed:,} (update {tuner.num_updates:,}); "
          f"stopping. The last good checkpoint is kept: "
          f"{manager.latest_checkpoint or 'none was written yet'}. Try a "
          "lower --learning_rate or a larger --c.")
    notes = tuner.num_notes_composed
    if notes % every["log"] == 0 or notes >= config.num_notes:
      now = time.time()
      rate = (notes - window[1]) / max(now - window[0], 1e-9)
      window = (now, notes)
      stats = tuner.read_and_reset_stats()
      eta = (config.num_notes - notes) / max(rate, 1e-9)
      log(f"[{algorithm}] notes {notes:,}/{config.num_notes:,} "
          f"({100 * notes / config.num_notes:.1f}%) | {rate:,.0f} notes/s | "
          f"updates {tuner.num_updates:,} | loss {stats.get('loss', float('nan')):.3f} | "
          f"log p {stats['log_p']:.3f} | r_MT {stats['r_mt']:.3f} | "
          + (f"epsilon {stats['epsilon']:.3f} | " if "epsilon" in stats else "")
          + f"ETA {_format_seconds(eta)}")
      with writer.as_default(step=notes):
        for key, value in stats.items():
          if key in ("notes", "updates"):
            continue
          name = {"log_p": "mean_log_p", "r_mt": "mean_r_mt",
                  "epsilon": "exploration_rate"}.get(key, key)
          if key in tuner.env.rule_names:
            name = f"rules/{key}"
          tf.summary.scalar(name, value)
        tf.summary.scalar("notes_per_second", rate)
    if notes % every["figure2"] == 0 or notes >= config.num_notes:
      row = figure2_point(tuner, notes)
      figure2_rows = [r for r in figure2_rows if int(r["step"]) != notes]
      figure2_rows.append(row)
      _write_figure2(figure2_path, figure2_rows)
      with writer.as_default(step=notes):
        tf.summary.scalar("figure2/mean_log_p", float(row["mean_log_p"]))
        tf.summary.scalar("figure2/mean_r_mt", float(row["mean_r_mt"]))
    if notes % every["checkpoint"] == 0 or notes >= config.num_notes:
      manager.save(checkpoint_number=notes)
    writer.flush()
  wall = time.time() - started
  melody_policy.save_tuned(
      model_dir, algorithm, tuner.q_network, tuner.reward_rnn,
      extra={"config": settings, "notes_composed": notes,
             "updates": tuner.num_updates,
             "wall_seconds_this_session": round(wall, 1)})
  log(f"[{algorithm}] done: {notes:,} notes, {tuner.num_updates:,} updates "
      f"in {_format_seconds(wall)} this session; model saved to {model_dir}")
  return model_dir


def evaluate_and_report(output_dir, num_melodies, seed, log=print):
  """Runs ``python -m rl_tuner_tf.evaluate --run_dir=output_dir``: Table 1 of
  the Note RNN and every tuned model, samples, and <output_dir>/report.html.
  (A subprocess, because rl_tuner_tf.evaluate defines flags of its own.)"""
  command = [sys.executable, "-m", "rl_tuner_tf.evaluate",
             f"--run_dir={output_dir}",
             f"--note_rnn_checkpoint={FLAGS.note_rnn_checkpoint}",
             f"--num_melodies={num_melodies}", f"--seed={seed}"]
  log("Evaluating: " + " ".join(command[1:]))
  result = subprocess.run(command, check=False)
  if result.returncode != 0:
    log(f"WARNING: evaluation failed (exit code {result.returncode}); the "
        "tuned models are saved, rerun the command above to retry.")
    return None
  return os.path.join(output_dir, "report.html")  # evaluate printed where


def main(argv):
  logging.set_verbosity(logging.WARNING)  # TF's INFO lines drown progress
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  algorithms = [a.strip() for a in FLAGS.algorithm if a.strip()]
  bad = [a for a in algorithms if a not in targets.ALGORITHMS]
  if not algorithms or bad:
    raise app.UsageError(
        f"--algorithm: must be a comma-separated list of "
        f"{', '.join(targets.ALGORITHMS)} (got {','.join(FLAGS.algorithm)!r})")
  try:
    for algorithm in algorithms:  # every setting, before any work starts
      config = config_from_flags(algorithm)
      config.validate()
      periods(config)
    primer = load_primer()
    source = note_rnn.load(FLAGS.note_rnn_checkpoint)
  except tuning.ConfigError as e:
    raise app.UsageError(str(e)) from e
  except (FileNotFoundError, note_rnn.CheckpointMismatchError) as e:
    raise app.UsageError(f"--note_rnn_checkpoint: {e}") from e
  output_dir = FLAGS.output_dir or default_output_dir(algorithms)
  os.makedirs(output_dir, exist_ok=True)
  try:
    for algorithm in algorithms:
      tune(algorithm, source, os.path.join(output_dir, algorithm), primer)
  except tuning.ConfigError as e:
    raise app.UsageError(str(e)) from e
  except (NonFiniteLossError, checkpointing.NoReadableCheckpointError,
          run_lock.RunLockedError, OSError, tf.errors.OpError) as e:
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(2)
  if FLAGS.report:
    evaluate_and_report(output_dir, FLAGS.report_melodies, FLAGS.seed)


if __name__ == "__main__":
  app.run(main)
