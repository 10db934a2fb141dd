r"""Trains the Note RNN on melody TFRecords (paper section 3.1, reference §2).

    python -m rl_tuner_tf.train_note_rnn                     # embedded corpus
    python -m rl_tuner_tf.train_note_rnn --tfrecord_dir=DIR --layer_sizes=64,64 \
        --run_dir=runs/my_note_rnn --output_dir=my_note_rnn

Recipe (defaults; the paper's unless noted): batch 128, 30,000 steps, Adam,
global gradient-norm clip 5, L2 penalty 2.5e-5 on the weight matrices,
learning rate decayed by x0.85 every 1,000 steps (staircase), and the loss of
the first 8 prediction steps of every sequence left out (the LSTM starts from
a zero state there).  Deviations, both measured (see benchmarks/ and the
shipped checkpoint's provenance.json):
  * learning rate 0.02 instead of the paper's 0.5: after 300 steps on the
    embedded corpus Adam at 0.5 reaches validation log-perplexity 1.80
    (training loss 24 in the first 50 steps) against 1.05-1.27 for
    0.05 / 0.02 / 0.005 / 0.001 (details in the shipped provenance.json);
  * training sequences are random 33-token windows (32 predictions) of the
    melodies, not whole melodies, so that 30,000 steps fit in 45 minutes on a
    2-core CPU.  Validation always scores whole held-out melodies.

Everything lives in ``--run_dir``: TensorBoard events (``tb/``), resumable
checkpoints of model + optimizer + step (``ckpt/``; a killed run started again
with the same --run_dir continues), the latest evaluated export
(``latest_export/``, a ``note_rnn.save`` folder with provenance.json) and the
train config.  The final model is exported to ``--output_dir`` with
``note_rnn.save`` plus ``provenance.json``.

Devices (``--distribute``): training runs under a ``tf.distribute`` strategy.
``auto`` (default) mirrors over the visible GPUs when there are two or more, or
over the logical CPU devices when more than one is configured, and otherwise
uses the default (single-device) strategy; ``mirrored`` requires two or more
such devices; ``none`` always uses the default strategy.  ``--batch_size`` is
the global batch, split evenly over the replicas; the loss keeps its meaning
(mean NLL over the scored steps of the whole global batch, plus the L2 term
once), so N replicas train the same model as one device on the same batches
up to float reduction order.  Validation runs on the first device.
"""
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import sys
import time
from typing import (TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple,
                    Union)

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import tensorflow as tf

from data_pipeline import atomic_files
from data_pipeline import dataset as dataset_lib
from data_pipeline import run_lock
from rl_tuner_tf import checkpointing
from rl_tuner_tf import configuration
from rl_tuner_tf import note_rnn
from rl_tuner_tf import runner

if TYPE_CHECKING:
  from absl import flags

PROVENANCE_FILENAME = "provenance.json"
TRAIN_CONFIG_FILENAME = "train_config.json"
EVAL_BUCKETS = (64, 128, 256, 512, 1024)
DISTRIBUTE_CHOICES = ("auto", "mirrored", "none")


NonFiniteLossError = runner.NonFiniteLossError


_setting = configuration.setting


