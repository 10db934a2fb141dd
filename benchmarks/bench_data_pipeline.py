r"""Benchmark: embedded corpus build and MIDI pipeline throughput, cold and cached.

    python benchmarks/bench_data_pipeline.py [--root=DIR] [--num_workers=N]
        [--midi_dir=generated/corpus_midi] [--repeats=1]

Cold runs build into DIR (default: a fresh temporary directory, deleted
afterwards; give --root to keep the result).  The cold MIDI -> TFRecords build
runs twice per repeat, alternating the order: the Apache Beam pipeline
(data_pipeline.build_dataset, the production path) and the pre-Beam baseline
(benchmarks/pre_beam_baseline.py: the old multiprocessing Pool, kept here
only to compare against); both must write byte-identical shards, and the
ratio Beam / pre-Beam (median seconds over repeats) is printed (target
<= 1.2).  Prints one table: stage, items, seconds, items/s, and writes the
same figures to <--results_dir>/data_pipeline.json (results_io.py;
docs/speed.md's table).  Not a test: numbers depend on the machine.
"""
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipeline import keras_setup  # noqa: E402,F401  (before tensorflow)

from absl import flags  # noqa: E402

from data_pipeline import console  # noqa: E402
from data_pipeline import corpus  # noqa: E402
import pre_beam_baseline  # noqa: E402  (benchmarks/, the old Pool build)
import results_io  # noqa: E402  (benchmarks/)

_ROOT = flags.DEFINE_string("root", None, "Build here (default: temp dir).")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", os.cpu_count() or 1,
                                    "Worker processes.", lower_bound=1)
_MIDI_DIR = flags.DEFINE_string(
    "midi_dir", None, "Skip the ABC stage and run the MIDI pipeline on this "
    "existing MIDI tree (e.g. generated/corpus_midi); records go under --root.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Cold MIDI -> TFRecords builds "
                                "per pipeline (median reported).",
                                lower_bound=1)
_READ_BATCH = flags.DEFINE_integer("read_batch", 128, "Batch size for the "
                                   "tf.data read benchmark.")
_RESULTS_DIR = results_io.define_flag()


def _quiet(_):
  pass


