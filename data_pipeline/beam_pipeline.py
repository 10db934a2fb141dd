r"""The dataset build as one Apache Beam pipeline (any Beam runner).

    relative MIDI paths (driver's scan, sorted)
      └─ Parse: convert.process_midi_file (MIDI -> NoteSequence -> melodies),
         each melody encoded as tf.train.Example bytes
           ├─ used files (path, split, records, steps)
           │    ├─ Layout: one global order per split (files by path, melodies
           │    │  in file order); melody i of a split -> shard i % n at i // n
           │    └─ by (split, shard) ─► WriteShard: <split>-SSSSS-of-NNNNN.tfrecord.partial
           ├─ skipped (path, reason, detail) ──┐
           └─ stats (name, count) per bundle ──┴─► Summary: <out>/.pipeline_summary.json

The shard layout and contents are exactly those of a serial loop over the
sorted files (tests/test_data_beam_pipeline.py compares). The driver
(data_pipeline.build_dataset) holds the run lock, runs this pipeline, then
publishes: renames the shards into place and writes manifest.json.

Workers need only note-seq and Beam (records are written by
data_pipeline.tfrecord_format, without TensorFlow); `midi_dir` and
`output_dir` must be paths every worker sees (one machine, or a shared file
system mounted at the same path on a cluster).

Runners (`make_options`): LOCAL_RUNNER ("FnApiRunner", the engine behind
Beam's DirectRunner for batch pipelines, named explicitly because the plain
DirectRunner first tries to download the Prism runner) runs `num_workers`
worker processes (`--direct_running_mode=multi_processing`), or in this
process for one worker. Any other runner (FlinkRunner, SparkRunner,
PortableRunner, ...) takes its settings from the pass-through options.
"""
# Annotations stay strings, which Beam reads as Any: its coders stay those of
# the unannotated code (evaluated hints would change some of them).
from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import math
import os
import shlex
import sys
import threading
import time
from typing import (TYPE_CHECKING, Any, Dict, Iterable, Iterator, List,
                    Mapping, Optional, Sequence, Tuple, Union)

if TYPE_CHECKING:
  from apache_beam.utils.windowed_value import WindowedValue

  from data_pipeline import build_dataset
  from data_pipeline import melodies as melodies_lib


def _import_beam():
  """Imports Beam without its import-time log lines about Google Cloud
  client libraries ("apitools not found", BigQuery; irrelevant here), which
  would also configure the root logger (logging.basicConfig)."""
  root = logging.getLogger()
  sink, level = logging.NullHandler(), root.level
  root.addHandler(sink)  # no basicConfig from logging.warning()
  root.setLevel(logging.ERROR)  # whatever handlers the caller set up
  try:
    import apache_beam  # pylint: disable=g-import-not-at-top
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  finally:
    root.removeHandler(sink)
    root.setLevel(level)
  return apache_beam, pipeline_options


beam, beam_options = _import_beam()

from data_pipeline import atomic_files
from data_pipeline import console
from data_pipeline import convert
from data_pipeline import tfrecord_format

LOCAL_RUNNER = "FnApiRunner"
SUMMARY = ".pipeline_summary.json"
PARTIAL_SUFFIX = ".partial"

_USED, _SKIPPED, _STATS = "used", "skipped", "stats"


def split_of(relative_path: str, validation_percent: float) -> str:
  """'validation' or 'train', from a hash of the path (deterministic)."""
  digest = hashlib.sha1(relative_path.replace(os.sep, "/").encode()).hexdigest()
  bucket = int(digest[:8], 16) % 10000
  return "validation" if bucket < validation_percent * 100 else "train"


def make_options(runner: str = LOCAL_RUNNER,
                 num_workers: Optional[int] = None,
                 extra_options: Union[str, Sequence[str]] = ()
                 ) -> beam_options.PipelineOptions:
  """Beam PipelineOptions: `runner`, `num_workers` as its parallelism, and
  `extra_options` (a string or list of Beam flags) passed through.

  num_workers: local runner: worker processes (None = all CPU cores);
  FlinkRunner: --parallelism; other runners: their own flags decide.
  """
  if isinstance(extra_options, str):
    extra_options = shlex.split(extra_options)
  extra_options = list(extra_options)
  given = {a.split("=", 1)[0].lstrip("-") for a in extra_options
           if a.startswith("--")}
  if "runner" in given:
    raise ValueError("name the runner with --runner, not inside the Beam "
                     "pipeline options")
  settings = {"runner": runner}
  if runner == LOCAL_RUNNER:
    workers = num_workers or os.cpu_count() or 1
    if "direct_num_workers" not in given:
      settings["direct_num_workers"] = workers
    if "direct_running_mode" not in given:
      settings["direct_running_mode"] = ("multi_processing" if workers > 1
                                         else "in_memory")
  elif runner == "FlinkRunner" and num_workers and "parallelism" not in given:
    settings["parallelism"] = num_workers
  return beam_options.PipelineOptions(extra_options, **settings)


