r"""Trains a preference reward model (rl_tuner_tf/reward_model.py) on a file
of rated melody pairs (rl_tuner_tf/preferences.py).

    python -m rl_tuner_tf.train_reward_model --preferences=pairs.npz \
        --output_dir=runs/reward_model [--num_steps=2000 --learning_rate=1e-3]

The pairs are split by participant (no listener in both parts;
--validation_fraction of the pairs held out, --seed). The model's LSTM trunk
starts as a copy of --note_rnn_checkpoint's, its linear head at zero; Adam
minimises the Bradley-Terry loss with the Likert strength as a soft label
plus L2 on the head, on --batch_size pairs per step drawn with replacement
from (seed, step), so a resumed run draws what an uninterrupted one would.

In --output_dir:
  config.json     every setting, the Note RNN and the preference file's
                  sha256: a resume with another value of one of them is
                  refused, naming it (log_every and checkpoint_every may
                  change)
  checkpoints/    model + optimizer (+ step) every --checkpoint_every steps:
                  the same command continues after kill -9
  model/          the reward model (SavedModel ``score`` signature, Keras
                  weights, reward_model.json with config and metrics)
  calibration.png held-out calibration
  metrics.json    held-out and training metrics; written last: a run with
                  metrics.json is done (rerunning it prints them)
"""
import dataclasses
import json
import os
import shlex
import sys
import time
from typing import (TYPE_CHECKING, Any, Callable, Dict, List, Optional,
                    Tuple)

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import numpy as np
import tensorflow as tf

from data_pipeline import atomic_files
from data_pipeline import run_lock
from rl_tuner_tf import checkpointing
from rl_tuner_tf import configuration
from rl_tuner_tf import note_rnn
from rl_tuner_tf import preferences
from rl_tuner_tf import reward_model
from rl_tuner_tf import runner

if TYPE_CHECKING:
  from absl import flags

ConfigError = configuration.ConfigError
NonFiniteLossError = runner.NonFiniteLossError
Log = Callable[[str], Any]
_setting = configuration.setting

CONFIG_FILENAME = "config.json"
METRICS_FILENAME = "metrics.json"
CALIBRATION_FILENAME = "calibration.png"
MODEL_DIRNAME = "model"
CHECKPOINT_DIRNAME = "checkpoints"
# Settings that only say how the run is observed: they may change on resume.
_OBSERVATION = ("output_dir", "log_every", "checkpoint_every")


def _non_empty(value: Any) -> Optional[str]:
  return None if str(value).strip() else "must not be empty"


@dataclasses.dataclass(frozen=True)
class RewardModelConfig(configuration.Values):
  """What ``python -m rl_tuner_tf.train_reward_model`` trains (its
  flags)."""
  preferences: str = _setting(
      None, "Preference pairs: a .npz written by rl_tuner_tf.preferences."
      "save (rating 1 = A much better ... 7 = B much better).",
      check=_non_empty)
  note_rnn_checkpoint: str = _setting(
      note_rnn.SHIPPED_CHECKPOINT_DIR, "Note RNN whose LSTM weights start the"
      " reward model's trunk (default: the shipped checkpoint).",
      check=_non_empty)
  output_dir: str = _setting(
      os.path.join("runs", "reward_model"), "Where the run writes config, "
      "checkpoints, model/, metrics.json, calibration.png; rerunning with the"
      " same directory resumes.", check=_non_empty)
  num_steps: int = _setting(2000, "Training steps (Adam updates).",
                            check=configuration.positive_int)
  batch_size: int = _setting(64, "Pairs per step.",
                             check=configuration.positive_int)
  learning_rate: float = _setting(1e-3, "Adam learning rate.",
                                  check=configuration.positive)
  validation_fraction: float = _setting(
      0.2, "Fraction of the pairs held out, whole participants at a time.",
      check=lambda v: configuration.in_range(0, 1, open_low=True)(v) or (
          None if v < 1 else "must be in (0, 1)"))
  l2: float = _setting(1e-3, "L2 penalty on the head's weights "
                       "(x ||w||^2 / 2).", check=configuration.non_negative)
  seed: int = _setting(0, "Seed of the split, the batches and TensorFlow.")
  checkpoint_every: int = _setting(500, "Steps between resumable "
                                   "checkpoints.",
                                   check=configuration.positive_int)
  log_every: int = _setting(100, "Steps between progress lines (with the "
                            "held-out accuracy).",
                            check=configuration.positive_int)


