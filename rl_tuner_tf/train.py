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

Defaults are the paper's (``--preset=paper``: c 0.5, gamma 0.5, eta 0.01,
one minibatch of 32 every 5 notes -- 200,000 updates --, replay 100,000,
epsilon 1.0 -> 0.1 over 500,000 of 1,000,000 notes, a fixed prior).
``--preset=magenta`` is what the original code ran (rl_tuner_tf/presets.py);
each of its differences is also a flag of its own, and flags given on the
command line override the preset. --minibatches_per_update=8 is an opt-in
speed setting that approximates the schedule with 8x fewer, 8x larger updates
(see rl_tuner_tf/tuning.py).

Seeds and grids: ``--seeds=0,1,2,3,4`` runs every algorithm once per seed;
``--c`` and ``--gamma`` take lists too. A grid is a list of independent,
resumable runs (rl_tuner_tf/grid.py), in <output_dir>/<point>/<algorithm>/
(e.g. <output_dir>/c2-seed3/q/), run one by one here, or
``--parallel_runs=N`` at once on local Ray, or on a Ray cluster with
``--ray_address``. The evaluation then gives each statistic as mean +- 95 %
confidence interval over seeds.
ppo and rloo are on-policy tuners of the same KL-regularised objective
(on_policy_tuning.py, docs/policy_gradient.md); their settings are the --pg_*
flags, --gae_lambda and --rloo_k.
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
from absl import flags

from data_pipeline import keras_setup  # noqa: F401
import numpy as np
import tensorflow as tf

from data_pipeline import atomic_files
from data_pipeline import console
from data_pipeline import run_lock
from rl_tuner_tf import checkpointing
from rl_tuner_tf import grid
from rl_tuner_tf import melody_environment
from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn
from rl_tuner_tf import presets
from rl_tuner_tf import tuning
from rl_tuner_tf.agents import targets
from rl_tuner_tf.rewards import token_reading

FLAGS = flags.FLAGS
_DEFAULTS = tuning.TuningConfig()

flags.DEFINE_list("algorithm", ["q"],
                  "Algorithms to tune, comma-separated: q, psi, g, rl_only "
                  "(off-policy, the paper's), ppo, rloo (on-policy).")
flags.DEFINE_enum("preset", presets.DEFAULT_PRESET, list(presets.PRESETS),
                  "paper: the paper's text; magenta: what the original code "
                  "ran (rl_tuner_tf/presets.py). Flags given override it.")
flags.DEFINE_integer("num_notes", _DEFAULTS.num_notes,
                     "Notes composed (training steps) per algorithm.")
flags.DEFINE_list("c", None,
                  "Eq. 3's c: r = log p(a|s) + r_MT/c (preset paper 0.5; the "
                  "original's reward_scaler 0.1 is c = 10). A list runs a "
                  "grid, e.g. 0.5,1,2,10.")
flags.DEFINE_list("gamma", None,
                  "Discount (paper and original script 0.5; the original "
                  "library default 0.95). A list runs a grid.")
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
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed (one run).")
flags.DEFINE_list("seeds", None,
                  "Seeds: every algorithm runs once per seed, e.g. 0,1,2,3,4 "
                  "(overrides --seed).")
flags.DEFINE_enum("token_reading", _DEFAULTS.token_reading,
                  list(token_reading.READINGS),
                  "How the rules read tokens 0/1: paper (0 note-off, 1 "
                  "no-event, as the Note RNN was trained) or magenta (the "
                  "original code's swapped reading).")
flags.DEFINE_bool("g_updates_prior", _DEFAULTS.g_updates_prior,
                  "G-learning's target trains the Reward RNN (the prior), as "
                  "the original code did; the paper's prior is fixed.")
flags.DEFINE_bool("boltzmann_store_argmax", _DEFAULTS.boltzmann_store_argmax,
                  "With --exploration=boltzmann, store the argmax note in "
                  "replay while the sampled note is played (the original).")
flags.DEFINE_enum("figure2_r_mt", _DEFAULTS.figure2_r_mt,
                  list(tuning.FIGURE2_R_MT),
                  "Figure 2's r_MT: mean per note, or each melody's last note "
                  "(the original's evaluation).")
