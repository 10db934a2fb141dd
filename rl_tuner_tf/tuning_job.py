"""One tuning run, from configuration values to a saved tuned model.

    from rl_tuner_tf import tuning, tuning_job
    config = tuning.TuningConfig.of(algorithm="g", num_notes=40_000)
    model_dir = tuning_job.tune(config, tuning_job.RunConfig(), "runs/g")

``tune`` is what ``python -m rl_tuner_tf.train`` runs for each run of its
grid; it reads no flags. In ``run_dir`` it writes:
  config.json    every setting of the run (``TuningConfig`` and ``RunConfig``
                 in their flat form, the Note RNN, the primer, the preset);
                 a resume must have the same tuning settings
  checkpoints/   the latest state (networks, optimizer, environment, replay
                 buffer, counters): rerunning resumes from it, also after
                 kill -9. Removed once model/ is saved (a finished run is
                 not resumed), unless ``keep_checkpoints``
  tensorboard/   loss, mean log p, mean r_MT, each rule's mean reward, ...
  figure2.csv    step,mean_log_p,mean_r_mt of --figure2_melodies melodies of
                 the current policy every figure2_every_notes (Figure 2)
  model/         the tuned model (melody_policy.save_tuned)
"""
import csv
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import math
import os
import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from data_pipeline import keras_setup  # noqa: F401
import numpy as np
import tensorflow as tf

from data_pipeline import atomic_files
from data_pipeline import run_lock
from rl_tuner_tf import checkpointing
from rl_tuner_tf import configuration
from rl_tuner_tf import melody_environment
from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn
from rl_tuner_tf import rewards
from rl_tuner_tf import reward_model
from rl_tuner_tf import runner
from rl_tuner_tf import tuning

ConfigError = configuration.ConfigError
_setting = configuration.setting
Log = Callable[[str], Any]


@dataclasses.dataclass(frozen=True)
class PrimerConfig(configuration.Values):
  """How each composition starts: a random note (the default), a melody, a
  MIDI file's first melody, or training-melody prefixes."""
  PREFIX = "primer_"
  midi: Optional[str] = _setting(
      None, "Prime every composition with this MIDI file's first melody "
      "instead of a random note.")
  melody: Optional[Tuple[int, ...]] = _setting(
      None, "Prime with these tokens (comma-separated classes 0..37).",
      check=configuration.optional(
          lambda t: None if t and 0 <= min(t) and max(t) <= 37
          else "tokens must be classes 0..37"))
  corpus: bool = _setting(
      False, "Prime each composition with a random training melody's first "
      "--primer_length notes (the original's random_midi mode), drawn in the "
      "graph from a pool of --primer_pool_size of them.")
  tfrecord_dir: Optional[str] = _setting(
      None, "Melody TFRecords of --primer_corpus (default: the embedded "
      "corpus, built when missing).")
  length: int = _setting(16, "Notes of each --primer_corpus primer (16 = one"
                         " bar).", check=configuration.positive_int)
  pool_size: int = _setting(2000, "Training melodies in the --primer_corpus "
                            "pool.", check=configuration.positive_int)

  def _validate(self):
    given = [n for n, v in (("primer_corpus", self.corpus),
                            ("primer_midi", self.midi),
                            ("primer_melody", self.melody)) if v]
    if len(given) > 1:
      raise ConfigError(given[0], f"give only one of --{', --'.join(given)}")
    if not self.corpus:
      defaults = PrimerConfig.__dataclass_fields__
      for name in ("tfrecord_dir", "length", "pool_size"):
        if getattr(self, name) != defaults[name].default:
          raise ConfigError(f"primer_{name}", "is only used with "
                            "--primer_corpus")