# -- resume --------------------------------------------------------------------
def run_settings(config: RewardModelConfig, preferences_sha256: str
                 ) -> Dict[str, Any]:
  """What config.json records: the settings, paths made absolute, and the
  preference file's sha256 (the data, wherever the file lies)."""
  settings = config.to_settings()
  settings["preferences"] = os.path.abspath(config.preferences)
  settings["note_rnn_checkpoint"] = os.path.abspath(config.note_rnn_checkpoint)
  settings["preferences_sha256"] = preferences_sha256
  return settings


def check_resume_config(path: str, settings: Dict[str, Any]) -> None:
  """Writes config.json, or checks that the run there used the same
  settings; ConfigError naming the first changed setting (all of them in
  the message). The preference file counts by content (its sha256)."""
  if not os.path.exists(path):
    atomic_files.write_json(path, settings)
    return
  with open(path) as f:
    previous = json.load(f)
  keys = [k for k in settings if k not in _OBSERVATION + ("preferences",)]
  changed = {k: (previous.get(k), settings[k]) for k in keys
             if _comparable(previous.get(k)) != _comparable(settings[k])}
  if "preferences_sha256" in changed:
    del changed["preferences_sha256"]
    changed = dict(preferences=(
        f"{previous.get('preferences')} (sha256 "
        f"{previous.get('preferences_sha256')})",
        f"{settings['preferences']} (sha256 "
        f"{settings['preferences_sha256']})"), **changed)
  if changed:
    lines = [f"--{k}: was {a!r}, now {b!r}" for k, (a, b) in changed.items()]
    raise ConfigError(
        next(iter(changed)),
        f"{os.path.dirname(os.path.abspath(path))!r} holds a run with other "
        "settings; choose another --output_dir or restore them:\n  "
        + "\n  ".join(lines))


def _comparable(value):
  """JSON's view of a value (tuples as lists)."""
  return json.loads(json.dumps(value))


# -- training ------------------------------------------------------------------
def train(config: RewardModelConfig, log: Log = print,
          command: str = "") -> Dict[str, Any]:
  """Trains (resuming from <output_dir>/checkpoints) and writes model/,
  calibration.png and metrics.json; returns the metrics.

  Raises ConfigError naming the setting (an unreadable preference file or
  Note RNN, too few participants to split, a resume with other settings),
  run_lock.RunLockedError when another process writes output_dir,
  NonFiniteLossError when the loss turns NaN/inf.
  """
  with run_lock.hold(config.output_dir, command=command or None, log=log):
    return _train_locked(config, log)


def _train_locked(config, log):
  output_dir = config.output_dir
  try:
    pairs = preferences.load(config.preferences)
  except preferences.PreferenceFileError as e:
    raise ConfigError("preferences", str(e)) from e
  settings = run_settings(config, preferences.digest(pairs))
  check_resume_config(os.path.join(output_dir, CONFIG_FILENAME), settings)
  metrics_path = os.path.join(output_dir, METRICS_FILENAME)
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      metrics = json.load(f)
    log(f"Already trained: {output_dir} ({_summary(metrics['validation'])})")
    return metrics
  try:
    train_pairs, validation = preferences.split_by_participant(
        pairs, config.validation_fraction, config.seed)
  except ValueError as e:
    raise ConfigError("preferences", f"{config.preferences!r}: {e}") from e
  tf.keras.utils.set_random_seed(config.seed)
  try:
    source = note_rnn.load(config.note_rnn_checkpoint)
  except (FileNotFoundError, note_rnn.CheckpointMismatchError) as e:
    raise ConfigError("note_rnn_checkpoint", str(e)) from e
  model = reward_model.RewardModel.from_note_rnn(source)
  job = _RewardModelJob(config, model, train_pairs, validation, settings,
                        pairs.provenance, log)
  return runner.Runner(job).run()


