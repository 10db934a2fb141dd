r"""Directory tree of MIDI files -> sharded TFRecords of token melodies + manifest.

    python -m data_pipeline.build_dataset --midi_dir=DIR --output_dir=OUT

Every regular file under DIR (hidden files and OUT excluded) is read; files are
recognised by their MThd header, not their extension.  Files are parsed in
parallel worker processes (note-seq only, no TensorFlow), melodies are cut and
encoded (data_pipeline.melodies), and the results are written, in sorted path
order, to OUT as ``{split}-{i:05d}-of-{n:05d}.tfrecord`` plus ``manifest.json``.

Split: a file goes to validation when the first 8 hex digits of
sha1(relative path) mod 10000 < validation_percent * 100, so the split is
deterministic and all melodies of one file share a split.

Cache: the manifest records a fingerprint of the file list (relative paths,
sizes, mtimes) and of the config; a run that finds the same fingerprint and all
its shards returns the manifest without parsing anything.
"""
from rl_tuner_tf import keras_setup  # noqa: F401  (before tensorflow)

import collections
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time

from data_pipeline import manifests
from data_pipeline import run_lock
from data_pipeline import melodies as melodies_lib

PIPELINE_VERSION = 1
MANIFEST = "manifest.json"


class NoUsableMelodiesError(ValueError):
  """Raised when a directory yields no melody at all."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything that changes the output (all of it is fingerprinted)."""
  melody: melodies_lib.MelodyConfig = melodies_lib.MelodyConfig()
  validation_percent: float = 10.0
  melodies_per_shard: int = 4096

  def validate(self):
    self.melody.validate()
    if not 0.0 <= self.validation_percent < 100.0:
      raise ValueError("validation_percent must be in [0, 100), got "
                       f"{self.validation_percent}")
    if self.melodies_per_shard < 1:
      raise ValueError("melodies_per_shard must be >= 1, got "
                       f"{self.melodies_per_shard}")
    return self

  def to_dict(self):
    return {"pipeline_version": PIPELINE_VERSION, **dataclasses.asdict(self)}


def scan_files(midi_dir, exclude_dirs=()):
  """Sorted [(relative path, size, mtime_ns)] of regular, non-hidden files."""
  midi_dir = os.path.abspath(midi_dir)
  excluded = {os.path.abspath(d) for d in exclude_dirs}
  found = []
  for root, dirs, files in os.walk(midi_dir):
    dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                     os.path.join(root, d) not in excluded)
    for name in files:
      if name.startswith("."):
        continue
      path = os.path.join(root, name)
      try:
        st = os.stat(path)
      except OSError:
        continue
      if not os.path.isfile(path):
        continue
      found.append((os.path.relpath(path, midi_dir), st.st_size, st.st_mtime_ns))
  found.sort()
  return found


def fingerprint(files, config):
  h = hashlib.sha256()
  h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
  for rel, size, mtime in files:
    h.update(f"{rel}\0{size}\0{mtime}\n".encode())
  return h.hexdigest()


def split_of(relative_path, validation_percent):
  """'validation' or 'train', from a hash of the path (deterministic)."""
  digest = hashlib.sha1(relative_path.replace(os.sep, "/").encode()).hexdigest()
  bucket = int(digest[:8], 16) % 10000
  return "validation" if bucket < validation_percent * 100 else "train"


# ----------------------------------------------------------------- workers --
_WORKER = {}


def _init_worker(midi_dir, melody_config, timeout_s=None):
  _WORKER["midi_dir"] = midi_dir
  _WORKER["config"] = melody_config
  _WORKER["timeout_s"] = timeout_s


def _work(relative_path):
  # Imported here so that spawned workers load note-seq but never TensorFlow.
  from data_pipeline import convert  # pylint: disable=g-import-not-at-top
  path = os.path.join(_WORKER["midi_dir"], relative_path)
  melodies, reason, detail, stats = convert.process_midi_file(
      path, _WORKER["config"], timeout_s=_WORKER.get("timeout_s"))
  return relative_path, melodies, reason, detail, stats


def _pool_context():
  # fork is cheap, but forking a process that already runs TensorFlow's
  # threads is unsafe: spawn fresh workers then.
  if "tensorflow" in sys.modules or sys.platform != "linux":
    return multiprocessing.get_context("spawn")
  return multiprocessing.get_context("fork")