@dataclasses.dataclass(frozen=True)
class RunConfig(configuration.Values):
  """How a run is carried out and observed (not what it learns): the Note
  RNN it starts from, its primer, and its periods in notes (each rounded up
  to a whole iteration)."""
  note_rnn_checkpoint: str = _setting(
      note_rnn.SHIPPED_CHECKPOINT_DIR,
      "Note RNN checkpoint directory (default: the shipped one).")
  primer: PrimerConfig = _setting(default_factory=PrimerConfig)
  checkpoint_every_notes: Optional[int] = _setting(
      None, "Checkpoint period in notes (default num_notes/10).",
      check=configuration.optional(configuration.positive_int))
  figure2_every_notes: Optional[int] = _setting(
      None, "Figure 2 sampling period in notes (default num_notes/10, the "
      "reference's 100,000 of 1,000,000).",
      check=configuration.optional(configuration.positive_int))
  figure2_melodies: int = _setting(100, "Melodies sampled per Figure 2 "
                                   "point.", check=configuration.positive_int)
  log_every_notes: Optional[int] = _setting(
      None, "Progress line period in notes (default num_notes/50).",
      check=configuration.optional(configuration.positive_int))
  keep_checkpoints: bool = _setting(
      False, "Keep checkpoints/ (the full state, replay buffer included) "
      "after the run finishes; by default a finished run keeps model/, "
      "config.json, figure2.csv and its logs.")


NonFiniteLossError = runner.NonFiniteLossError
# Settings whose change would make a resumed run a different run.
RESUME_KEYS = tuple(n for n in tuning.TuningConfig.setting_names()
                    if n != "algorithm") + ("note_rnn_checkpoint", "primer")
# What a run started before a setting existed ran with (config.json lacks it).
_NEW_SETTING_DEFAULTS = dict(tuning.TuningConfig().to_settings(),
                             reward_modules=[])


def _round_up(value, multiple):
  return max(multiple, int(math.ceil(value / multiple)) * multiple)