def _summary(metrics):
  """'held-out accuracy 0.861 [0.82, 0.89] on 342 pairs, log loss 0.45'."""
  if metrics["accuracy"] is None:
    return "no held-out pair with a preference"
  low, high = metrics["accuracy_ci95"]
  return (f"held-out accuracy {metrics['accuracy']:.3f} [{low:.3f}, "
          f"{high:.3f}] on {metrics['pairs_with_preference']} pairs with a "
          f"preference, log loss {metrics['log_loss']:.4f}")


class _RewardModelJob:
  """The reward model's training as the runner's job: units are steps;
  periods log (with the held-out metrics) and checkpoint. A killed run
  resumes from its checkpoint (no signal handling needed)."""
  stop_on_signals = False

  def __init__(self, config, model, train_pairs, validation, settings,
               provenance, log):
    self.config, self.model, self.log = config, model, log
    self.train_pairs, self.validation = train_pairs, validation
    self.settings, self.provenance = settings, provenance
    self.total = config.num_steps
    self.periods = {"log": config.log_every,
                    "checkpoint": config.checkpoint_every}
    self.optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    self.optimizer.build(model.trainable_variables)
    self.checkpoint = tf.train.Checkpoint(model=model,
                                          optimizer=self.optimizer)
    self.checkpoint_dir = os.path.join(config.output_dir, CHECKPOINT_DIRNAME)
    self.manager = checkpointing.manager(self.checkpoint, self.checkpoint_dir)
    self.targets = train_pairs.targets()
    pair = tf.TensorSpec([None, None], tf.int32)
    self._train_step = tf.function(self._step, input_signature=[
        pair, pair, tf.TensorSpec([None], tf.float32)])
    self.pending = runner.PendingLosses()

  def _step(self, tokens_a, tokens_b, targets):
    """One Adam update on a batch; returns its Bradley-Terry loss."""
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      total, bt = reward_model.loss(self.model, tokens_a, tokens_b, targets,
                                    self.config.l2, training=True)
    grads = tape.gradient(total, variables)
    self.optimizer.apply_gradients(zip(grads, variables))
    return bt

  def batch(self, step: int) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The pairs of ``step``: batch_size indices drawn with replacement from
    a generator seeded by (seed, step) -- the same batch on resume."""
    rng = np.random.default_rng([self.config.seed, step])
    index = rng.integers(0, self.train_pairs.num_pairs,
                         self.config.batch_size)
    pairs = self.train_pairs
    return (tf.constant(pairs.tokens_a[index], tf.int32),
            tf.constant(pairs.tokens_b[index], tf.int32),
            tf.constant(self.targets[index]))

  def restore(self) -> int:
    config, log = self.config, self.log
    resumed = checkpointing.restore_latest(
        self.checkpoint, self.checkpoint_dir, log=log,
        check=lambda status, _: status.assert_existing_objects_matched())
    self.step = int(self.optimizer.iterations.numpy())
    if resumed:
      log(f"Resumed from {resumed} at step {self.step}.")
    log(f"Training a reward model {list(self.model.layer_sizes)} on "
        f"{self.train_pairs.num_pairs} pairs "
        f"({len(set(self.train_pairs.participant))} participants), "
        f"{self.validation.num_pairs} held out "
        f"({len(set(self.validation.participant))} participants): steps "
        f"{self.step} -> {config.num_steps}, batch {config.batch_size}, lr "
        f"{config.learning_rate}, l2 {config.l2}.")
    self.window = (time.time(), self.step)
    return self.step

  def advance(self, stop: int, should_stop: Callable[[], bool]) -> int:
    """Steps one by one until ``stop`` or a stop request."""
    while self.step < stop:
      self.pending.add(self._train_step(*self.batch(self.step)))
      self.step += 1
      if should_stop():
        break
    return self.step

  def at_period(self, name: str, step: int) -> None:
    if name == "log":
      self._log_progress(step)
    elif name == "checkpoint":
      self._check_losses()
      self.manager.save(checkpoint_number=step)

  def stop_reason(self) -> Optional[str]:
    return None

  def finish(self, step: int, reason: str) -> Dict[str, Any]:
    del reason  # a run stops only when done (or raises)
    self._check_losses()
    config, output_dir = self.config, self.config.output_dir
    validation = reward_model.evaluate(self.model, self.validation)
    metrics = {
        "steps": step,
        "validation": validation,
        "train": reward_model.evaluate(self.model, self.train_pairs),
        "split": {
            "train_pairs": self.train_pairs.num_pairs,
            "validation_pairs": self.validation.num_pairs,
            "train_participants": len(set(self.train_pairs.participant)),
            "validation_participants": len(set(self.validation.participant)),
            "seed": config.seed},
        "preferences": {"path": self.settings["preferences"],
                        "sha256": self.settings["preferences_sha256"],
                        "provenance": self.provenance},
    }
    model_dir = os.path.join(output_dir, MODEL_DIRNAME)
    reward_model.save(self.model, model_dir,
                      {"config": self.settings, "metrics": metrics})
    reward_model.plot_calibration(
        validation, os.path.join(output_dir, CALIBRATION_FILENAME),
        title=f"Reward model calibration (held-out, step {step})")
    atomic_files.write_json(os.path.join(output_dir, METRICS_FILENAME),
                            metrics)
    self.log(f"Done at step {step}: {_summary(validation)}; model saved to "
             f"{model_dir}")
    return metrics

  def _check_losses(self):
    return self.pending.mean(lambda mean: (
        f"the reward model's loss became {mean} before step {self.step}; "
        "stopping. The last good checkpoint is kept: "
        f"{self.manager.latest_checkpoint or 'none was written yet'}. "
        "Lower --learning_rate."))

  def _log_progress(self, step):
    loss = self._check_losses()
    now = time.time()
    rate = (step - self.window[1]) / max(now - self.window[0], 1e-9)
    self.window = (now, step)
    eta = (self.config.num_steps - step) / max(rate, 1e-9)
    held_out = reward_model.evaluate(self.model, self.validation)
    self.log(f"step {step}/{self.config.num_steps} loss {loss:.4f} | "
             f"{_summary(held_out)} | {rate:.1f} steps/s ETA "
             f"{runner.format_seconds(eta)}")


# -- command line --------------------------------------------------------------
def define_flags(flag_values: Optional["flags.FlagValues"] = None
                 ) -> "flags.FlagValues":
  """One flag per RewardModelConfig field, on ``flag_values`` (default
  absl's FLAGS)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flag_values if flag_values is not None else flags.FLAGS
  configuration.define_flags(RewardModelConfig, flag_values)
  return flag_values


def main(argv: List[str],
         flag_values: Optional["flags.FlagValues"] = None) -> None:
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  flag_values = flag_values if flag_values is not None else flags.FLAGS
  try:
    config = RewardModelConfig.from_flags(flag_values)
  except ConfigError as e:
    raise app.UsageError(str(e)) from None
  command = "python -m rl_tuner_tf.train_reward_model " + " ".join(
      shlex.quote(a) for a in sys.argv[1:])
  try:
    train(config, log=lambda line: print(line, flush=True), command=command)
  except ConfigError as e:
    raise app.UsageError(str(e)) from None
  except (NonFiniteLossError, checkpointing.NoReadableCheckpointError,
          run_lock.RunLockedError, reward_model.RewardModelError, OSError,
          tf.errors.OpError) as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  from data_pipeline import console  # pylint: disable=g-import-not-at-top
  define_flags()
  console.run(main)