@dataclasses.dataclass(frozen=True)
class TrainConfig(configuration.Values):
  """The Note RNN's training (the paper's recipe, section 2, with the
  learning rate that trains: see the module docstring). Each field is a
  flag of ``python -m rl_tuner_tf.train_note_rnn``."""
  layer_sizes: Tuple[int, ...] = _setting(
      note_rnn.DEFAULT_LAYER_SIZES, "LSTM layer sizes, e.g. 100 or 64,64.",
      check=configuration.positive_ints)
  batch_size: int = _setting(128, "Windows per batch.",
                             check=configuration.positive_int)
  num_steps: int = _setting(30000, "Total training steps.",
                            check=configuration.positive_int)
  learning_rate: float = _setting(
      0.02, "Initial Adam learning rate (paper: 0.5, which does not train "
      "well; see the module docstring).", check=configuration.positive)
  decay_steps: int = _setting(1000, "Steps per learning-rate decay.",
                              check=configuration.positive_int)
  decay_rate: float = _setting(0.85, "Staircase learning-rate decay factor.",
                               check=configuration.in_range(0, 1,
                                                            open_low=True))
  clip_norm: float = _setting(5.0, "Global gradient-norm clip.",
                              check=configuration.positive)
  l2_weight: float = _setting(
      2.5e-5, "L2 penalty on the weight matrices (x sum ||W||^2 / 2).",
      check=configuration.non_negative)
  num_masked_steps: int = _setting(
      8, "Leading prediction steps of each sequence left out of the loss "
      "(paper 8; original 32).",
      check=configuration.at_least(0))
  window_length: int = _setting(
      32, "Predictions per training window (a random crop of window_length "
      "+ 1 tokens of a melody).", check=configuration.positive_int)
  log_every: int = _setting(100, "Steps between log lines.",
                            check=configuration.positive_int)
  checkpoint_every: int = _setting(1000, "Steps between resumable "
                                   "checkpoints.",
                                   check=configuration.positive_int)
  eval_every: int = _setting(2000, "Steps between validation + "
                             "<run_dir>/latest_export.",
                             check=configuration.positive_int)
  eval_batch_size: int = _setting(64, "Melodies per validation batch.",
                                  check=configuration.positive_int)
  max_wall_minutes: float = _setting(
      0.0, "Stop (evaluate, export) after this much training time; 0: no "
      "limit.", check=configuration.non_negative)
  seed: int = _setting(0, "Random seed.")
  distribute: str = _setting(
      "auto", "tf.distribute strategy: auto (MirroredStrategy over 2+ "
      "visible GPUs, else one device), mirrored (requires 2+ devices), none "
      "(one device). --batch_size is the global batch, split over the "
      "replicas.", choices=DISTRIBUTE_CHOICES)

  def _validate(self):
    if self.num_masked_steps >= self.window_length:
      raise configuration.ConfigError(
          "num_masked_steps", f"must be < --window_length="
          f"{self.window_length} (else no step of a training window is "
          f"scored) (got {self.num_masked_steps})")

  def to_dict(self) -> Dict[str, Any]:
    """The settings as config.json records them."""
    settings = self.to_settings()
    settings["layer_sizes"] = list(self.layer_sizes)
    return settings


# -- loss ---------------------------------------------------------------------
def loss_mask(lengths: tf.Tensor, num_predictions: Union[int, tf.Tensor],
              num_masked_steps: int) -> tf.Tensor:
  """Float [B, P] mask of the scored prediction steps.

  Prediction j reads tokens 0..j and is scored against token j+1. It counts
  when j >= num_masked_steps (the first steps after a zero LSTM state are not
  used, reference §2) and token j+1 exists (j + 1 < length, no padding).
  """
  positions = tf.range(num_predictions)[tf.newaxis, :]
  lengths = tf.cast(lengths, tf.int32)[:, tf.newaxis]
  keep = (positions >= num_masked_steps) & (positions + 1 < lengths)
  return tf.cast(keep, tf.float32)