def _cpu_seconds():
  """User+system CPU of this process and its finished children (workers)."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _same_shards(beam_dir, base_dir, beam_manifest, base_summary):
  """Both builds wrote the same shard files, byte for byte, and skipped the
  same files for the same reasons."""
  names = sorted(n for s in beam_manifest["splits"].values()
                 for n in s["shards"])
  if names != sorted(n for s in base_summary["splits"].values() for n in s):
    return False
  for name in names:
    with open(os.path.join(beam_dir, name), "rb") as f1, open(
        os.path.join(base_dir, name), "rb") as f2:
      if f1.read() != f2.read():
        return False
  return (beam_manifest["skipped"] == base_summary["skipped"] and
          beam_manifest["extraction_stats"] == base_summary["extraction_stats"])


def result_rows(rows, cpu, ratio, identical):
  """The printed table as results_io rows: each stage's seconds (its items
  in the note; the rate follows), the CPU-seconds of the cold stages
  (``cpu``: {stage: CPU-s}) and the Beam / pre-Beam ratio."""
  out = []
  for stage, items, seconds, _, _ in rows:
    out.append(results_io.row(f"{stage}: wall time", seconds, "s",
                              note=items))
    if stage in cpu:
      out.append(results_io.row(f"{stage}: CPU time", cpu[stage], "CPU-s"))
  out.append(results_io.row(
      "cold MIDI -> TFRecords, Beam / pre-Beam (median)", ratio, "ratio",
      target="<= 1.2", note=f"shards byte-identical: {identical}"))
  return out


def main(argv):
  del argv
  load_at_start = results_io.load_average_1m()
  from data_pipeline import build_dataset  # pylint: disable=g-import-not-at-top
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

    # Cold MIDI -> TFRecords: Beam (production) and the pre-Beam baseline,
    # alternating which goes first, each into its own fresh directory.
    base_dir = os.path.join(root, "pre_beam_tfrecords")
    times = {"beam": [], "pre-Beam": []}
    cpus = {"beam": [], "pre-Beam": []}
    for repeat in range(_REPEATS.value):
      order = ("pre-Beam", "beam") if repeat % 2 == 0 else ("beam", "pre-Beam")
      for which in order:
        shutil.rmtree(tf_dir if which == "beam" else base_dir,
                      ignore_errors=True)
        t, c = time.time(), _cpu_seconds()
        if which == "beam":
          m = build_dataset.build_dataset(midi_dir, tf_dir,
                                          num_workers=workers, force=True,
                                          log=_quiet)
        else:
          b = pre_beam_baseline.build(midi_dir, base_dir,
                                      build_dataset.PipelineConfig(), workers)
        times[which].append(time.time() - t)
        cpus[which].append(_cpu_seconds() - c)
    identical = _same_shards(tf_dir, base_dir, m, b)
    cold_midi, cpu_midi = statistics.median(times["beam"]), statistics.median(
        cpus["beam"])
    cold_base = statistics.median(times["pre-Beam"])
    rows.append(("MIDI -> TFRecords, cold, pre-Beam", f"{b['files_seen']} files",
                 cold_base, b["files_seen"] / cold_base,
                 f"{statistics.median(cpus['pre-Beam']):.0f} CPU-s"))
    rows.append(("MIDI -> TFRecords, cold, Beam", f"{m['files_seen']} files",
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
    print(f"| {'stage':34s} | {'items':18s} | {'seconds':>8s} | "
          f"{'items/s':>9s} | {'':22s} |")
    print(f"|{'-' * 36}|{'-' * 20}|{'-' * 10}|{'-' * 11}|{'-' * 24}|")
    for stage, items, seconds, rate, extra in rows:
      print(f"| {stage:34s} | {items:18s} | {seconds:8.2f} | {rate:9.1f} | "
            f"{extra:22s} |")
    print(f"\ncold MIDI -> TFRecords ({_REPEATS.value} run(s) each, median): "
          f"Beam {cold_midi:.1f}s on {m['runner']} ({workers} worker(s)), "
          f"pre-Beam Pool {cold_base:.1f}s; ratio Beam / pre-Beam "
          f"{cold_midi / cold_base:.2f} (target <= 1.2); shards byte-identical: "
          f"{identical}")
    print(f"  all runs, seconds: Beam {[round(x, 1) for x in times['beam']]}, "
          f"pre-Beam {[round(x, 1) for x in times['pre-Beam']]}")
    print(f"cold corpus -> TFRecords: {cold_abc + cold_midi:.1f}s wall "
          f"(ABC -> MIDI {cold_abc:.1f}s + MIDI pipeline {cold_midi:.1f}s), "
          f"{cpu_abc + cpu_midi:.0f} CPU-s = {(cpu_abc + cpu_midi) / workers:.0f}s"
          f" on {workers} idle cores; cached: {cached_all:.2f}s")
    print(f"load average now: {os.getloadavg()} (CPU-s are the fair figure "
          "on a shared machine)")
    cpu = {"MIDI -> TFRecords, cold, pre-Beam": statistics.median(
               cpus["pre-Beam"]),
           "MIDI -> TFRecords, cold, Beam": cpu_midi,
           "corpus total, cold": cpu_abc + cpu_midi}
    if abc:
      cpu["ABC -> MIDI, cold"] = cpu_abc
    results_io.write("data_pipeline",
                     result_rows(rows, cpu, cold_midi / cold_base, identical),
                     sys.argv, _RESULTS_DIR.value, load_at_start)
  finally:
    if not _ROOT.value:
      shutil.rmtree(root, ignore_errors=True)
  return 0


if __name__ == "__main__":
  console.run(lambda argv: sys.exit(main(argv)))
