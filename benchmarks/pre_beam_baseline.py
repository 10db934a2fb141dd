"""PRE-BEAM BASELINE, kept for benchmarks/bench_data_pipeline.py only.

The MIDI -> TFRecords build as it was before the Apache Beam pipeline
(data_pipeline/build_dataset.py up to commit 8ae0103): a multiprocessing Pool
parses the files (spawned workers, since the parent has TensorFlow loaded),
the parent orders the results by path and writes the shards with TensorFlow's
tf.train.Example and tf.io.TFRecordWriter. Not a production path: the
benchmark times it beside the Beam pipeline and checks both write the same
bytes. No run lock, cache or progress lines (they cost nothing measurable).
"""
import collections
import math
import multiprocessing
import os
import sys

_WORKER = {}


def _init_worker(midi_dir, melody_config, timeout_s):
  _WORKER.update(midi_dir=midi_dir, config=melody_config, timeout_s=timeout_s)


def _work(relative_path):
  from data_pipeline import convert  # pylint: disable=g-import-not-at-top
  melodies, reason, detail, stats = convert.process_midi_file(
      os.path.join(_WORKER["midi_dir"], relative_path), _WORKER["config"],
      timeout_s=_WORKER["timeout_s"])
  return relative_path, melodies, reason, detail, stats


def _pool_context():
  if "tensorflow" in sys.modules or sys.platform != "linux":
    return multiprocessing.get_context("spawn")
  return multiprocessing.get_context("fork")


def _write_shards_with_tensorflow(output_dir, split, melodies, num_shards):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from data_pipeline import atomic_files  # pylint: disable=g-import-not-at-top
  from data_pipeline import tfrecord_format  # pylint: disable=g-import-not-at-top
  names = [tfrecord_format.shard_name(split, i, num_shards)
           for i in range(num_shards)]
  writers = [tf.io.TFRecordWriter(os.path.join(output_dir, n + ".partial"))
             for n in names]
  try:
    for i, tokens in enumerate(melodies):
      example = tf.train.Example(features=tf.train.Features(feature={
          "tokens": tf.train.Feature(int64_list=tf.train.Int64List(
              value=[int(t) for t in tokens]))}))
      writers[i % num_shards].write(example.SerializeToString())
  finally:
    for w in writers:
      w.close()
  for n in names:
    atomic_files.publish_file(os.path.join(output_dir, n + ".partial"),
                              os.path.join(output_dir, n))
  return names


def build(midi_dir, output_dir, config, num_workers, timeout_s=30.0):
  """-> {"files_seen", "files_used", "melodies", "splits": {split: shards}}."""
  from data_pipeline import build_dataset  # pylint: disable=g-import-not-at-top
  from data_pipeline import manifests  # pylint: disable=g-import-not-at-top
  midi_dir = os.path.abspath(midi_dir)
  output_dir = os.path.abspath(output_dir)
  files = build_dataset.scan_files(midi_dir, exclude_dirs=[output_dir])
  paths = [f[0] for f in files]
  pool = _pool_context().Pool(num_workers, initializer=_init_worker,
                              initargs=(midi_dir, config.melody, timeout_s))
  chunk = max(1, min(32, len(paths) // (num_workers * 8)))
  by_path = {}
  stats = collections.Counter()
  try:
    for rel, melodies, reason, detail, file_stats in pool.imap_unordered(
        _work, paths, chunksize=chunk):
      by_path[rel] = (melodies, reason, detail)
      stats.update(file_stats)
  finally:
    pool.close()
    pool.join()
  split_melodies = {"train": [], "validation": []}
  skipped = []
  for rel in paths:
    melodies, reason, detail = by_path[rel]
    if reason is not None:
      skipped.append({"path": rel, "reason": reason, "detail": detail})
      continue
    split_melodies[build_dataset.split_of(rel, config.validation_percent)
                   ].extend(melodies)
  os.makedirs(output_dir, exist_ok=True)
  splits = {}
  for split, melodies in split_melodies.items():
    num_shards = max(1, math.ceil(len(melodies) / config.melodies_per_shard))
    splits[split] = _write_shards_with_tensorflow(output_dir, split, melodies,
                                                  num_shards)
  summary = {"files_seen": len(files), "files_used": len(files) - len(skipped),
             "melodies": sum(len(m) for m in split_melodies.values()),
             "splits": splits, "skipped": skipped,
             "extraction_stats": dict(sorted(stats.items()))}
  manifests.write_json_atomically(os.path.join(output_dir, "manifest.json"),
                                  summary)
  return summary