def masked_sums(logits: tf.Tensor, targets: tf.Tensor, mask: tf.Tensor
                ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(sum of NLL in nats, number correct, number scored) over the mask."""
  nll = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(targets, tf.int32), logits=logits)
  correct = tf.cast(
      tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
               tf.cast(targets, tf.int32)), tf.float32)
  return (tf.reduce_sum(nll * mask), tf.reduce_sum(correct * mask),
          tf.reduce_sum(mask))


def sequence_loss(model: note_rnn.NoteRNN, tokens: tf.Tensor,
                  lengths: tf.Tensor, num_masked_steps: int,
                  training: bool = False
                  ) -> Tuple[tf.Tensor, Tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
  """Mean masked next-token NLL of melodies tokens[B, T] (lengths[B]).

  Returns (mean NLL, (nll sum, correct, count)).
  """
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  logits, _ = model(inputs, training=training)
  mask = loss_mask(lengths, tf.shape(targets)[1], num_masked_steps)
  nll_sum, correct, count = masked_sums(logits, targets, mask)
  return nll_sum / tf.maximum(count, 1.0), (nll_sum, correct, count)


def l2_penalty(model: note_rnn.NoteRNN, l2_weight: float) -> tf.Tensor:
  """l2_weight * sum ||W||^2 / 2 over the weight matrices (not biases)."""
  return l2_weight * tf.add_n(
      [tf.nn.l2_loss(v) for v in model.weight_decay_variables()])


# -- devices ------------------------------------------------------------------
def mirror_devices() -> List[str]:
  """Devices a MirroredStrategy would use: the visible GPUs, else the logical
  CPU devices (more than one only when configured, as in the tests)."""
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    return [d.name for d in gpus]
  return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(distribute: str = "auto",
                  batch_size: Optional[int] = None) -> tf.distribute.Strategy:
  """The tf.distribute strategy for --distribute (auto | mirrored | none).

  auto: MirroredStrategy when two or more devices (GPUs, else logical CPUs)
  are visible, the default strategy otherwise. Raises ValueError naming the
  flag for mirrored with fewer than two devices, or naming --batch_size when
  the global batch does not split evenly over the replicas.
  """
  if distribute not in DISTRIBUTE_CHOICES:
    raise ValueError(f"--distribute must be one of "
                     f"{'|'.join(DISTRIBUTE_CHOICES)}, got {distribute!r}")
  devices = mirror_devices() if distribute != "none" else []
  if distribute == "mirrored" and len(devices) < 2:
    raise ValueError(
        f"--distribute=mirrored needs two or more devices, found "
        f"{len(devices)} ({', '.join(devices) or 'none'}); use "
        "--distribute=auto or none on one device")
  if len(devices) < 2:
    return tf.distribute.get_strategy()
  if batch_size is not None and batch_size % len(devices):
    raise ValueError(
        f"--batch_size must be a multiple of the {len(devices)} replicas of "
        f"--distribute={distribute} ({', '.join(devices)}), got {batch_size}")
  return tf.distribute.MirroredStrategy(devices)


# -- data ---------------------------------------------------------------------
def train_dataset(tfrecord_dir: str, config: TrainConfig) -> tf.data.Dataset:
  """Endless batches of random (window_length + 1)-token windows."""
  ds = dataset_lib.melody_dataset(tfrecord_dir, "train", shuffle_files=True,
                                  seed=config.seed)
  return dataset_lib.batched(
      ds, config.batch_size, max_length=config.window_length + 1,
      shuffle=True, seed=config.seed, repeat=True, random_crop=True,
      drop_remainder=True)


def eval_dataset(tfrecord_dir: str, batch_size: int,
                 split: str = "validation") -> tf.data.Dataset:
  """Whole melodies of `split`, length-bucketed, one pass."""
  ds = dataset_lib.melody_dataset(tfrecord_dir, split)
  return dataset_lib.batched(ds, batch_size, bucket_boundaries=EVAL_BUCKETS,
                             shuffle=False)


def _manifest_counts(tfrecord_dir):
  path = os.path.join(tfrecord_dir, "manifest.json")
  if not os.path.exists(path):
    return {"tfrecord_dir": os.path.abspath(tfrecord_dir)}
  with open(path) as f:
    manifest = json.load(f)
  counts = {"tfrecord_dir": os.path.abspath(tfrecord_dir)}
  for key in ("midi_dir", "files_seen", "files_used", "files_skipped",
              "melodies", "steps", "fingerprint"):
    if key in manifest:
      counts[key] = manifest[key]
  counts["splits"] = {
      split: {k: v for k, v in info.items() if k != "shards"}
      for split, info in manifest.get("splits", {}).items()}
  return counts


# -- trainer ------------------------------------------------------------------
class NoteRNNTrainer:
  """Model, optimizer, step counter, checkpoints and the compiled steps, all
  under one tf.distribute strategy (``make_strategy(config.distribute)``
  unless one is given)."""

  def __init__(self, config, run_dir, strategy=None):
    self.config = config
    self.run_dir = run_dir
    self.strategy = strategy or make_strategy(config.distribute,
                                              config.batch_size)
    replicas = self.strategy.num_replicas_in_sync
    if config.batch_size % replicas:
      raise ValueError(f"--batch_size must be a multiple of the {replicas} "
                       f"replicas, got {config.batch_size}")
    with self.strategy.scope():
      self.model = note_rnn.NoteRNN(config.layer_sizes)
      self.schedule = tf.keras.optimizers.schedules.ExponentialDecay(
          config.learning_rate, decay_steps=config.decay_steps,
          decay_rate=config.decay_rate, staircase=True)
      self.optimizer = tf.keras.optimizers.Adam(self.schedule)
      self.optimizer.build(self.model.trainable_variables)
      self.step = self.optimizer.iterations  # one apply_gradients per step
      self.elapsed_s = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                   name="elapsed_s")
      self.checkpoint = tf.train.Checkpoint(
          model=self.model, optimizer=self.optimizer, elapsed_s=self.elapsed_s)
    self.manager = checkpointing.manager(
        self.checkpoint, os.path.join(run_dir, "ckpt"))

    # One trace: the distributed training batches have static shapes (global
    # [batch_size, window] on one replica, batch_size / N rows per replica).
    self._train_step = tf.function(self._distributed_train_step,
                                   reduce_retracing=True)
    self._eval_step = tf.function(self._eval_step_impl, input_signature=[
        tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32)])

  def distribute(self, dataset: tf.data.Dataset
                 ) -> Union[tf.data.Dataset, tf.distribute.DistributedDataset]:
    """The training dataset split over the replicas (global batches in)."""
    return self.strategy.experimental_distribute_dataset(dataset)

  # compiled steps --------------------------------------------------------------
  def _distributed_train_step(self, tokens, lengths):
    """One step on a global batch (per-replica values from ``distribute``);
    returns the batch's mean masked NLL (before L2)."""
    nll = self.strategy.run(self._train_step_impl, args=(tokens, lengths))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, nll, axis=None)

  def _train_step_impl(self, tokens, lengths):
    """Replica step: this replica's rows of the global batch.

    The loss is today's single-device loss of the whole global batch: the
    masked NLL sum of the replica's rows divided by the number of scored steps
    of the *global* batch (the first num_masked_steps predictions and padding
    are unscored, so that count varies), plus L2 / N, so the replicas'
    gradients sum to the global gradient. Gradients are summed over replicas
    before the global-norm clip (the clip sees the global gradient), and the
    optimizer does not aggregate them again. With one replica every step
    below is the identity and the numbers are the single-device ones.
    """
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      inputs, targets = tokens[:, :-1], tokens[:, 1:]
      logits, _ = self.model(inputs, training=True)
      mask = loss_mask(lengths, tf.shape(targets)[1],
                       self.config.num_masked_steps)
      nll_sum, _, count = masked_sums(logits, targets, mask)
      if replicas > 1:
        count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
      nll = nll_sum / tf.maximum(count, 1.0)
      loss = nll
      if self.config.l2_weight > 0:
        l2 = l2_penalty(self.model, self.config.l2_weight)
        if replicas > 1:
          l2 = tf.nn.scale_regularization_loss(l2)  # l2 / num_replicas
        loss += l2
    grads = tape.gradient(loss, variables)
    if replicas > 1:
      grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    grads, _ = tf.clip_by_global_norm(grads, self.config.clip_norm)
    self.optimizer.apply_gradients(zip(grads, variables),
                                   skip_gradients_aggregation=replicas > 1)
    return nll

  def _eval_step_impl(self, tokens, lengths):
    _, sums = sequence_loss(self.model, tokens, lengths,
                            self.config.num_masked_steps)
    return sums

  # checkpoints -----------------------------------------------------------------
  def restore_or_initialize(self, log: Callable[[str], Any]) -> int:
    """Restores the newest checkpoint in run_dir/ckpt; returns its step."""
    self._check_run_config()
    latest = checkpointing.restore_latest(
        self.checkpoint, os.path.join(self.run_dir, "ckpt"), log=log,
        check=lambda status, _: status.assert_existing_objects_matched())
    if latest:
      log(f"Resumed from {latest} at step {int(self.step.numpy())} "
          f"({self.elapsed_s.numpy() / 60:.1f} min trained before).")
    return int(self.step.numpy())

  def _check_run_config(self):
    path = os.path.join(self.run_dir, TRAIN_CONFIG_FILENAME)
    if os.path.exists(path):
      with open(path) as f:
        old = json.load(f)
      if (old.get("layer_sizes") != list(self.config.layer_sizes)
          and self.manager.latest_checkpoint):
        raise note_rnn.CheckpointMismatchError(
            f"--run_dir {self.run_dir!r} holds a run with layer sizes "
            f"{old.get('layer_sizes')}, but --layer_sizes="
            f"{','.join(map(str, self.config.layer_sizes))} was requested; use "
            "another --run_dir or the same layer sizes.")
    os.makedirs(self.run_dir, exist_ok=True)
    atomic_files.write_json(path, self.config.to_dict())

  def save_checkpoint(self) -> Optional[str]:
    return self.manager.save(checkpoint_number=int(self.step.numpy()))

  # evaluation ------------------------------------------------------------------
  def evaluate(self, dataset: tf.data.Dataset) -> Dict[str, float]:
    """Accuracy and log-perplexity (mean NLL, nats) over whole melodies."""
    nll_sum = correct = count = 0.0
    melodies = 0
    for tokens, lengths in dataset:
      n, c, k = self._eval_step(tokens, lengths)
      nll_sum += float(n)
      correct += float(c)
      count += float(k)
      melodies += int(tokens.shape[0])
    if count == 0:
      raise ValueError("validation split has no scorable step (all melodies "
                       f"<= {self.config.num_masked_steps + 1} steps)")
    return {"accuracy": correct / count, "log_perplexity": nll_sum / count,
            "melodies": melodies, "scored_steps": int(count)}