@contextlib.contextmanager
def _quiet_beam_logs():
  """Beam's log lines (job service, worker start and stop, each worker's log
  relayed, a failed bundle's traceback: the error itself is raised and
  reported) off the console, unless --verbose / RL_TUNER_TF_VERBOSE."""
  beam_logger = logging.getLogger("apache_beam")
  level = beam_logger.level
  if not console.verbose_requested():
    beam_logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    beam_logger.setLevel(level)


# Beam's worker processes share this process's stderr and log their start,
# stop and, for a failed bundle, the traceback there (their log level is not
# an option the local runner passes on); the driver reports a failure in one
# line (build_dataset.PipelineFailedError). Without --verbose only the
# pipeline's own lines pass.
_KEPT_PREFIX = b"[data_pipeline]"


@contextlib.contextmanager
def _filtered_worker_stderr():
  """Keeps only _KEPT_PREFIX lines, as they come, on file descriptor 2 while
  local worker processes run (they inherit it); everything with --verbose."""
  if console.verbose_requested():
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  read_fd, write_fd = os.pipe()
  os.dup2(write_fd, 2)
  os.close(write_fd)

  def pump():
    writable = True
    with os.fdopen(read_fd, "rb") as pipe:
      for line in pipe:  # drained to the end, or the workers would block
        if writable and line.startswith(_KEPT_PREFIX):
          try:
            os.write(saved, line)
          except OSError:  # e.g. stderr is a file and the disk is full
            writable = False
  thread = threading.Thread(target=pump, name="beam-stderr", daemon=True)
  thread.start()
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)  # the pipe ends when the last worker has exited
    thread.join(timeout=10)
    if not thread.is_alive():
      os.close(saved)


def describe_runner(options: beam_options.PipelineOptions) -> str:
  """'FnApiRunner (multi_processing, 2 workers)', 'FlinkRunner', ..."""
  runner = options.view_as(beam_options.StandardOptions).runner
  if runner == LOCAL_RUNNER:
    direct = options.view_as(beam_options.DirectOptions)
    return (f"{runner} ({direct.direct_running_mode}, "
            f"{direct.direct_num_workers} worker(s))")
  return str(runner)


# ------------------------------------------------------------------ stages --
class ParseMidi(beam.DoFn):
  """Relative path -> used file (path, split, [Example bytes], steps), or a
  'skipped' record; extraction stats to 'stats'."""

  def __init__(self, midi_dir, melody_config, validation_percent, timeout_s,
               progress_every_s):
    super().__init__()
    self._midi_dir = midi_dir
    self._config = melody_config
    self._validation_percent = validation_percent
    self._timeout_s = timeout_s
    self._progress_every_s = progress_every_s

  def setup(self) -> None:
    self._start = self._last = time.time()
    self._done = self._melodies = self._skipped = 0

  def start_bundle(self) -> None:
    self._stats = collections.Counter()

  def process(self, relative_path: str) -> Iterator[
      Union[Tuple[str, str, List[bytes], int], beam.pvalue.TaggedOutput]]:
    melodies, reason, detail, stats = convert.process_midi_file(
        os.path.join(self._midi_dir, relative_path), self._config,
        timeout_s=self._timeout_s)
    self._stats.update(stats)
    self._done += 1
    self._melodies += len(melodies)
    if reason is not None:
      self._skipped += 1
      yield beam.pvalue.TaggedOutput(
          _SKIPPED, {"path": relative_path, "reason": reason,
                     "detail": detail})
    else:
      yield (relative_path, split_of(relative_path, self._validation_percent),
             [tfrecord_format.tokens_to_example_bytes(m) for m in melodies],
             int(sum(len(m) for m in melodies)))
    self._progress()

  def finish_bundle(self) -> Iterator[WindowedValue]:
    # The bundle's extraction stats as one element per name: a few elements
    # per bundle instead of several per file.
    for name, count in sorted(self._stats.items()):
      yield beam.pvalue.TaggedOutput(
          _STATS, beam.transforms.window.GlobalWindows.windowed_value(
              (name, count)))

  def _progress(self):
    now = time.time()
    if not self._progress_every_s or now - self._last < self._progress_every_s:
      return
    self._last = now
    print(f"[data_pipeline] worker {os.getpid()}: {self._done} files, "
          f"{self._melodies} melodies, {self._skipped} skipped, "
          f"{self._done / max(now - self._start, 1e-9):.1f} files/s",
          file=sys.stderr, flush=True)


