r"""Benchmark: embedded corpus build and MIDI pipeline throughput, cold and cached.

    python benchmarks/bench_data_pipeline.py [--root=DIR] [--num_workers=N]

Cold runs build into DIR (default: a fresh temporary directory, deleted
afterwards; give --root to keep the result).  Prints one table:
stage, items, seconds, items/s.  Not a test: numbers depend on the machine.
"""
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rl_tuner_tf import keras_setup  # noqa: E402,F401  (before tensorflow)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from data_pipeline import build_dataset  # noqa: E402
from data_pipeline import corpus  # noqa: E402

_ROOT = flags.DEFINE_string("root", None, "Build here (default: temp dir).")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", os.cpu_count() or 1,
                                    "Worker processes.", lower_bound=1)
_MIDI_DIR = flags.DEFINE_string(
    "midi_dir", None, "Skip the ABC stage and run the MIDI pipeline on this "
    "existing MIDI tree (e.g. generated/corpus_midi); records go under --root.")
_READ_BATCH = flags.DEFINE_integer("read_batch", 128, "Batch size for the "
                                   "tf.data read benchmark.")


def _quiet(_):
  pass


def _cpu_seconds():
  """User+system CPU of this process and its finished children (workers)."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv):
  del argv
  root = _ROOT.value or tempfile.mkdtemp(prefix="bench_corpus_")
  workers = _NUM_WORKERS.value
  rows = []
  try:
    midi_dir = corpus.default_midi_dir(root)
    abc_manifest = os.path.join(root, corpus.ABC_MANIFEST)
    tf_dir = corpus.default_tfrecord_dir(root)
    os.makedirs(root, exist_ok=True)

    if _MIDI_DIR.value:
      midi_dir = _MIDI_DIR.value
      abc = None
      cold_abc = cpu_abc = 0.0
    else:
      t, c = time.time(), _cpu_seconds()
      abc = corpus.build_corpus_midi(midi_dir, abc_manifest,
                                     num_workers=workers, force=True,
                                     log=_quiet)
      cold_abc, cpu_abc = time.time() - t, _cpu_seconds() - c
      rows.append(("ABC -> MIDI, cold", f"{abc['tunes']} tunes", cold_abc,
                   abc["tunes"] / cold_abc, f"{cpu_abc:.0f} CPU-s"))

    t, c = time.time(), _cpu_seconds()
    m = build_dataset.build_dataset(midi_dir, tf_dir, num_workers=workers,
                                    force=True, log=_quiet)
    cold_midi, cpu_midi = time.time() - t, _cpu_seconds() - c
    rows.append(("MIDI -> TFRecords, cold", f"{m['files_seen']} files",
                 cold_midi, m["files_seen"] / cold_midi,
                 f"{m['melodies'] / cold_midi:.0f} mel/s, {cpu_midi:.0f} CPU-s"))
    rows.append(("corpus total, cold", f"{m['melodies']} melodies",
                 cold_abc + cold_midi, m["melodies"] / (cold_abc + cold_midi),
                 f"{cpu_abc + cpu_midi:.0f} CPU-s"))

    t = time.time()
    m2 = build_dataset.build_dataset(midi_dir, tf_dir, num_workers=workers,
                                     log=_quiet)
    cached_midi = time.time() - t
    assert m2["cached"]
    rows.append(("MIDI -> TFRecords, cached", f"{m2['files_seen']} files",
                 cached_midi, m2["files_seen"] / cached_midi,
                 f"{m2['melodies'] / cached_midi:.0f} melodies/s"))

    t = time.time()
    if not _MIDI_DIR.value:
      corpus.ensure_default_corpus(root=root, log=_quiet)
    cached_all = time.time() - t if not _MIDI_DIR.value else cached_midi
    if not _MIDI_DIR.value:
      rows.append(("ensure_default_corpus, cached", "both stages", cached_all,
                   float("nan"), ""))

    from data_pipeline import dataset  # pylint: disable=g-import-not-at-top
    t = time.time()
    n = steps = 0
    for tokens in dataset.melody_dataset(tf_dir, "train"):
      n += 1
      steps += int(tokens.shape[0])
    read = time.time() - t
    rows.append(("read train split (tf.data)", f"{n} melodies", read, n / read,
                 f"{steps / read / 1e6:.2f} M steps/s"))
    t = time.time()
    batches = 0
    for _ in dataset.batched(dataset.melody_dataset(tf_dir, "train"),
                             _READ_BATCH.value, max_length=256):
      batches += 1
    read_b = time.time() - t
    rows.append((f"padded batches of {_READ_BATCH.value}", f"{batches} batches",
                 read_b, batches / read_b, "batches/s"))

    print(f"\nmachine: {os.cpu_count()} CPU cores, {workers} worker(s); "
          f"root {root}")
    if abc:
      print(f"tunes {abc['tunes']}, parsed {abc['parsed']} (note_seq "
            f"{abc['parsed_by']['note_seq']}, music21 "
            f"{abc['parsed_by']['music21']}), failed {abc['failed']}")
    print(f"MIDI files "
          f"{m['files_seen']}, used {m['files_used']}, melodies "
          f"{m['melodies']} (train {m['splits']['train']['melodies']}, "
          f"validation {m['splits']['validation']['melodies']}), steps "
          f"{m['steps']}\n")
    print(f"| {'stage':32s} | {'items':18s} | {'seconds':>8s} | "
          f"{'items/s':>9s} | {'':22s} |")
    print(f"|{'-' * 34}|{'-' * 20}|{'-' * 10}|{'-' * 11}|{'-' * 24}|")
    for stage, items, seconds, rate, extra in rows:
      print(f"| {stage:32s} | {items:18s} | {seconds:8.2f} | {rate:9.1f} | "
            f"{extra:22s} |")
    print(f"\ncold corpus -> TFRecords: {cold_abc + cold_midi:.1f}s wall "
          f"(ABC -> MIDI {cold_abc:.1f}s + MIDI pipeline {cold_midi:.1f}s), "
          f"{cpu_abc + cpu_midi:.0f} CPU-s = {(cpu_abc + cpu_midi) / workers:.0f}s"
          f" on {workers} idle cores; cached: {cached_all:.2f}s")
    print(f"load average now: {os.getloadavg()} (CPU-s are the fair figure "
          "on a shared machine)")
  finally:
    if not _ROOT.value:
      shutil.rmtree(root, ignore_errors=True)
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