def _provenance(trainer, tfrecord_dir, command, metrics, stop_reason):
  config = trainer.config
  return {
      "what": "Note RNN trained by rl_tuner_tf.train_note_rnn",
      "command": command,
      "steps": int(trainer.step.numpy()),
      "planned_steps": config.num_steps,
      "stopped_because": stop_reason,
      "wall_time_s": round(float(trainer.elapsed_s.numpy()), 1),
      "layer_sizes": list(config.layer_sizes),
      "hyperparameters": config.to_dict(),
      "corpus": _manifest_counts(tfrecord_dir),
      "validation": dict(
          metrics,
          split="validation",
          note=(f"whole held-out melodies; first {config.num_masked_steps} "
                "prediction steps of each melody and padding not scored; "
                "log_perplexity = mean NLL in nats per scored step "
                "(paper: accuracy 0.92, log-perplexity 0.2536)")),
      "tensorflow": tf.__version__,
      "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
      "replicas": trainer.strategy.num_replicas_in_sync,
      "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
  }


def export(trainer: NoteRNNTrainer, directory: str,
           provenance: Dict[str, Any]) -> str:
  """note_rnn.save + provenance.json, written into a fresh sibling folder
  that then replaces `directory` (a reader never sees half an export)."""
  directory = os.path.abspath(directory)
  tmp = directory + ".partial"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  note_rnn.save(trainer.model, tmp, extra_config={
      "steps": provenance["steps"],
      "validation_accuracy": provenance["validation"]["accuracy"],
      "validation_log_perplexity": provenance["validation"]["log_perplexity"]})
  with open(os.path.join(tmp, PROVENANCE_FILENAME), "w") as f:
    json.dump(provenance, f, indent=2)
  atomic_files.recover_replaced_dir(directory)
  if os.path.isdir(directory):
    # Keep anything else a user put there: copied into the new folder (the
    # old one is deleted only once the new one is in place).
    for name in os.listdir(directory):
      ours = (name.startswith((note_rnn.CHECKPOINT_PREFIX + "-",
                               note_rnn.CHECKPOINT_PREFIX + ".")) or
              name in ("checkpoint", note_rnn.CONFIG_FILENAME,
                       PROVENANCE_FILENAME))
      if not ours:
        source = os.path.join(directory, name)
        if os.path.isdir(source):
          shutil.copytree(source, os.path.join(tmp, name), symlinks=True)
        else:
          shutil.copy2(source, os.path.join(tmp, name), follow_symlinks=False)
  # The whole folder is swapped by renames: a reader sees the old export or
  # the new one, never a mix (atomic_files.replace_dir's protocol).
  with atomic_files.replace_dir(directory) as staging:
    os.rmdir(staging)
    os.rename(tmp, staging)
  return directory


