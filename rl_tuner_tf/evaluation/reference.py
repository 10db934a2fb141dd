"""Real melodies to measure models against (beyond_rules.py).

The held-out (validation) melodies of the corpus the Note RNN was trained on
are cut into windows of the compositions' length, each starting on a note as
compositions start on their primer note, without overlap; the melodies (not
the windows) are split in two disjoint halves A and B, so that the
comparison of A with B is the real-vs-real floor.  The training melodies
give the copying checks their index of 16-step windows and a sample of
whole-length windows for nearest-neighbour edit distances.
"""
import dataclasses
import json
import os
from typing import Any, Callable, List, Optional

import numpy as np
import numpy.typing as npt

from rl_tuner_tf.evaluation import beyond_rules


@dataclasses.dataclass
class Reference:
  a: np.ndarray  # [NA, T] windows of half A of the held-out melodies
  b: np.ndarray  # [NB, T] windows of half B
  train_index: np.ndarray  # sorted hashes of the training 16-step windows
  train_windows: np.ndarray  # [K, T] training windows (nearest neighbours)
  tfrecord_dir: str


def windows(melody: npt.ArrayLike, length: int) -> np.ndarray:
  """Non-overlapping windows of ``length`` steps of one melody, each
  starting on a note -> [K, length]."""
  melody = np.asarray(melody)
  out = []
  start = 0
  while start + length <= len(melody):
    if melody[start] >= beyond_rules.FIRST_PITCH_TOKEN:
      out.append(melody[start:start + length])
      start += length
    else:
      start += 1
  return np.asarray(out, np.int64).reshape(-1, length)


def read_split(tfrecord_dir: str, split: str) -> List[np.ndarray]:
  """The split's melodies, in file order: a list of 1-D int arrays."""
  from data_pipeline import dataset  # pylint: disable=g-import-not-at-top
  return [m.numpy() for m in dataset.melody_dataset(tfrecord_dir, split)]


def default_tfrecord_dir(note_rnn_checkpoint: Optional[str] = None,
                         log: Callable[[str], Any] = print) -> str:
  """The corpus the Note RNN's provenance names, when it is here; else the
  embedded corpus (built when missing)."""
  if note_rnn_checkpoint:
    try:
      with open(os.path.join(note_rnn_checkpoint, "provenance.json")) as f:
        named = json.load(f).get("corpus", {}).get("tfrecord_dir")
    except (OSError, ValueError):
      named = None
    if named and os.path.isfile(os.path.join(named, "manifest.json")):
      return named
  from data_pipeline import corpus  # pylint: disable=g-import-not-at-top
  return corpus.ensure_default_corpus(log=log)


def load(tfrecord_dir: str, length: int = 32, seed: int = 0) -> Reference:
  """-> Reference of the corpus in tfrecord_dir, for compositions of
  ``length`` steps."""
  held_out = read_split(tfrecord_dir, "validation")
  halves = [[windows(m, length) for m in held_out[h::2]] for h in (0, 1)]
  a, b = (np.concatenate(h) if h else np.zeros((0, length), np.int64)
          for h in halves)
  if min(len(a), len(b)) < 2:
    raise ValueError(
        f"{tfrecord_dir}: its validation melodies give {len(a)} + {len(b)} "
        f"windows of {length} steps starting on a note; the comparison with "
        "real melodies needs at least 2 in each half")
  train = read_split(tfrecord_dir, "train")
  rng = np.random.default_rng(seed)
  every = [w for m in train for w in windows(m, length)]
  pick = rng.permutation(len(every))[:beyond_rules.NEAREST_TRAIN]
  train_windows = (np.asarray([every[i] for i in sorted(pick)], np.int64)
                   if every else np.zeros((0, length), np.int64))
  return Reference(a=a, b=b,
                   train_index=beyond_rules.training_window_index(train),
                   train_windows=train_windows, tfrecord_dir=tfrecord_dir)