def make_layout(files: Iterable[Tuple[str, str, int, int]],
                melodies_per_shard: int) -> Dict[str, Dict[str, Any]]:
  """[(path, split, melodies, steps)] of the used files -> the layout.

  {"splits": {split: {"files", "melodies", "steps", "num_shards"}},
   "offsets": {path: index of its first melody within its split}}
  Files are ordered by path (the driver's scan order), so the i-th melody of
  a split is the one a serial loop over the sorted files writes i-th.
  """
  splits = {s: {"files": 0, "melodies": 0, "steps": 0}
            for s in tfrecord_format.SPLITS}
  offsets = {}
  for path, split, count, steps in sorted(files):
    offsets[path] = splits[split]["melodies"]
    splits[split]["files"] += 1
    splits[split]["melodies"] += count
    splits[split]["steps"] += steps
  for split in splits.values():
    split["num_shards"] = (max(1, math.ceil(split["melodies"] /
                                            melodies_per_shard))
                           if offsets else 0)
  return {"splits": splits, "offsets": offsets}


# Melodies AssignShards holds before it passes them on (a bundle may be large).
ASSIGN_FLUSH_RECORDS = 20000


class AssignShards(beam.DoFn):
  """Used files' melodies -> ((split, shard, num_shards), [(position, bytes)]),
  one element per shard per bundle (not one per melody: fewer elements for
  the runner to move and group), or sooner once ``flush_records`` melodies
  are held, so a large bundle's melodies are never all in memory here."""

  def __init__(self, flush_records=None):
    super().__init__()
    self._flush_records = flush_records or ASSIGN_FLUSH_RECORDS

  def start_bundle(self) -> None:
    self._by_shard = collections.defaultdict(list)
    self._held = 0

  def _take(self):
    held, self._by_shard, self._held = (
        self._by_shard, collections.defaultdict(list), 0)
    return [(key, held[key]) for key in sorted(held)]

  def process(self, used: Tuple[str, str, List[bytes], int],
              layout: Mapping[str, Any]
              ) -> Iterator[Tuple[Tuple[str, int, int],
                                  List[Tuple[int, bytes]]]]:
    path, split, records, _ = used
    start = layout["offsets"][path]
    num_shards = layout["splits"][split]["num_shards"]
    for j, record in enumerate(records):
      index = start + j
      self._by_shard[(split, index % num_shards, num_shards)].append(
          (index // num_shards, record))
    self._held += len(records)
    if self._held >= self._flush_records:
      yield from self._take()

  def finish_bundle(self) -> Iterator[WindowedValue]:
    for element in self._take():
      yield beam.transforms.window.GlobalWindows.windowed_value(element)


def _every_shard(layout):
  """One empty marker per shard, so that a split with no melody still gets
  its (empty) shard, as the serial layout has."""
  for split, info in layout["splits"].items():
    for shard in range(info["num_shards"]):
      yield (split, shard, info["num_shards"]), None


def _write_shard(keyed, output_dir):
  (split, shard, num_shards), lists = keyed
  records = sorted(e for entries in lists if entries is not None
                   for e in entries)
  name = tfrecord_format.shard_name(split, shard, num_shards)
  tfrecord_format.write_records(
      os.path.join(output_dir, name + PARTIAL_SUFFIX), (r for _, r in records))
  return {"split": split, "shard": shard, "name": name,
          "melodies": len(records)}


def _write_summary(_, output_dir, layout, shards, skipped, stats):
  splits = {}
  for split, info in layout["splits"].items():
    names = sorted(s["name"] for s in shards if s["split"] == split)
    splits[split] = {"files": info["files"], "melodies": info["melodies"],
                     "steps": info["steps"], "shards": names}
  summary = {
      "files_used": len(layout["offsets"]),
      "splits": splits,
      "skipped": sorted(skipped, key=lambda s: s["path"]),
      "extraction_stats": dict(sorted(stats.items())),
  }
  atomic_files.write_json(os.path.join(output_dir, SUMMARY), summary)
  return summary["files_used"]


def build_pipeline(pipeline: beam.Pipeline, midi_dir: str,
                   relative_paths: Iterable[str], output_dir: str,
                   melody_config: melodies_lib.MelodyConfig,
                   validation_percent: float, melodies_per_shard: int,
                   timeout_s: Optional[float] = None,
                   progress_every_s: float = 10.0) -> beam.pvalue.PCollection:
  """Adds the whole build to `pipeline` (a beam.Pipeline); see the module doc.

  Writes `<output_dir>/<shard>.partial` files and `<output_dir>/SUMMARY`
  ({"files_used", "splits", "skipped", "extraction_stats"}).
  """
  parsed = (
      pipeline
      | "MidiFiles" >> beam.Create(list(relative_paths))
      | "Parse" >> beam.ParDo(ParseMidi(
          midi_dir, melody_config, validation_percent, timeout_s,
          progress_every_s)).with_outputs(_SKIPPED, _STATS, main=_USED))
  used = parsed[_USED]
  layout = (
      used
      | "Counts" >> beam.Map(lambda u: (u[0], u[1], len(u[2]), u[3]))
      | "AllCounts" >> beam.combiners.ToList()
      | "Layout" >> beam.Map(make_layout, melodies_per_shard))
  layout_side = beam.pvalue.AsSingleton(layout)
  melodies = used | "AssignShards" >> beam.ParDo(AssignShards(), layout_side)
  shard_keys = layout | "EveryShard" >> beam.FlatMap(_every_shard)
  shards = (
      (melodies, shard_keys)
      | "Merge" >> beam.Flatten()
      | "ByShard" >> beam.GroupByKey()
      | "WriteShards" >> beam.Map(_write_shard, output_dir))
  stats = parsed[_STATS] | "SumStats" >> beam.CombinePerKey(sum)
  # Collected by a transform, not read as a side input straight from the
  # tagged output: BundleBasedDirectRunner (2.77) hands such a side input
  # every output of the ParDo, whatever its tag.
  skipped = parsed[_SKIPPED] | "AllSkipped" >> beam.combiners.ToList()
  return (
      pipeline
      | "Once" >> beam.Create([None])
      | "Summary" >> beam.Map(
          _write_summary, output_dir, layout=layout_side,
          shards=beam.pvalue.AsList(shards),
          skipped=beam.pvalue.AsSingleton(skipped),
          stats=beam.pvalue.AsDict(stats)))


def run(midi_dir: str, relative_paths: Iterable[str], output_dir: str,
        config: build_dataset.PipelineConfig,
        options: beam_options.PipelineOptions,
        timeout_s: Optional[float] = None,
        progress_every_s: float = 10.0) -> Dict[str, Any]:
  """Runs the pipeline to completion; returns the summary dict."""
  summary_path = os.path.join(output_dir, SUMMARY)
  if os.path.exists(summary_path):
    os.remove(summary_path)
  direct = options.view_as(beam_options.DirectOptions)
  local_processes = (
      options.view_as(beam_options.StandardOptions).runner == LOCAL_RUNNER and
      direct.direct_running_mode == "multi_processing")
  filtered = (_filtered_worker_stderr() if local_processes
              else contextlib.nullcontext())
  with _quiet_beam_logs(), filtered, beam.Pipeline(
      options=options) as pipeline:
    build_pipeline(pipeline, midi_dir, relative_paths, output_dir,
                   config.melody, config.validation_percent,
                   config.melodies_per_shard, timeout_s=timeout_s,
                   progress_every_s=progress_every_s)
  with open(summary_path) as f:
    summary = json.load(f)
  os.remove(summary_path)
  return summary


__all__ = ["LOCAL_RUNNER", "make_options", "describe_runner", "build_pipeline",
           "run", "split_of", "make_layout"]
