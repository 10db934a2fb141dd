"""The Beam pipeline (data_pipeline/beam_pipeline.py) against a serial loop."""
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import beam_pipeline
from data_pipeline import build_dataset
from data_pipeline import convert
from data_pipeline import tfrecord_format
from data_pipeline import tfrecords

import data_midi_helpers as midi_helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = build_dataset.PipelineConfig(validation_percent=40.0,
                                      melodies_per_shard=3)


def _midi_tree(directory):
  """Good files (one or two melodies each, in nested folders) and bad ones."""
  for i in range(14):
    sub = directory / f"part{i % 3}" / ("deep" if i % 4 == 0 else "")
    sub.mkdir(parents=True, exist_ok=True)
    notes = midi_helpers.scale_melody(50 + i, bars=4 + i % 3)
    if i % 3 == 0:  # a second melody after two silent bars
      offset = notes[-1][2] + 32
      notes += [(p + 2, s + offset, e + offset)
                for p, s, e in midi_helpers.scale_melody(57 + i)]
    midi_helpers.write_midi(sub / f"tune{i:02d}.mid", [(notes, False)])
  (directory / "empty.mid").write_bytes(b"")
  (directory / "part1" / "readme.txt").write_text("not music\n")
  (directory / "part2" / "cut.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00")
  midi_helpers.write_midi(directory / "drums.mid",
                          [([(36, s, s + 1) for s in range(0, 64, 2)], True)])


def _serial_reference(midi_dir, config):
  """Today's semantics as a plain loop: files in scan (path) order, melodies
  in file order, split by path hash, melody i of a split in shard i % n."""
  melodies = {split: [] for split in tfrecords.SPLITS}
  skipped = []
  for rel, _, _ in build_dataset.scan_files(midi_dir):
    found, reason, detail, _ = convert.process_midi_file(
        os.path.join(midi_dir, rel), config.melody)
    if reason is not None:
      skipped.append({"path": rel, "reason": reason, "detail": detail})
    else:
      melodies[build_dataset.split_of(rel, config.validation_percent)].extend(
          m.tolist() for m in found)
  shards = {}
  for split, found in melodies.items():
    n = max(1, math.ceil(len(found) / config.melodies_per_shard))
    for i in range(n):
      shards[tfrecords.shard_name(split, i, n)] = found[i::n]
  return melodies, shards, skipped


def _read_shard(path):
  return [t.tolist() for t in tf.data.TFRecordDataset(path)
          .map(tfrecords.parse_tokens).as_numpy_iterator()]


