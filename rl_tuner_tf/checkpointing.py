"""Resumable checkpoints that survive a damaged one.

Used by the tuning job (rl_tuner_tf/train.py) and the Note RNN trainer
(rl_tuner_tf/train_note_rnn.py):

    manager = checkpointing.manager(checkpoint, directory)   # keeps KEEP
    path = checkpointing.restore_latest(checkpoint, directory, log=log)

``restore_latest`` tries the checkpoints newest first.  Each is verified
*before* anything is restored -- its index is read and every tensor in it is
read back in full (``tf.train.load_checkpoint``) -- so a truncated or
corrupt checkpoint is reported by path and skipped for the previous one
without leaving any of its values in the objects.  When none is readable it
raises ``NoReadableCheckpointError`` saying what to do; a readable one whose
contents do not match the program's objects (``check`` fails: written by
another version of the job, or by another job) raises
``IncompatibleCheckpointError``, naming it.
"""
import glob
import os
import re
from typing import Callable, List, Optional

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

KEEP = 3  # checkpoints kept: the latest and two to fall back to
_NUMBER = re.compile(r"-(\d+)$")


class NoReadableCheckpointError(RuntimeError):
  """Checkpoints exist but none of them can be read."""


class IncompatibleCheckpointError(NoReadableCheckpointError):
  """A readable checkpoint that does not match the objects restored into."""


def manager(checkpoint: tf.train.Checkpoint, directory: str,
            max_to_keep: int = KEEP) -> tf.train.CheckpointManager:
  return tf.train.CheckpointManager(checkpoint, directory,
                                    max_to_keep=max(2, max_to_keep))


def candidates(directory: str) -> List[str]:
  """Checkpoint prefixes in ``directory``, newest first.

  The union of what the ``checkpoint`` state file lists and the ``*.index``
  files present (the state file itself may be damaged or missing).
  """
  prefixes = set()
  try:
    state = tf.train.get_checkpoint_state(directory)
  except Exception:  # pylint: disable=broad-except  (a corrupt state file)
    state = None
  if state is not None:
    for path in list(state.all_model_checkpoint_paths) + [
        state.model_checkpoint_path]:
      if path:
        prefixes.add(path if os.path.isabs(path)
                     else os.path.join(directory, path))
  for index in glob.glob(os.path.join(glob.escape(directory), "*.index")):
    prefixes.add(index[:-len(".index")])

  def number(prefix):
    match = _NUMBER.search(prefix)
    return int(match.group(1)) if match else -1

  def mtime(prefix):
    try:
      return os.path.getmtime(prefix + ".index")
    except OSError:
      return 0.0
  return sorted(prefixes, key=lambda p: (number(p), mtime(p)), reverse=True)


def verify(prefix: str) -> None:
  """Raises if the checkpoint at ``prefix`` cannot be read in full."""
  if not os.path.exists(prefix + ".index"):
    raise FileNotFoundError(f"{prefix}.index is missing")
  reader = tf.train.load_checkpoint(prefix)
  for name in reader.get_variable_to_dtype_map():
    reader.get_tensor(name)


def restore_latest(
    checkpoint: tf.train.Checkpoint, directory: str,
    log: Callable[[str], None] = print,
    check: Optional[Callable[[object, str], None]] = None,
    objects_for: Optional[Callable[[str], tf.train.Checkpoint]] = None
) -> Optional[str]:
  """Restores the newest readable checkpoint of ``directory`` into
  ``checkpoint``; returns its path, or None when there is none.

  check(status, prefix): called on the restore status (e.g. calls
  ``status.assert_consumed()``); an AssertionError it raises becomes an
  IncompatibleCheckpointError.
  objects_for(prefix): when given, the tf.train.Checkpoint to restore that
  prefix into instead of ``checkpoint`` (chosen, e.g., from the names the
  checkpoint holds), so a checkpoint is read once.
  """
  found = candidates(directory) if os.path.isdir(directory) else []
  if not found:
    return None
  bad = []
  for prefix in found:
    try:
      verify(prefix)
    except Exception as e:  # pylint: disable=broad-except  (any unreadable file)
      reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
      bad.append((prefix, reason))
      log(f"WARNING: checkpoint {prefix} cannot be read ({reason}); "
          + ("skipping it for the previous one." if prefix != found[-1]
             else "it was the oldest one."))
      continue
    target = checkpoint if objects_for is None else objects_for(prefix)
    status = target.restore(prefix)
    if check is not None:
      try:
        check(status, prefix)
      except AssertionError as e:
        raise IncompatibleCheckpointError(
            f"checkpoint {prefix} does not match this job's objects (written "
            f"by another version of it, or another job?): "
            f"{str(e).splitlines()[0][:300]}\nTo start this run over, move or "
            f"delete {directory}; to resume it, use the version that wrote "
            "it.") from e
    return prefix
  listing = "\n  ".join(f"{p}: {r}" for p, r in bad)
  raise NoReadableCheckpointError(
      f"none of the {len(bad)} checkpoint(s) in {directory} can be read:\n  "
      f"{listing}\nTo start this run over, move or delete {directory} (its "
      "damaged files are kept for you to inspect); to keep a run, restore its "
      "checkpoint files from a backup.")
