"""MIDI directory -> TFRecords: bad input, manifest, cache, loader, CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline import build_dataset
from data_pipeline import convert
from data_pipeline import dataset
from data_pipeline import tfrecords

import data_midi_helpers as midi_helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _good_files(directory, count):
  paths = []
  for i in range(count):
    sub = directory / f"set{i % 2}"
    sub.mkdir(exist_ok=True)
    notes = midi_helpers.scale_melody(55 + i)
    paths.append(midi_helpers.write_midi(sub / f"good{i}.mid", [(notes, False)]))
  return paths


def _bad_files(directory):
  """One file per bad-input class -> {relative path: expected reason}."""
  good = midi_helpers.write_midi(directory / "tmp_good.mid",
                                 [(midi_helpers.scale_melody(60), False)])
  data = open(good, "rb").read()
  os.remove(good)
  bad = {}
  (directory / "empty.mid").write_bytes(b"")
  bad["empty.mid"] = "empty file"
  (directory / "notes.txt").write_text("not music\n")
  bad["notes.txt"] = "not a MIDI file"
  (directory / "fake.mid").write_bytes(b"RIFFxxxxWAVEfmt " + bytes(100))
  bad["fake.mid"] = "not a MIDI file"
  (directory / "truncated.mid").write_bytes(data[:len(data) // 2])
  bad["truncated.mid"] = "corrupt or truncated MIDI"
  (directory / "corrupt.mid").write_bytes(b"MThd" + bytes(range(256)) * 4)
  bad["corrupt.mid"] = "corrupt or truncated MIDI"
  drums = [(36, s, s + 1) for s in range(0, 128, 2)]
  midi_helpers.write_midi(directory / "drums.mid", [(drums, True)])
  bad["drums.mid"] = "drum-only"
  chords = []
  for bar in range(8):
    for pitch in (60, 64, 67):
      chords.append((pitch + bar % 3, bar * 16, bar * 16 + 16))
  midi_helpers.write_midi(directory / "chords.mid", [(chords, False)])
  bad["chords.mid"] = "polyphonic-only"
  midi_helpers.write_midi(directory / "silent.mid", [([], False)])
  bad["silent.mid"] = "no notes"
  return bad


def test_bad_input_skipped_with_reasons_and_counts_add_up(tmp_path):
  midi_dir = tmp_path / "midi"
  midi_dir.mkdir()
  good = _good_files(midi_dir, 4)
  bad = _bad_files(midi_dir)
  out = tmp_path / "out"
  manifest = build_dataset.build_dataset(midi_dir, out, num_workers=1,
                                         log=lambda m: None)
  skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
  assert skipped == bad
  assert set(convert.SKIP_REASONS) >= set(skipped.values())
  assert manifest["files_seen"] == len(good) + len(bad)
  assert manifest["files_used"] == len(good)
  assert manifest["files_used"] + manifest["files_skipped"] == \
      manifest["files_seen"]
  assert sum(manifest["skip_reasons"].values()) == manifest["files_skipped"]
  splits = manifest["splits"]
  assert splits["train"]["files"] + splits["validation"]["files"] == len(good)
  assert (splits["train"]["melodies"] + splits["validation"]["melodies"] ==
          manifest["melodies"] == len(good))
  assert manifest["steps"] == 64 * len(good)
  # Nothing lost: every good melody is in the records, exactly.
  records = [t for split in tfrecords.SPLITS
             for t in dataset.melody_dataset(out, split).as_numpy_iterator()]
  assert len(records) == len(good)
  expected = midi_helpers.expected_scale_tokens(14)
  for tokens in records:
    assert tokens.dtype == np.int32
    assert tokens.tolist() == expected
  on_disk = json.load(open(out / "manifest.json"))
  assert on_disk["fingerprint"] == manifest["fingerprint"]
  for split in tfrecords.SPLITS:
    for name in on_disk["splits"][split]["shards"]:
      assert (out / name).exists()


def test_directory_without_melodies_names_it(tmp_path):
  midi_dir = tmp_path / "nothing_here"
  midi_dir.mkdir()
  _bad_files(midi_dir)
  with pytest.raises(build_dataset.NoUsableMelodiesError,
                     match="nothing_here"):
    build_dataset.build_dataset(midi_dir, tmp_path / "out", num_workers=1,
                                log=lambda m: None)
  empty = tmp_path / "empty_dir"
  empty.mkdir()
  with pytest.raises(build_dataset.NoUsableMelodiesError, match="empty_dir"):
    build_dataset.build_dataset(empty, tmp_path / "out2", num_workers=1,
                                log=lambda m: None)
  with pytest.raises(NotADirectoryError, match="missing_dir"):
    build_dataset.build_dataset(tmp_path / "missing_dir", tmp_path / "o3",
                                log=lambda m: None)


def test_cache_hit_then_rebuild_on_change(tmp_path):
  midi_dir = tmp_path / "midi"
  midi_dir.mkdir()
  _good_files(midi_dir, 3)
  out = tmp_path / "out"
  first = build_dataset.build_dataset(midi_dir, out, num_workers=1,
                                      log=lambda m: None)
  assert not first["cached"]
  second = build_dataset.build_dataset(midi_dir, out, num_workers=1,
                                       log=lambda m: None)
  assert second["cached"]
  assert second["fingerprint"] == first["fingerprint"]
  # A config change invalidates the cache.
  config = build_dataset.PipelineConfig(validation_percent=50.0)
  third = build_dataset.build_dataset(midi_dir, out, config, num_workers=1,
                                      log=lambda m: None)
  assert not third["cached"]
  # So does a new file; old shards are replaced, not mixed in.
  midi_helpers.write_midi(midi_dir / "new.mid",
                          [(midi_helpers.scale_melody(62), False)])
  fourth = build_dataset.build_dataset(midi_dir, out, config, num_workers=1,
                                       log=lambda m: None)
  assert not fourth["cached"] and fourth["melodies"] == 4
  names = sorted(n for n in os.listdir(out) if n.endswith(".tfrecord"))
  listed = sorted(n for s in fourth["splits"].values() for n in s["shards"])
  assert names == listed


def test_split_is_deterministic_by_path():
  paths = [f"dir/{i}.mid" for i in range(2000)]
  splits = [build_dataset.split_of(p, 10.0) for p in paths]
  assert splits == [build_dataset.split_of(p, 10.0) for p in paths]
  share = splits.count("validation") / len(splits)
  assert 0.07 < share < 0.13


def test_parallel_workers_match_serial(tmp_path):
  midi_dir = tmp_path / "midi"
  midi_dir.mkdir()
  _good_files(midi_dir, 8)
  (midi_dir / "broken.mid").write_bytes(b"MThd\x00\x00")
  serial = build_dataset.build_dataset(midi_dir, tmp_path / "a",
                                       num_workers=1, log=lambda m: None)
  parallel = build_dataset.build_dataset(midi_dir, tmp_path / "b",
                                         num_workers=2, log=lambda m: None)
  for key in ("files_seen", "files_used", "melodies", "steps", "skipped",
              "splits"):
    assert serial[key] == parallel[key]
  for split in tfrecords.SPLITS:
    for name in serial["splits"][split]["shards"]:
      assert (open(tmp_path / "a" / name, "rb").read() ==
              open(tmp_path / "b" / name, "rb").read())


def test_batched_padded_and_bucketed(tmp_path):
  midi_dir = tmp_path / "midi"
  midi_dir.mkdir()
  for i, bars in enumerate((4, 5, 6, 8, 9)):
    midi_helpers.write_midi(midi_dir / f"m{i}.mid",
                            [(midi_helpers.scale_melody(60, bars=bars), False)])
  out = tmp_path / "out"
  build_dataset.build_dataset(
      midi_dir, out, build_dataset.PipelineConfig(validation_percent=0.0),
      num_workers=1, log=lambda m: None)
  ds = dataset.melody_dataset(out, "train")
  tokens, lengths = next(iter(dataset.batched(ds, 5, shuffle=False)))
  assert tokens.dtype.name == "int32" and lengths.dtype.name == "int32"
  assert sorted(lengths.numpy().tolist()) == [64, 80, 96, 128, 144]
  assert tokens.shape == (5, 144)
  for row, n in zip(tokens.numpy(), lengths.numpy()):
    assert (row[n:] == dataset.PAD_TOKEN).all()
  tokens, lengths = next(iter(dataset.batched(ds, 5, max_length=70,
                                              shuffle=True, seed=1)))
  assert tokens.shape == (5, 70)
  assert sorted(lengths.numpy().tolist()) == [64, 70, 70, 70, 70]
  batches = list(dataset.batched(ds, 2, bucket_boundaries=[90],
                                 shuffle=False))
  seen = sorted(n for _, ls in batches for n in ls.numpy().tolist())
  assert seen == [64, 80, 96, 128, 144]
  for t, ls in batches:
    ls = ls.numpy()
    assert (ls < 90).all() or (ls >= 90).all()
    assert t.shape[1] == ls.max()
  with pytest.raises(ValueError, match="split"):
    dataset.melody_dataset(out, "test")
  with pytest.raises(FileNotFoundError, match="validation"):
    dataset.melody_dataset(tmp_path / "midi", "validation")


def test_cli_bad_flag_fails_fast_naming_it(tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO)
  result = subprocess.run(
      [sys.executable, "-m", "data_pipeline.build_dataset",
       f"--midi_dir={tmp_path / 'nope'}", f"--output_dir={tmp_path / 'o'}"],
      capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
  assert result.returncode != 0
  assert "--midi_dir" in result.stderr
  result = subprocess.run(
      [sys.executable, "-m", "data_pipeline.build_dataset",
       f"--midi_dir={tmp_path}", f"--output_dir={tmp_path / 'o'}",
       "--gap_bars=0"],
      capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
  assert result.returncode != 0
  assert "gap_bars" in result.stderr