def periods(config: tuning.TuningConfig, run: RunConfig) -> Dict[str, int]:
  """{log, checkpoint, figure2}: periods in notes, multiples of an
  iteration."""
  b = config.notes_per_iteration()
  default = {"log": config.num_notes // 50, "checkpoint": config.num_notes // 10,
             "figure2": config.num_notes // 10}
  chosen = {"log": run.log_every_notes,
            "checkpoint": run.checkpoint_every_notes,
            "figure2": run.figure2_every_notes}
  return {name: _round_up(chosen[name] if chosen[name] is not None
                          else default[name], b) for name in default}


def load_primer(primer: PrimerConfig, log: Log = print
                ) -> Optional[Union[List[int], np.ndarray]]:
  """None (a random note), a primer melody (tokens) or a pool of primers
  ([N, K] array)."""
  if primer.corpus:
    return load_corpus_primers(primer, log)
  if primer.melody:
    return [int(t) for t in primer.melody]
  if primer.midi:
    from data_pipeline import convert  # pylint: disable=g-import-not-at-top
    if not os.path.isfile(primer.midi):
      raise ConfigError("primer_midi", f"no such file {primer.midi!r}")
    try:
      melodies = convert.midi_file_to_melodies(primer.midi)
    except convert.UnusableFileError as e:
      raise ConfigError("primer_midi",
                        f"{primer.midi!r} has no usable melody: {e}") from e
    return [int(t) for t in melodies[0]]
  return None


def load_corpus_primers(primer: PrimerConfig, log: Log = print) -> np.ndarray:
  """The --primer_corpus pool: [N, primer_length] tokens."""
  from data_pipeline import corpus  # pylint: disable=g-import-not-at-top
  from data_pipeline import tfrecords  # pylint: disable=g-import-not-at-top
  directory = primer.tfrecord_dir
  if directory is None:
    if not tfrecords.shard_paths(corpus.default_tfrecord_dir(), "train"):
      log("--primer_corpus: the embedded corpus is not built yet; building "
          f"it in {corpus.default_tfrecord_dir()} (a few minutes, once)")
    directory = corpus.ensure_default_corpus(log=log)
  elif not tfrecords.shard_paths(directory, "train"):
    raise ConfigError("primer_tfrecord_dir",
                      f"no train shards in {directory!r}")
  try:
    prefixes = melody_environment.corpus_primers(directory, primer.length,
                                                 primer.pool_size)
  except ValueError as e:
    raise ConfigError("primer_length", str(e)) from e
  log(f"Priming each composition with one of {len(prefixes):,} "
      f"{primer.length}-note training-melody primers from {directory}")
  return prefixes


def primer_setting(primer: Any) -> Any:
  """The primer as recorded in config.json (a pool: its size and digest)."""
  if primer is None or np.ndim(primer) == 1:
    return primer
  primer = np.asarray(primer, np.int32)
  return {"pool_size": int(primer.shape[0]), "length": int(primer.shape[1]),
          "sha256": hashlib.sha256(primer.tobytes()).hexdigest()}


def import_reward_modules(modules: Tuple[str, ...],
                          weights: Dict[str, float]) -> None:
  """Imports each module of --reward_modules (a dotted name, or a .py file),
  whose import registers its rules, then checks every weight names a rule.
  A module imported before is not imported again."""
  for module in modules:
    try:
      if module.endswith(".py"):
        name = "rl_tuner_tf_user_rules_" + hashlib.sha256(
            os.path.abspath(module).encode()).hexdigest()[:12]
        if name in sys.modules:
          continue
        spec = importlib.util.spec_from_file_location(name, module)
        if spec is None or not os.path.isfile(module):
          raise ModuleNotFoundError(f"no such file {module!r}")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        try:
          spec.loader.exec_module(loaded)
        except BaseException:
          del sys.modules[name]
          raise
      else:
        importlib.import_module(module)
    except ImportError as e:
      raise ConfigError("reward_modules",
                        f"cannot import {module!r}: {e}") from e
  try:
    rewards.resolve_weights(weights)
  except ValueError as e:
    raise ConfigError("reward_weights", str(e)) from e


def _settings_of(config, run, primer, preset):
  """What config.json records: the flat settings and what they resolved to."""
  settings = dict(config.to_settings(), **run.to_settings())
  settings["note_rnn_checkpoint"] = os.path.abspath(run.note_rnn_checkpoint)
  settings["primer"] = primer_setting(primer)
  settings["preset"] = preset
  return settings


def check_resume_config(path: str, settings: Dict[str, Any]) -> None:
  """Writes config.json, or checks an existing run used the same settings."""
  if not os.path.exists(path):
    atomic_files.write_json(path, settings)
    return
  with open(path) as f:
    previous = json.load(f)
  # A setting newer than the run, at its default, is no change.
  known = {k: previous[k] if k in previous else _NEW_SETTING_DEFAULTS.get(k)
           for k in RESUME_KEYS}
  changed = {k: (known[k], settings[k]) for k in RESUME_KEYS
             if _comparable(known[k]) != _comparable(settings[k])}
  if changed:
    lines = [f"--{k}: was {a!r}, now {b!r}" for k, (a, b) in changed.items()]
    if previous.get("preset") != settings.get("preset"):
      lines.insert(0, f"--preset: was {previous.get('preset')!r}, now "
                   f"{settings.get('preset')!r}")
    raise ConfigError(
        "output_dir",
        f"{os.path.dirname(path)!r} holds a run with other settings; choose "
        "another --output_dir or restore them:\n  " + "\n  ".join(lines))


def _comparable(value):
  """JSON's view of a value (tuples as lists)."""
  return json.loads(json.dumps(value))


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


def figure2_point(tuner: Any, step: int, num_melodies: int
                  ) -> Dict[str, str]:
  """One row of figure2.csv: the current policy's melodies, seeded by the
  step (the same at a resume)."""
  from rl_tuner_tf.evaluation import generate  # pylint: disable=g-import-not-at-top
  config = tuner.config
  mean_log_p, mean_r_mt = generate.figure2_point(
      config.algorithm, tuner.q_network, tuner.reward_rnn,
      num_melodies=num_melodies, seed=config.seed + step,
      num_notes=config.num_notes_in_melody, weights=config.reward_weights,
      token_reading=config.token_reading, r_mt=config.figure2_r_mt)
  return {"step": str(step), "mean_log_p": f"{mean_log_p:.6f}",
          "mean_r_mt": f"{mean_r_mt:.6f}"}


_LOAD = object()  # tune's primer: load it from run.primer


def tune(config: tuning.TuningConfig, run: RunConfig, run_dir: str, *,
         source_model: Optional[tf.keras.Model] = None, primer: Any = _LOAD,
         preset: Optional[str] = None, log: Log = print,
         tag: Optional[str] = None) -> str:
  """Tunes ``config.algorithm`` in ``run_dir`` (resuming from its checkpoint,
  if any); returns the directory of the saved tuned model.

  source_model: the Note RNN (default: loaded from run.note_rnn_checkpoint);
  primer: load_primer(run.primer)'s result, when the caller loaded it once
  for several runs; preset: the preset the settings came from, recorded;
  tag: prefixes the log lines (default: the algorithm).
  Raises ConfigError (a bad or changed setting), NonFiniteLossError,
  run_lock.RunLockedError (another process is tuning in run_dir).
  """
  tag = tag or config.algorithm
  import_reward_modules(config.reward_modules, config.reward_weights)
  if primer is _LOAD:
    primer = load_primer(run.primer, log)
  with run_lock.hold(run_dir, log=log):
    os.makedirs(run_dir, exist_ok=True)
    settings = _settings_of(config, run, primer, preset)
    check_resume_config(os.path.join(run_dir, "config.json"), settings)
    model_dir = os.path.join(run_dir, "model")
    if os.path.exists(os.path.join(model_dir, melody_policy.TUNED_CONFIG)):
      log(f"[{tag}] already tuned: {model_dir}")
      return model_dir
    if source_model is None:
      source_model = note_rnn.load(run.note_rnn_checkpoint)
    tuner = tuning.make_tuner(config, source_model, primer=primer,
                              reward_weights=config.reward_weights or None,
                              reward_model=_reward_model(config))
    return runner.Runner(
        _TuningJob(tuner, run, run_dir, settings, log, tag)).run()


# The progress line's statistics, in order: (key, label, digits).
_PROGRESS = (("loss", "loss", 3), ("log_p", "log p", 3), ("r_mt", "r_MT", 3),
             ("epsilon", "epsilon", 3), ("objective", "objective", 1),
             ("accuracy", "pair accuracy", 3), ("margin", "margin", 3))


def _reward_model(config: tuning.TuningConfig) -> Optional[tf.keras.Model]:
  """The reward model of r_RM (config.reward rm / r_mt+rm), else None."""
  if not config.uses_reward_model:
    return None
  try:
    return reward_model.load_model(config.reward_model_dir)
  except reward_model.RewardModelError as e:
    raise ConfigError("reward_model_dir", str(e)) from None


def _remove_tree(path: str) -> int:
  """Deletes ``path``; returns the bytes its files held."""
  size = sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)
  shutil.rmtree(path, ignore_errors=True)
  return size