@pytest.mark.parametrize("flush_records", [None, 1])
def test_beam_pipeline_writes_what_a_serial_loop_writes(tmp_path, monkeypatch,
                                                        flush_records):
  if flush_records:  # AssignShards passes melodies on one file at a time
    monkeypatch.setattr(beam_pipeline, "ASSIGN_FLUSH_RECORDS", flush_records)
  midi_dir = tmp_path / "midi"
  _midi_tree(midi_dir)
  out = tmp_path / "out"
  manifest = build_dataset.build_dataset(midi_dir, out, CONFIG, num_workers=1,
                                         log=lambda m: None)
  melodies, shards, skipped = _serial_reference(str(midi_dir), CONFIG)
  assert all(len(m) >= 3 for m in melodies.values())  # several shards each
  assert manifest["runner"] == beam_pipeline.LOCAL_RUNNER
  assert manifest["skipped"] == skipped
  assert {s["reason"] for s in skipped} == {
      "empty file", "not a MIDI file", "corrupt or truncated MIDI", "drum-only"}
  written = sorted(n for s in manifest["splits"].values() for n in s["shards"])
  assert written == sorted(shards)
  assert sorted(n for n in os.listdir(out) if "tfrecord" in n) == written
  for name, expected in shards.items():
    assert _read_shard(str(out / name)) == expected, name
  for split, expected in melodies.items():
    info = manifest["splits"][split]
    assert info["melodies"] == len(expected)
    assert info["steps"] == sum(len(m) for m in expected)
    n = len(info["shards"])
    per_shard = [_read_shard(str(out / name)) for name in info["shards"]]
    interleaved = [per_shard[i % n][i // n] for i in range(len(expected))]
    assert interleaved == expected
  assert not [n for n in os.listdir(out) if n.endswith("partial") or
              n == beam_pipeline.SUMMARY]


def test_another_runner_writes_the_same_bytes(tmp_path):
  """The pipeline runs unchanged on another Beam runner, chosen by option."""
  midi_dir = tmp_path / "midi"
  _midi_tree(midi_dir)
  outputs = {}
  for runner in (beam_pipeline.LOCAL_RUNNER, "BundleBasedDirectRunner"):
    out = tmp_path / runner
    manifest = build_dataset.build_dataset(midi_dir, out, CONFIG,
                                           num_workers=1, runner=runner,
                                           log=lambda m: None)
    assert manifest["runner"] == runner
    outputs[runner] = ({n: (out / n).read_bytes() for n in os.listdir(out)
                        if n.endswith(".tfrecord")},
                       {k: manifest[k] for k in ("splits", "skipped",
                                                 "extraction_stats")})
  assert outputs[beam_pipeline.LOCAL_RUNNER] == outputs[
      "BundleBasedDirectRunner"]


def test_records_are_tensorflows_bytes(tmp_path):
  rng = np.random.default_rng(0)
  melodies = [rng.integers(0, 38, n) for n in (1, 64, 127, 128, 5000)]
  melodies.append(np.array([0, 1, 300, 37]))  # a multi-byte varint
  reference = str(tmp_path / "tf.tfrecord")
  with tf.io.TFRecordWriter(reference) as writer:
    for tokens in melodies:
      example = tf.train.Example(features=tf.train.Features(feature={
          "tokens": tf.train.Feature(int64_list=tf.train.Int64List(
              value=[int(t) for t in tokens]))}))
      assert tfrecord_format.tokens_to_example_bytes(tokens) == (
          example.SerializeToString())
      writer.write(example.SerializeToString())
  ours = tfrecords.write_shard(str(tmp_path / "ours.tfrecord"), melodies)
  assert open(ours, "rb").read() == open(reference, "rb").read()
  assert [m.tolist() for m in melodies] == _read_shard(ours)


def test_options_name_the_runner_and_its_parallelism():
  options = beam_pipeline.make_options(num_workers=1)
  assert beam_pipeline.describe_runner(options) == (
      "FnApiRunner (in_memory, 1 worker(s))")
  options = beam_pipeline.make_options(num_workers=3)
  assert beam_pipeline.describe_runner(options) == (
      "FnApiRunner (multi_processing, 3 worker(s))")
  options = beam_pipeline.make_options(
      num_workers=3, extra_options="--direct_running_mode=multi_threading")
  assert "multi_threading" in beam_pipeline.describe_runner(options)
  options = beam_pipeline.make_options(
      "FlinkRunner", 8, "--flink_master=host:8081 --environment_type=LOOPBACK")
  flink = options.get_all_options()
  assert (flink["runner"], flink["parallelism"], flink["flink_master"]) == (
      "FlinkRunner", 8, "host:8081")
  with pytest.raises(ValueError, match="--runner"):
    beam_pipeline.make_options(extra_options=["--runner=SparkRunner"])


def _busy_hang(*args, **kwargs):
  del args, kwargs
  while True:
    pass


def test_parse_timeout_in_a_worker_thread(monkeypatch, tmp_path):
  """Beam's SDK workers run bundles in threads: the timeout works there too,
  and a parse that finished in time raises nothing later."""
  path = str(tmp_path / "x.mid")
  midi_helpers.write_midi(path, [(midi_helpers.scale_melody(60), False)])
  results = []
  worker = threading.Thread(target=lambda: results.append(
      convert.process_midi_file(path, timeout_s=0.3)) or time.sleep(0.6) or
                            results.append("alive"))
  worker.start()
  worker.join(10)
  assert results[0][1] is None and len(results[0][0]) == 1
  assert results[1] == "alive"
  monkeypatch.setattr(convert, "midi_file_to_melodies", _busy_hang)
  start = time.time()
  worker = threading.Thread(target=lambda: results.append(
      convert.process_midi_file(path, timeout_s=0.3)))
  worker.start()
  worker.join(10)
  assert time.time() - start < 5
  assert results[2][:2] == ([], "parse timeout")


def test_a_hanging_file_is_skipped_by_the_pipeline(monkeypatch, tmp_path):
  midi_dir = tmp_path / "midi"
  midi_dir.mkdir()
  for i in range(3):
    midi_helpers.write_midi(midi_dir / f"ok{i}.mid",
                            [(midi_helpers.scale_melody(60 + i), False)])
  midi_helpers.write_midi(midi_dir / "hangs.mid",
                          [(midi_helpers.scale_melody(62), False)])
  real = convert.midi_file_to_melodies

  def maybe_hang(path, *args, **kwargs):
    if path.endswith("hangs.mid"):
      _busy_hang()
    return real(path, *args, **kwargs)
  monkeypatch.setattr(convert, "midi_file_to_melodies", maybe_hang)
  manifest = build_dataset.build_dataset(midi_dir, tmp_path / "out",
                                         num_workers=1, file_timeout_s=0.5,
                                         log=lambda m: None)
  assert [(s["path"], s["reason"]) for s in manifest["skipped"]] == [
      ("hangs.mid", "parse timeout")]
  assert manifest["melodies"] == 3


def test_cli_refuses_a_runner_inside_the_beam_options(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "data_pipeline.build_dataset",
       f"--midi_dir={tmp_path}", f"--output_dir={tmp_path / 'o'}",
       "--beam_pipeline_options=--runner=SparkRunner --parallelism=2"],
      capture_output=True, text=True, cwd=REPO, timeout=120,
      env=dict(os.environ, PYTHONPATH=REPO))
  assert result.returncode != 0
  assert "--beam_pipeline_options" in result.stderr


def test_what_the_workers_import_brings_no_tensorflow():
  """Beam starts each worker as a fresh process that imports the transforms'
  modules: without TensorFlow (several seconds per worker) among them, also
  on a cluster's workers, whose environment lacks TF_CPP_MIN_LOG_LEVEL (with
  it set, as a local run's workers inherit it, keras_setup skips its import)."""
  code = ("import sys\n"
          "import data_pipeline.beam_pipeline, data_pipeline.convert, "
          "data_pipeline.melodies, data_pipeline.tfrecord_format\n"
          "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] "
          "in ('tensorflow', 'keras', 'tf_keras')))\n")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "RL_TUNER_TF_VERBOSE")}
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=300, cwd=repo, env=env)
  assert result.returncode == 0, result.stderr[-2000:]
  # (other lines: e.g. pyfluidsynth announces the library it found)
  loaded = [l for l in result.stdout.splitlines() if l.startswith("LOADED ")]
  assert loaded == ["LOADED []"], result.stdout[-500:]