flags.DEFINE_integer("parallel_runs", 1,
                     "Runs of a grid at once (> 1: on local Ray; needs "
                     "pip install -e '.[cluster]').")
flags.DEFINE_string("ray_address", None,
                    "Run the grid on this Ray cluster (auto on a node of it, "
                    "or ray://head:10001).")
flags.DEFINE_integer("pg_num_compositions", _DEFAULTS.pg_num_compositions,
                     "ppo/rloo: whole compositions composed per iteration.")
flags.DEFINE_float("pg_learning_rate", _DEFAULTS.pg_learning_rate,
                   "ppo/rloo: Adam learning rate.")
flags.DEFINE_integer("pg_epochs", _DEFAULTS.pg_epochs,
                     "ppo/rloo: passes over each batch of compositions.")
flags.DEFINE_integer("pg_minibatches", _DEFAULTS.pg_minibatches,
                     "ppo/rloo: minibatches (Adam steps) per pass.")
flags.DEFINE_float("pg_clip", _DEFAULTS.pg_clip,
                   "ppo/rloo: clip range epsilon of the probability ratio.")
flags.DEFINE_float("gae_lambda", _DEFAULTS.gae_lambda, "ppo: GAE lambda.")
flags.DEFINE_integer("rloo_k", _DEFAULTS.rloo_k,
                     "rloo: compositions per primer (leave-one-out baseline).")
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
flags.DEFINE_integer("report_melodies", 100000,
                     "Melodies per model for the final evaluation report "
                     "(the paper's 100,000).")
flags.DEFINE_bool("verbose", False,
                  "Keep the libraries' log lines (TensorFlow's C++ log, CUDA "
                  "probing, absl) and warnings on the console (default: only "
                  "this job's progress and errors; also RL_TUNER_TF_VERBOSE=1; "
                  "see data_pipeline/console.py).")
flags.DEFINE_bool("report", True,
                  "Write the evaluation report when all algorithms are done.")

# Settings whose change would make a resumed run a different run.
_RESUME_KEYS = [f.name for f in dataclasses.fields(tuning.TuningConfig)
                if f.name != "algorithm"] + ["note_rnn_checkpoint", "primer",
                                             "preset"]
# What a run started before a setting existed ran with (config.json lacks it).
_NEW_SETTING_DEFAULTS = dict(dataclasses.asdict(tuning.TuningConfig()),
                             preset=presets.DEFAULT_PRESET)
# Grid dimensions: flags that take lists; each run gets one value of each.
_GRID_FLAGS = ("c", "gamma", "seed")
# Flags a grid passes on to each of its runs (rl_tuner_tf/grid.py).
_RUN_FLAGS = ([f.name for f in dataclasses.fields(tuning.TuningConfig)
               if f.name not in ("algorithm",) + _GRID_FLAGS] +
              ["preset", "note_rnn_checkpoint", "primer_midi", "primer_melody",
               "primer_corpus", "primer_tfrecord_dir", "primer_length",
               "primer_pool_size", "checkpoint_every_notes",
               "figure2_every_notes", "figure2_melodies", "log_every_notes"])


class NonFiniteLossError(RuntimeError):
  pass


def _given(name):
  """True when flag ``name`` was set (command line or code), not defaulted."""
  return not FLAGS[name].using_default_value


def resolved_settings():
  """{TuningConfig field: value}: defaults, then --preset, then given flags.

  c, gamma and seed are the first value of their grid dimension.
  """
  fields = [f.name for f in dataclasses.fields(tuning.TuningConfig)
            if f.name != "algorithm"]
  defaults = {f.name: f.default for f in dataclasses.fields(tuning.TuningConfig)
              if f.name != "algorithm"}
  explicit = {name: getattr(FLAGS, name) for name in fields
              if name not in _GRID_FLAGS and _given(name)}
  try:
    values = presets.resolve(FLAGS.preset, explicit, defaults)
  except ValueError as e:
    raise tuning.ConfigError("preset", str(e)) from e
  values.update({name: vals[0] for name, vals in grid_values().items()})
  return values


