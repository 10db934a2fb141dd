"""TFRecord layout of the melody dataset.

A dataset directory holds, per split in SPLITS, shards named
``{split}-{i:05d}-of-{n:05d}.tfrecord``; each record is a ``tf.train.Example``
with one feature ``tokens`` (int64 list, variable length, values 0..37).
``manifest.json`` beside them describes the build (see build_dataset).
"""
from data_pipeline import keras_setup  # noqa: F401  (before tensorflow)

import glob
import os
from typing import Iterable, List, Sequence, Union

import numpy as np
import tensorflow as tf

from data_pipeline import atomic_files
from data_pipeline import tfrecord_format

SPLITS = tfrecord_format.SPLITS
MANIFEST = "manifest.json"
TOKENS_FEATURE = tfrecord_format.TOKENS_FEATURE
shard_name = tfrecord_format.shard_name


def shard_paths(tfrecord_dir: str, split: str) -> List[str]:
  """Sorted shard files of `split` in `tfrecord_dir`."""
  return sorted(glob.glob(os.path.join(tfrecord_dir, f"{split}-*-of-*.tfrecord")))


def write_shard(path: str,
                melodies: Iterable[Union[Sequence[int], np.ndarray]]) -> str:
  """Writes token melodies, in order, as one TFRecord file at `path` (fsynced;
  TensorFlow-free: data_pipeline.tfrecord_format)."""
  return tfrecord_format.write_records(
      path, (tfrecord_format.tokens_to_example_bytes(t) for t in melodies))


def write_shards(tfrecord_dir: str, split: str,
                 melodies: Iterable[Union[Sequence[int], np.ndarray]],
                 num_shards: int) -> List[str]:
  """Writes melodies round-robin into `num_shards` shards; returns the names.

  Melody i goes to shard i % num_shards (the layout the Beam pipeline keeps).
  """
  num_shards = max(1, int(num_shards))
  names = [shard_name(split, i, num_shards) for i in range(num_shards)]
  melodies = list(melodies)
  for i, n in enumerate(names):
    write_shard(os.path.join(tfrecord_dir, n + ".partial"),
                melodies[i::num_shards])
  for n in names:  # fsync'd, then renamed: a shard is whole or absent
    atomic_files.publish_file(os.path.join(tfrecord_dir, n + ".partial"),
                              os.path.join(tfrecord_dir, n))
  return names


def remove_shards(tfrecord_dir: str) -> None:
  """Deletes every shard (and partial shard) of every split in the directory."""
  for split in SPLITS:
    for pattern in (f"{split}-*-of-*.tfrecord", f"{split}-*-of-*.tfrecord.partial"):
      for path in glob.glob(os.path.join(tfrecord_dir, pattern)):
        os.remove(path)


def parse_tokens(serialized: tf.Tensor) -> tf.Tensor:
  """Serialized Example -> int32 [T] tokens (graph op, for Dataset.map)."""
  parsed = tf.io.parse_single_example(
      serialized, {TOKENS_FEATURE: tf.io.VarLenFeature(tf.int64)})
  return tf.cast(tf.sparse.to_dense(parsed[TOKENS_FEATURE]), tf.int32)
