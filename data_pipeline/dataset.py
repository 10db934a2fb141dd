"""tf.data loaders over the melody TFRecords (see data_pipeline.tfrecords).

    ds = melody_dataset(tfrecord_dir, "train")        # int32 [T] per melody
    batches = batched(ds, 128, max_length=256)         # (tokens[B,T], lengths[B])
"""
from data_pipeline import keras_setup  # noqa: F401  (before tensorflow)

import os
from typing import Optional, Sequence

import tensorflow as tf

from data_pipeline import encoding
from data_pipeline import tfrecords

PAD_TOKEN = encoding.NO_EVENT  # padding value; use `lengths` to mask it


def melody_dataset(tfrecord_dir: str, split: str, shuffle_files: bool = False,
                   seed: Optional[int] = None) -> tf.data.Dataset:
  """Unbatched int32 token vectors (variable length) of one split.

  Args:
    tfrecord_dir: directory with ``{split}-{i:05d}-of-{n:05d}.tfrecord`` files.
    split: "train" or "validation".
    shuffle_files: visit shards in a shuffled order (deterministic with seed).
    seed: seed for shuffle_files.
  Raises:
    ValueError: unknown split. FileNotFoundError: no shard of that split.
  """
  if split not in tfrecords.SPLITS:
    raise ValueError(f"split must be one of {tfrecords.SPLITS}, got {split!r}")
  paths = tfrecords.shard_paths(tfrecord_dir, split)
  if not paths:
    raise FileNotFoundError(
        f"no {split} shards ({split}-*-of-*.tfrecord) in {tfrecord_dir}; "
        "build them with `python -m data_pipeline.build_dataset` or "
        "data_pipeline.corpus.ensure_default_corpus()")
  files = tf.data.Dataset.from_tensor_slices(paths)
  if shuffle_files:
    files = files.shuffle(len(paths), seed=seed)
  ds = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(paths), 4)
                               if len(paths) > 1 else None)
  return ds.map(tfrecords.parse_tokens,
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=not shuffle_files)


def num_melodies(tfrecord_dir: str, split: str) -> int:
  """Melodies of a split, from the manifest (no scan)."""
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(tfrecord_dir, tfrecords.MANIFEST)) as f:
    return json.load(f)["splits"][split]["melodies"]


def batched(ds: tf.data.Dataset, batch_size: int,
            max_length: Optional[int] = None,
            bucket_boundaries: Optional[Sequence[int]] = None,
            shuffle: bool = True, shuffle_buffer: int = 10000,
            seed: Optional[int] = None, repeat: bool = False,
            random_crop: bool = False,
            drop_remainder: bool = False) -> tf.data.Dataset:
  """Padded (or length-bucketed) batches `(tokens[B, T] int32, lengths[B] int32)`.

  Args:
    ds: dataset of int32 [T] token vectors (e.g. `melody_dataset`).
    batch_size: melodies per batch.
    max_length: longer melodies are cut to this many steps (their first
      steps, or a random window when random_crop).  None: keep whole.
    bucket_boundaries: optional increasing lengths; melodies are grouped by
      length (tf.data bucket_by_sequence_length) so batches pad less.  Each
      batch is padded to its longest member.
    shuffle: shuffle melodies (buffer `shuffle_buffer`) before batching.
    seed: shuffle / crop seed.
    repeat: repeat forever (before shuffling, so epochs mix).
    random_crop: with max_length, crop a random window instead of the start.
    drop_remainder: drop a last short batch (static batch dimension).
  Padding is PAD_TOKEN (no-event); `lengths` holds the true lengths.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if max_length is not None and max_length < 1:
    raise ValueError(f"max_length must be >= 1 or None, got {max_length}")
  if repeat:
    ds = ds.repeat()
  if shuffle:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if max_length is not None:
    if random_crop:
      def crop(tokens):
        length = tf.shape(tokens)[0]
        room = tf.maximum(length - max_length, 0)
        start = tf.random.uniform([], 0, room + 1, dtype=tf.int32, seed=seed)
        return tokens[start:start + max_length]
      ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    else:
      ds = ds.map(lambda t: t[:max_length],
                  num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.map(lambda t: (t, tf.shape(t, out_type=tf.int32)[0]))
  padded_shapes = ([None], [])
  padding_values = (tf.constant(PAD_TOKEN, tf.int32), tf.constant(0, tf.int32))
  if bucket_boundaries:
    boundaries = sorted(int(b) for b in bucket_boundaries)
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda t, n: n,
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padded_shapes=padded_shapes,
        padding_values=padding_values,
        drop_remainder=drop_remainder)
  else:
    ds = ds.padded_batch(batch_size, padded_shapes=padded_shapes,
                         padding_values=padding_values,
                         drop_remainder=drop_remainder)
  return ds.prefetch(tf.data.AUTOTUNE)