def _values(name, parse):
  """The values of list flag ``name`` (a scalar set by code counts as one)."""
  value = FLAGS[name].value
  items = value if isinstance(value, (list, tuple)) else [value]
  try:
    parsed = [parse(str(v).strip()) for v in items if str(v).strip()]
  except ValueError as e:
    raise tuning.ConfigError(name, f"not a list of numbers: {e}") from e
  if not parsed:
    raise tuning.ConfigError(name, "give at least one value")
  return parsed


def grid_values():
  """{"c": [...], "gamma": [...], "seed": [...]}: the grid's dimensions."""
  preset = presets.PRESETS.get(FLAGS.preset, {})
  out = {}
  for name in ("c", "gamma"):
    if FLAGS[name].value is not None:
      out[name] = _values(name, float)
    else:
      out[name] = [preset.get(name, getattr(_DEFAULTS, name))]
  if FLAGS.seeds is not None:
    if _given("seed"):
      raise tuning.ConfigError("seeds", "give --seed or --seeds, not both")
    out["seed"] = _values("seeds", int)
  else:
    out["seed"] = [FLAGS.seed]
  return out


def config_from_flags(algorithm, c=None, gamma=None, seed=None):
  """The TuningConfig of one run: resolved settings at one grid point."""
  values = resolved_settings()
  for name, value in (("c", c), ("gamma", gamma), ("seed", seed)):
    if value is not None:
      values[name] = value
  return tuning.TuningConfig(algorithm=algorithm, **values)


def grid_specs(algorithms, output_dir):
  """The runs of this command (one per algorithm and grid point)."""
  values = grid_values()
  passed_on = [FLAGS[name].serialize() for name in _RUN_FLAGS if _given(name)]
  if not _given("preset"):
    passed_on.append(FLAGS["preset"].serialize())
  try:
    return grid.expand(algorithms, values["c"], values["gamma"],
                       values["seed"], output_dir, flags=passed_on)
  except grid.GridError as e:
    raise tuning.ConfigError(e.name, e.message) from e


def _round_up(value, multiple):
  return max(multiple, int(math.ceil(value / multiple)) * multiple)


def periods(config):
  """(log, checkpoint, figure2) periods in notes, multiples of an iteration."""
  b = config.notes_per_iteration()
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
  seeds = grid_values()["seed"]
  label = (f"seed{seeds[0]}" if len(seeds) == 1
           else f"seeds{'-'.join(str(s) for s in seeds)}")
  return os.path.join("runs", f"tune_{'_'.join(algorithms)}_{FLAGS.preset}_"
                      f"{label}")


def _format_seconds(seconds):
  seconds = int(max(0, seconds))
  return str(datetime.timedelta(seconds=seconds))


def _check_resume_config(path, settings):
  """Writes config.json, or checks an existing run used the same settings."""
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    # A setting newer than the run, at its default, is no change.
    known = {k: previous[k] if k in previous else _NEW_SETTING_DEFAULTS.get(k)
             for k in _RESUME_KEYS}
    changed = {k: (known[k], settings[k]) for k in _RESUME_KEYS
               if known[k] != settings[k]}
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
      num_notes=tuner.config.num_notes_in_melody,
      token_reading=tuner.config.token_reading,
      r_mt=tuner.config.figure2_r_mt)
  return {"step": str(step), "mean_log_p": f"{mean_log_p:.6f}",
          "mean_r_mt": f"{mean_r_mt:.6f}"}


def tune(algorithm, source_model, run_dir, primer, log=print, c=None,
         gamma=None, seed=None, tag=None):
  """Trains one algorithm in run_dir (resuming if it holds a checkpoint), at
  grid point (c, gamma, seed) (default: the flags' first values); ``tag``
  prefixes its log lines (default: the algorithm).

  Returns the directory of the saved tuned model. Raises
  run_lock.RunLockedError when another process is tuning in run_dir.
  """
  with run_lock.hold(run_dir, log=log):
    return _tune_locked(algorithm, source_model, run_dir, primer, log,
                        c=c, gamma=gamma, seed=seed, tag=tag or algorithm)