def train(config: TrainConfig, tfrecord_dir: str, run_dir: str,
          output_dir: Optional[str] = None, command: str = "",
          log: Optional[Callable[[str], Any]] = None,
          strategy: Optional[tf.distribute.Strategy] = None) -> Dict[str, Any]:
  """Trains (resuming from run_dir) and exports; returns the final metrics.

  strategy: a tf.distribute strategy; default make_strategy(config.distribute).

  Raises NonFiniteLossError when the loss turns NaN/inf (nothing exported;
  the checkpoints in run_dir/ckpt predate the failure), run_lock.RunLockedError
  when another process trains in run_dir.
  """
  log = log or (lambda msg: print(msg, flush=True))
  with run_lock.hold(run_dir, command=command or None, log=log):
    return _train_locked(config, tfrecord_dir, run_dir, output_dir, command,
                         log, strategy)


def _train_locked(config, tfrecord_dir, run_dir, output_dir, command, log,
                  strategy):
  tf.random.set_seed(config.seed)
  trainer = NoteRNNTrainer(config, run_dir, strategy)
  job = _TrainingJob(trainer, tfrecord_dir, run_dir, output_dir, command, log)
  return runner.Runner(job).run()


class _TrainingJob:
  """The Note RNN's training as the runner's job: units are steps; periods
  log, checkpoint and eval (validation + <run_dir>/latest_export); a signal
  or --max_wall_minutes stops it cleanly (checkpoint, final evaluation,
  export)."""
  stop_on_signals = True

  def __init__(self, trainer, tfrecord_dir, run_dir, output_dir, command,
               log):
    config = trainer.config
    self.trainer, self.config = trainer, config
    self.tfrecord_dir, self.run_dir, self.output_dir = (tfrecord_dir, run_dir,
                                                        output_dir)
    self.command, self.log = command, log
    self.total = config.num_steps
    self.periods = {"log": config.log_every,
                    "checkpoint": config.checkpoint_every,
                    "eval": config.eval_every}
    self.writer = tf.summary.create_file_writer(os.path.join(run_dir, "tb"))
    self.latest_export = os.path.join(run_dir, "latest_export")
    self.pending = runner.PendingLosses()

  def restore(self) -> int:
    trainer, config = self.trainer, self.config
    self.step = trainer.restore_or_initialize(self.log)
    self.val_ds = eval_dataset(self.tfrecord_dir, config.eval_batch_size)
    self.train_iter = iter(trainer.distribute(
        train_dataset(self.tfrecord_dir, config)))
    replicas = trainer.strategy.num_replicas_in_sync
    self.log(f"Training Note RNN {list(config.layer_sizes)} on "
             f"{self.tfrecord_dir}: steps {self.step} -> {config.num_steps}, "
             f"batch {config.batch_size}"
             f"{f' over {replicas} replicas' if replicas > 1 else ''}, window "
             f"{config.window_length + 1} tokens, lr {config.learning_rate} "
             f"x{config.decay_rate}/{config.decay_steps} steps.")
    self.t_session = time.time()
    self.t_interval, self.step_interval = time.time(), self.step
    self.elapsed_before = float(trainer.elapsed_s.numpy())
    return self.step

  def advance(self, stop: int, should_stop) -> int:
    """Steps one by one (each an async dispatch, no sync) until ``stop`` or
    a stop request."""
    while self.step < stop:
      tokens, lengths = next(self.train_iter)
      self.pending.add(self.trainer._train_step(tokens, lengths))  # pylint: disable=protected-access
      self.step += 1
      if should_stop():
        break
    return self.step

  def at_period(self, name: str, step: int) -> None:
    config = self.config
    if name == "log":
      self._log_progress(step)
    elif name == "checkpoint" and step % config.checkpoint_every == 0:
      self._check_losses()
      self._sync_elapsed()
      self.trainer.save_checkpoint()
    elif (name == "eval" and step % config.eval_every == 0
          and step < config.num_steps):
      self._check_losses()
      self._evaluate_and_export(step)

  def stop_reason(self):
    config = self.config
    minutes = (self.elapsed_before + time.time() - self.t_session) / 60
    if config.max_wall_minutes and minutes >= config.max_wall_minutes:
      return (f"--max_wall_minutes={config.max_wall_minutes} reached at step "
              f"{self.step}")
    return None

  def finish(self, step: int, reason: str):
    trainer, log = self.trainer, self.log
    reason = {"done": "num_steps reached"}.get(reason, reason)
    if reason.startswith("signal "):
      reason += f" at step {step}"
    self._check_losses()
    self._sync_elapsed()
    trainer.save_checkpoint()
    log(f"Stopping: {reason}. Final evaluation on all validation melodies "
        "...")
    metrics = trainer.evaluate(self.val_ds)
    with self.writer.as_default(step=step):
      tf.summary.scalar("validation/accuracy", metrics["accuracy"])
      tf.summary.scalar("validation/log_perplexity", metrics["log_perplexity"])
    provenance = _provenance(trainer, self.tfrecord_dir, self.command, metrics,
                             reason)
    export(trainer, self.latest_export, provenance)
    if self.output_dir:
      export(trainer, self.output_dir, provenance)
      log(f"Exported to {self.output_dir}")
    log(f"Done at step {step}: validation accuracy {metrics['accuracy']:.4f}, "
        f"log-perplexity {metrics['log_perplexity']:.4f}; "
        f"{runner.format_seconds(float(trainer.elapsed_s.numpy()))} of "
        "training.")
    self.writer.flush()
    return provenance

  def _sync_elapsed(self):
    self.trainer.elapsed_s.assign(self.elapsed_before + time.time() -
                                  self.t_session)

  def _check_losses(self):
    return self.pending.mean(lambda mean: (
        f"Training loss became {mean} before step {self.step} (learning "
        f"rate {float(self.trainer.schedule(self.step - 1)):.3g}). Stopped;"
        f" nothing exported. Checkpoints before the failure: "
        f"{self.run_dir}/ckpt. Lower --learning_rate or --clip_norm."))

  def _log_progress(self, step):
    loss = self._check_losses()
    now = time.time()
    rate = (step - self.step_interval) / max(now - self.t_interval, 1e-9)
    self.t_interval, self.step_interval = now, step
    eta = (self.config.num_steps - step) / max(rate, 1e-9)
    lr = float(self.trainer.schedule(step - 1))
    self.log(f"step {step}/{self.config.num_steps} loss {loss:.4f} lr "
             f"{lr:.3g} {rate:.1f} steps/s ETA {runner.format_seconds(eta)}")
    with self.writer.as_default(step=step):
      tf.summary.scalar("train/loss", loss)
      tf.summary.scalar("train/learning_rate", lr)
      tf.summary.scalar("train/steps_per_second", rate)

  def _evaluate_and_export(self, step):
    m = self.trainer.evaluate(self.val_ds)
    with self.writer.as_default(step=step):
      tf.summary.scalar("validation/accuracy", m["accuracy"])
      tf.summary.scalar("validation/log_perplexity", m["log_perplexity"])
    self.log(f"  step {step}: validation accuracy {m['accuracy']:.4f}, "
             f"log-perplexity {m['log_perplexity']:.4f} ({m['melodies']} "
             f"melodies, {m['scored_steps']} scored steps)")
    self._sync_elapsed()
    export(self.trainer, self.latest_export,
           _provenance(self.trainer, self.tfrecord_dir, self.command, m,
                       "in progress"))
    return m