def _parse_all(midi_dir, relative_paths, melody_config, num_workers,
               progress_every_s, log, timeout_s=None):
  """Yields worker results in completion order, logging progress."""
  total = len(relative_paths)
  start = last = time.time()
  done = melodies = skipped = 0

  def progress(final=False):
    elapsed = max(time.time() - start, 1e-9)
    rate = done / elapsed
    eta = (total - done) / rate if rate > 0 else float("inf")
    log(f"[data_pipeline] {done}/{total} files, {melodies} melodies, "
        f"{skipped} skipped, {rate:.1f} files/s, "
        + (f"{elapsed:.1f}s" if final else f"ETA {eta:.0f}s"))

  if num_workers <= 1 or total < 8:
    _init_worker(midi_dir, melody_config, timeout_s)
    results = map(_work, relative_paths)
    pool = None
  else:
    pool = _pool_context().Pool(num_workers, initializer=_init_worker,
                                initargs=(midi_dir, melody_config, timeout_s))
    chunk = max(1, min(32, total // (num_workers * 8)))
    results = pool.imap_unordered(_work, relative_paths, chunksize=chunk)
  try:
    for result in results:
      done += 1
      melodies += len(result[1])
      skipped += result[2] is not None
      if progress_every_s and time.time() - last >= progress_every_s:
        last = time.time()
        progress()
      yield result
  finally:
    if pool is not None:
      pool.close()
      pool.join()
  if progress_every_s and total >= 8:
    progress(final=True)


def load_manifest(output_dir):
  path = os.path.join(output_dir, MANIFEST)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _cache_valid(manifest, fp, output_dir):
  if not manifest or manifest.get("fingerprint") != fp:
    return False
  for split in manifest.get("splits", {}).values():
    for name in split.get("shards", []):
      if not os.path.exists(os.path.join(output_dir, name)):
        return False
  return True


def build_dataset(midi_dir, output_dir, config=PipelineConfig(),
                  num_workers=None, force=False, progress_every_s=10.0,
                  log=None, file_timeout_s=None):
  """Builds (or finds cached) TFRecords for every MIDI file under `midi_dir`.

  Returns the manifest dict (with "cached": True when nothing was rebuilt).
  Raises NoUsableMelodiesError naming `midi_dir` when no file yields a melody,
  NotADirectoryError when `midi_dir` is not a directory,
  run_lock.RunLockedError when another process builds into `output_dir`.
  file_timeout_s: a file that takes longer to parse is skipped ("parse
  timeout"); default convert.DEFAULT_TIMEOUT_S.
  """
  log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
  config.validate()
  midi_dir = os.path.abspath(midi_dir)
  output_dir = os.path.abspath(output_dir)
  if not os.path.isdir(midi_dir):
    raise NotADirectoryError(f"MIDI directory does not exist: {midi_dir}")
  with run_lock.hold(output_dir, log=log):
    return _build_locked(midi_dir, output_dir, config, num_workers, force,
                         progress_every_s, log, file_timeout_s)


def _build_locked(midi_dir, output_dir, config, num_workers, force,
                  progress_every_s, log, file_timeout_s):
  if file_timeout_s is None:
    from data_pipeline import convert  # pylint: disable=g-import-not-at-top
    file_timeout_s = convert.DEFAULT_TIMEOUT_S
  t0 = time.time()
  files = scan_files(midi_dir, exclude_dirs=[output_dir])
  fp = fingerprint(files, config)
  manifest = load_manifest(output_dir)
  if not force and _cache_valid(manifest, fp, output_dir):
    manifest["cached"] = True
    log(f"[data_pipeline] cache hit: {output_dir} ({manifest['melodies']} "
        f"melodies from {manifest['files_used']} files, checked in "
        f"{time.time() - t0:.2f}s)")
    return manifest

  if num_workers is None:
    num_workers = os.cpu_count() or 1
  log(f"[data_pipeline] parsing {len(files)} files under {midi_dir} with "
      f"{num_workers} worker(s)")
  by_path = {}
  stats = collections.Counter()
  for rel, melodies, reason, detail, file_stats in _parse_all(
      midi_dir, [f[0] for f in files], config.melody, num_workers,
      progress_every_s, log, timeout_s=file_timeout_s):
    by_path[rel] = (melodies, reason, detail)
    stats.update(file_stats)
  t_parse = time.time() - t0

  split_melodies = {"train": [], "validation": []}
  split_files = collections.Counter()
  skipped = []
  for rel, _, _ in files:
    melodies, reason, detail = by_path[rel]
    if reason is not None:
      skipped.append({"path": rel, "reason": reason, "detail": detail})
      continue
    split = split_of(rel, config.validation_percent)
    split_files[split] += 1
    split_melodies[split].extend(melodies)

  files_used = sum(split_files.values())
  skip_reasons = dict(sorted(collections.Counter(
      s["reason"] for s in skipped).items()))
  if not files_used:
    raise NoUsableMelodiesError(
        f"No usable melody in directory {midi_dir}: {len(files)} files seen, "
        f"skipped by reason: {skip_reasons or 'no files'}")

  # TensorFlow only in the parent, after the workers are gone.
  from data_pipeline import tfrecords  # pylint: disable=g-import-not-at-top
  t1 = time.time()
  os.makedirs(output_dir, exist_ok=True)
  manifest_path = os.path.join(output_dir, MANIFEST)
  if os.path.exists(manifest_path):
    os.remove(manifest_path)  # invalid until the new one is written
  tfrecords.remove_shards(output_dir)
  splits = {}
  for split, melodies in split_melodies.items():
    num_shards = max(1, math.ceil(len(melodies) / config.melodies_per_shard))
    names = tfrecords.write_shards(output_dir, split, melodies, num_shards)
    splits[split] = {
        "files": split_files[split],
        "melodies": len(melodies),
        "steps": int(sum(len(m) for m in melodies)),
        "shards": names,
    }
  t_write = time.time() - t1

  manifest = {
      "fingerprint": fp,
      "midi_dir": midi_dir,
      "config": config.to_dict(),
      "files_seen": len(files),
      "files_used": files_used,
      "files_skipped": len(skipped),
      "skip_reasons": skip_reasons,
      "melodies": sum(s["melodies"] for s in splits.values()),
      "steps": sum(s["steps"] for s in splits.values()),
      "splits": splits,
      "extraction_stats": dict(sorted(stats.items())),
      "seconds": {"parse": round(t_parse, 2), "write": round(t_write, 2),
                  "total": round(time.time() - t0, 2)},
      "num_workers": num_workers,
      "skipped": skipped,
  }
  manifests.write_json_atomically(manifest_path, manifest)
  manifest["cached"] = False
  log(f"[data_pipeline] wrote {manifest['melodies']} melodies "
      f"({manifest['steps']} steps; train {splits['train']['melodies']}, "
      f"validation {splits['validation']['melodies']}) from {files_used} of "
      f"{len(files)} files to {output_dir} in {time.time() - t0:.1f}s "
      f"({len(skipped)} skipped: {skip_reasons})")
  return manifest


# --------------------------------------------------------------------- CLI --
def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("midi_dir", None, "Directory tree of MIDI files.")
  flags.DEFINE_string("output_dir", None, "Where TFRecords + manifest go.")
  flags.DEFINE_float("gap_bars", 1.0, "Silence (bars) that ends a melody.")
  flags.DEFINE_integer("min_bars", 4, "Shortest melody kept, in bars.")
  flags.DEFINE_integer("max_steps", 512, "Longer melodies are truncated "
                       "(0 = no limit).")
  flags.DEFINE_integer("min_unique_pitches", 5, "Fewest distinct pitches.")
  flags.DEFINE_float("validation_percent", 10.0, "Share of files (by path "
                     "hash) in the validation split.")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1,
                       "Parsing processes.")
  flags.DEFINE_boolean("force", False, "Rebuild even if the cache matches.")
  flags.DEFINE_float("file_timeout_s", 30.0, "A file whose parse takes "
                     "longer is skipped (reason 'parse timeout').")
  flags.mark_flags_as_required(["midi_dir", "output_dir"])
  flags.register_validator("midi_dir", lambda v: v is None or os.path.isdir(v),
                           message="--midi_dir must be an existing directory")
  flags.register_validator("gap_bars", lambda v: v > 0,
                           message="--gap_bars must be > 0")
  flags.register_validator("min_bars", lambda v: v >= 0,
                           message="--min_bars must be >= 0")
  flags.register_validator("max_steps", lambda v: v >= 0,
                           message="--max_steps must be >= 0")
  flags.register_validator("min_unique_pitches", lambda v: v >= 1,
                           message="--min_unique_pitches must be >= 1")
  flags.register_validator("validation_percent", lambda v: 0 <= v < 100,
                           message="--validation_percent must be in [0, 100)")
  flags.register_validator("num_workers", lambda v: v >= 1,
                           message="--num_workers must be >= 1")
  return flags.FLAGS


FLAGS = None  # absl flags, defined only when run as a program


def _io_errors():
  """OSError, and TensorFlow's I/O errors once it is loaded (a full disk
  while writing shards). Evaluated only when an exception is raised."""
  if "tensorflow" in sys.modules:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return (OSError, tf.errors.OpError)
  return (OSError,)


def main(argv):
  del argv
  flags_ = FLAGS
  config = PipelineConfig(
      melody=melodies_lib.MelodyConfig(
          gap_bars=flags_.gap_bars, min_bars=flags_.min_bars,
          max_steps=flags_.max_steps,
          min_unique_pitches=flags_.min_unique_pitches),
      validation_percent=flags_.validation_percent)
  try:
    manifest = build_dataset(flags_.midi_dir, flags_.output_dir, config,
                             num_workers=flags_.num_workers,
                             force=flags_.force,
                             file_timeout_s=flags_.file_timeout_s)
  except (NoUsableMelodiesError, run_lock.RunLockedError) + _io_errors() as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(json.dumps({k: manifest[k] for k in (
      "files_seen", "files_used", "files_skipped", "skip_reasons", "melodies",
      "steps", "cached")}, indent=1))
  return 0


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  FLAGS = _define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