def _predates_saved_sampler(tuner, prefix):
  """A checkpoint written before the replay sampler's generator was saved
  (before 2026-11-29)."""
  saved = {name.split("/")[0] for name, _ in tf.train.list_variables(prefix)}
  return ("replay_generator" in tuner.checkpoint_parts
          and "replay_generator" not in saved)


def _checkpoint_for(tuner, prefix):
  """What to restore ``prefix`` into: the tuner's checkpoint, or for a
  checkpoint that predates the saved sampler, all its other parts."""
  if not _predates_saved_sampler(tuner, prefix):
    return tuner.checkpoint
  return tf.train.Checkpoint(**{k: v for k, v in tuner.checkpoint_parts.items()
                                if k != "replay_generator"})


def _check_restored(tuner, status, prefix, log, tag):
  """Every saved value restored, every object found (of those _checkpoint_for
  chose): a run from before the saved sampler goes on, with the sampler
  restarted from its seed, only when all its other parts match exactly."""
  status.assert_consumed()
  if _predates_saved_sampler(tuner, prefix):
    log(f"[{tag}] {prefix} predates the saved replay sampler: resuming with "
        "the sampler restarted from its seed (this run will not be bit-"
        "identical to an uninterrupted one).")


def _tune_locked(algorithm, source_model, run_dir, primer, log, c, gamma,
                 seed, tag):
  config = config_from_flags(algorithm, c=c, gamma=gamma, seed=seed)
  config.validate()
  every = periods(config)
  os.makedirs(run_dir, exist_ok=True)
  settings = dataclasses.asdict(config)
  settings["note_rnn_checkpoint"] = os.path.abspath(FLAGS.note_rnn_checkpoint)
  settings["primer"] = primer_setting(primer)
  settings["preset"] = FLAGS.preset
  _check_resume_config(os.path.join(run_dir, "config.json"), settings)
  model_dir = os.path.join(run_dir, "model")
  if os.path.exists(os.path.join(model_dir, melody_policy.TUNED_CONFIG)):
    log(f"[{tag}] already tuned: {model_dir}")
    return model_dir

  tuner = tuning.make_tuner(config, source_model, primer=primer)
  checkpoint_dir = os.path.join(run_dir, "checkpoints")
  manager = checkpointing.manager(tuner.checkpoint, checkpoint_dir)
  resumed = checkpointing.restore_latest(
      tuner.checkpoint, checkpoint_dir, log=log,
      check=lambda status, prefix: _check_restored(tuner, status, prefix, log,
                                                   tag),
      objects_for=lambda prefix: _checkpoint_for(tuner, prefix))
  if resumed:
    log(f"[{tag}] resuming from {resumed} at note "
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

  b = tuner.notes_per_iteration
  notes = start_notes
  started = time.time()
  window = (started, notes)  # the rate is measured since the last log line
  log(f"[{tag}] tuning {config.num_notes:,} notes: {config.schedule()}; "
      f"output {run_dir}")
  while notes < config.num_notes:
    next_stop = min([config.num_notes] +
                    [(notes // p + 1) * p for p in every.values()])
    iterations = (next_stop - notes) // b
    tuner.run(iterations)
    bad = tuner.nonfinite_loss
    if bad is not None:
      raise NonFiniteLossError(
          f"[{tag}] the training loss became {bad} near note "
          f"{tuner.num_notes_composed:,} (update {tuner.num_updates:,}); "
          f"stopping. The last good checkpoint is kept: "
          f"{manager.latest_checkpoint or 'none was written yet'}. Try a "
          "lower --learning_rate (ppo, rloo: --pg_learning_rate) or a "
          "larger --c.")
    notes = tuner.num_notes_composed
    if notes % every["log"] == 0 or notes >= config.num_notes:
      now = time.time()
      rate = (notes - window[1]) / max(now - window[0], 1e-9)
      window = (now, notes)
      stats = tuner.read_and_reset_stats()
      eta = (config.num_notes - notes) / max(rate, 1e-9)
      log(f"[{tag}] notes {notes:,}/{config.num_notes:,} "
          f"({100 * notes / config.num_notes:.1f}%) | {rate:,.0f} notes/s | "
          f"updates {tuner.num_updates:,} | loss {stats.get('loss', float('nan')):.3f} | "
          f"log p {stats['log_p']:.3f} | r_MT {stats['r_mt']:.3f} | "
          + (f"epsilon {stats['epsilon']:.3f} | " if "epsilon" in stats else "")
          + (f"objective {stats['objective']:.1f} | "
             if "objective" in stats else "")
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
  log(f"[{tag}] done: {notes:,} notes, {tuner.num_updates:,} updates "
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
  if FLAGS.verbose:
    os.environ[console.VERBOSE_ENV] = "1"  # the evaluation subprocess too
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  algorithms = [a.strip() for a in FLAGS.algorithm if a.strip()]
  bad = [a for a in algorithms if a not in targets.ALGORITHMS]
  if not algorithms or bad:
    raise app.UsageError(
        f"--algorithm: must be a comma-separated list of "
        f"{', '.join(targets.ALGORITHMS)} (got {','.join(FLAGS.algorithm)!r})")
  try:
    output_dir = FLAGS.output_dir or default_output_dir(algorithms)
    specs = grid_specs(algorithms, output_dir)
    for spec in specs:  # every setting, before any work starts
      config = config_from_flags(spec.algorithm, spec.c, spec.gamma, spec.seed)
      config.validate()
      periods(config)
    if FLAGS.parallel_runs < 1:
      raise tuning.ConfigError("parallel_runs",
                               f"must be >= 1 (got {FLAGS.parallel_runs})")
    primer = load_primer()
    source = note_rnn.load(FLAGS.note_rnn_checkpoint)
  except tuning.ConfigError as e:
    raise app.UsageError(str(e)) from e
  except (FileNotFoundError, note_rnn.CheckpointMismatchError) as e:
    raise app.UsageError(f"--note_rnn_checkpoint: {e}") from e
  os.makedirs(output_dir, exist_ok=True)
  if len(specs) > 1:
    print(f"Grid of {len(specs)} runs in {output_dir} (preset "
          f"{FLAGS.preset}): " + ", ".join(s.name for s in specs))
  started = time.time()
  if FLAGS.parallel_runs > 1 or FLAGS.ray_address:
    run_grid_on_ray(specs)
  else:
    try:
      for spec in specs:
        tune(spec.algorithm, source, spec.run_dir, primer, c=spec.c,
             gamma=spec.gamma, seed=spec.seed,
             tag=spec.name if len(specs) > 1 else None)
    except tuning.ConfigError as e:
      raise app.UsageError(str(e)) from e
    except (NonFiniteLossError, checkpointing.NoReadableCheckpointError,
            run_lock.RunLockedError, OSError, tf.errors.OpError) as e:
      print(f"ERROR: {e}", file=sys.stderr)
      sys.exit(2)
  print(f"Tuning done: {len(specs)} run(s) in "
        f"{_format_seconds(time.time() - started)}")
  if FLAGS.report:
    evaluate_and_report(output_dir, FLAGS.report_melodies,
                        grid_values()["seed"][0])


def run_grid_on_ray(specs):
  """Runs the grid's specs on local Ray (--parallel_runs) or a cluster
  (--ray_address); exits non-zero naming the runs that failed."""
  try:
    from rl_tuner_tf import grid_ray  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise app.UsageError(f"--parallel_runs / --ray_address: {e}") from e
  try:
    results = grid_ray.run_on_ray(specs, parallel_runs=FLAGS.parallel_runs,
                                  ray_address=FLAGS.ray_address)
  except grid_ray.ClusterAuthenticationError as e:
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(2)
  failed = [spec.name for spec, code in results if code != 0]
  if failed:
    print(f"ERROR: {len(failed)} run(s) failed: {', '.join(failed)}; rerun "
          "the same command to resume them.", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  console.run(main)