def _predates_saved_sampler(tuner, prefix):
  """A checkpoint written before the replay sampler's generator was saved
  with the run (an older version of this project)."""
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


class _TuningJob:
  """One tuning run as the runner's job: units are notes composed; periods
  log, figure2 and checkpoint (in that order at a shared boundary)."""
  stop_on_signals = False  # kill -9 or not, a run resumes from its checkpoint

  def __init__(self, tuner, run, run_dir, settings, log, tag):
    self.tuner, self.run_config, self.run_dir = tuner, run, run_dir
    self.settings, self.log, self.tag = settings, log, tag
    self.config = tuner.config
    self.total = self.config.num_notes
    every = periods(self.config, run)
    self.periods = {name: every[name] for name in ("log", "figure2",
                                                     "checkpoint")}
    self.checkpoint_dir = os.path.join(run_dir, "checkpoints")
    self.manager = checkpointing.manager(tuner.checkpoint, self.checkpoint_dir)
    self.figure2_path = os.path.join(run_dir, "figure2.csv")
    self.writer = tf.summary.create_file_writer(
        os.path.join(run_dir, "tensorboard"))

  def restore(self) -> int:
    tuner, log, tag = self.tuner, self.log, self.tag
    resumed = checkpointing.restore_latest(
        tuner.checkpoint, self.checkpoint_dir, log=log,
        check=lambda status, prefix: _check_restored(tuner, status, prefix,
                                                     log, tag),
        objects_for=lambda prefix: _checkpoint_for(tuner, prefix))
    if resumed:
      log(f"[{tag}] resuming from {resumed} at note "
          f"{tuner.num_notes_composed:,}")
    start = tuner.num_notes_composed
    # Points sampled after the checkpoint we resumed from are recomputed.
    self.figure2_rows = [r for r in _read_figure2(self.figure2_path)
                         if int(r["step"]) <= start]
    if start == 0:  # the untuned policy: Figure 2's first point
      self.figure2_rows = [figure2_point(tuner, 0,
                                         self.run_config.figure2_melodies)]
    _write_figure2(self.figure2_path, self.figure2_rows)
    self.started = time.time()
    self._window = (self.started, start)  # the rate since the last log line
    log(f"[{tag}] tuning {self.total:,} notes: {self.config.schedule()}; "
        f"output {self.run_dir}")
    return start

  def advance(self, stop: int, should_stop: Callable[[], bool]) -> int:
    del should_stop  # one compiled call per period: nothing to interrupt
    notes = self.tuner.num_notes_composed
    self.tuner.run((stop - notes) // self.tuner.notes_per_iteration)
    self._check_finite()
    return self.tuner.num_notes_composed

  def at_period(self, name: str, notes: int) -> None:
    if name == "log":
      self._log_progress(notes)
    elif name == "figure2":
      self._figure2(notes)
    elif name == "checkpoint":
      self.manager.save(checkpoint_number=notes)
    self.writer.flush()

  def stop_reason(self) -> Optional[str]:
    return None

  def finish(self, notes: int, reason: str) -> str:
    del reason  # a tuning run stops only when done (or raises)
    tuner, config = self.tuner, self.config
    wall = time.time() - self.started
    model_dir = os.path.join(self.run_dir, "model")
    melody_policy.save_tuned(
        model_dir, config.algorithm, tuner.q_network, tuner.reward_rnn,
        extra={"config": self.settings, "notes_composed": notes,
               "updates": tuner.num_updates,
               "wall_seconds_this_session": round(wall, 1)})
    self.log(f"[{self.tag}] done: {notes:,} notes, {tuner.num_updates:,} "
             f"updates in {runner.format_seconds(wall)} this session; model "
             f"saved to {model_dir}")
    if not self.run_config.keep_checkpoints:
      freed = _remove_tree(self.checkpoint_dir)
      self.log(f"[{self.tag}] removed checkpoints/ ({freed / 2**20:,.1f} MiB;"
               " --keep_checkpoints keeps it)")
    return model_dir

  def _check_finite(self):
    bad = self.tuner.nonfinite_loss
    if bad is not None:
      raise NonFiniteLossError(
          f"[{self.tag}] the training loss became {bad} near note "
          f"{self.tuner.num_notes_composed:,} (update "
          f"{self.tuner.num_updates:,}); stopping. The last good checkpoint "
          f"is kept: {self.manager.latest_checkpoint or 'none was written yet'}"
          ". Try a lower --learning_rate (ppo, rloo: --pg_learning_rate) or a"
          " larger --c.")

  def _log_progress(self, notes):
    tuner, config = self.tuner, self.config
    now = time.time()
    rate = (notes - self._window[1]) / max(now - self._window[0], 1e-9)
    self._window = (now, notes)
    stats = tuner.read_and_reset_stats()
    eta = (config.num_notes - notes) / max(rate, 1e-9)
    shown = [(label, stats.get(key, float("nan")), digits)
             for key, label, digits in _PROGRESS
             if key in stats or key == "loss"]
    if "r_rm" in stats:  # per composition
      shown.append(("r_RM", stats["r_rm"] * config.num_notes_in_melody, 3))
    self.log(
        f"[{self.tag}] notes {notes:,}/{config.num_notes:,} "
        f"({100 * notes / config.num_notes:.1f}%) | {rate:,.0f} notes/s | "
        f"updates {tuner.num_updates:,} | "
        + "".join(f"{label} {value:.{digits}f} | "
                  for label, value, digits in shown)
        + f"ETA {runner.format_seconds(eta)}")
    with self.writer.as_default(step=notes):
      for key, value in stats.items():
        if key in ("notes", "updates"):
          continue
        name = {"log_p": "mean_log_p", "r_mt": "mean_r_mt",
                "epsilon": "exploration_rate"}.get(key, key)
        if key in getattr(getattr(tuner, "env", None), "rule_names", ()):
          name = f"rules/{key}"
        tf.summary.scalar(name, value)
      tf.summary.scalar("notes_per_second", rate)

  def _figure2(self, notes):
    row = figure2_point(self.tuner, notes, self.run_config.figure2_melodies)
    self.figure2_rows = [r for r in self.figure2_rows
                         if int(r["step"]) != notes] + [row]
    _write_figure2(self.figure2_path, self.figure2_rows)
    with self.writer.as_default(step=notes):
      tf.summary.scalar("figure2/mean_log_p", float(row["mean_log_p"]))
      tf.summary.scalar("figure2/mean_r_mt", float(row["mean_r_mt"]))