# -- command line -------------------------------------------------------------
def parse_layer_sizes(text: str) -> Tuple[int, ...]:
  try:
    sizes = tuple(int(s) for s in str(text).replace(" ", "").split(",") if s)
  except ValueError:
    raise ValueError(
        f"--layer_sizes must be comma-separated positive integers like 100 or "
        f"64,64, got {text!r}") from None
  if not sizes or min(sizes) <= 0:
    raise ValueError(f"--layer_sizes must be positive integers, got {text!r}")
  return sizes


def define_flags(flag_values: Optional["flags.FlagValues"] = None
                 ) -> "flags.FlagValues":
  """Defines the command-line flags on `flag_values` (default absl's FLAGS):
  one per TrainConfig field, and where the data and results go."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flag_values if flag_values is not None else flags.FLAGS
  flags.DEFINE_string("tfrecord_dir", None, "Melody TFRecords "
                      "(data_pipeline). Default: the embedded corpus, built "
                      "on first use.", flag_values=fv)
  flags.DEFINE_string("run_dir", os.path.join("runs", "note_rnn"),
                      "Checkpoints, TensorBoard logs, latest export; a run "
                      "restarted with the same run_dir resumes.",
                      flag_values=fv)
  flags.DEFINE_string("output_dir", None, "Final export (note_rnn.save + "
                      "provenance.json). Default: <run_dir>/export.",
                      flag_values=fv)
  configuration.define_flags(TrainConfig, fv)
  return fv


def config_from_flags(flags_obj: "flags.FlagValues") -> TrainConfig:
  """The TrainConfig of the flags given (defaults for the others)."""
  return TrainConfig.from_flags(flags_obj)


def main(argv: List[str]) -> None:
  from absl import app  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  flags_obj = _FLAGS
  try:
    config = config_from_flags(flags_obj)
    strategy = make_strategy(config.distribute, config.batch_size)  # fail fast
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  tfrecord_dir = flags_obj.tfrecord_dir
  if tfrecord_dir is None:
    from data_pipeline import corpus  # pylint: disable=g-import-not-at-top
    tfrecord_dir = corpus.ensure_default_corpus()
  elif not os.path.isdir(tfrecord_dir):
    raise app.UsageError(f"--tfrecord_dir {tfrecord_dir!r} is not a directory")
  output_dir = flags_obj.output_dir or os.path.join(flags_obj.run_dir, "export")
  command = "python -m rl_tuner_tf.train_note_rnn " + " ".join(
      shlex.quote(a) for a in sys.argv[1:])
  try:
    train(config, tfrecord_dir, flags_obj.run_dir, output_dir, command,
          strategy=strategy)
  except (NonFiniteLossError, note_rnn.CheckpointMismatchError,
          checkpointing.NoReadableCheckpointError, run_lock.RunLockedError,
          OSError, tf.errors.OpError) as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    sys.exit(1)


_FLAGS = None

if __name__ == "__main__":
  from data_pipeline import console  # pylint: disable=g-import-not-at-top
  _FLAGS = define_flags()
  console.run(main)
