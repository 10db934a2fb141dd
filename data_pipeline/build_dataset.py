r"""Directory tree of MIDI files -> sharded TFRecords of token melodies + manifest.

    python -m data_pipeline.build_dataset --midi_dir=DIR --output_dir=OUT

Every regular file under DIR (hidden files and OUT excluded) is read; files are
recognised by their MThd header, not their extension.  The build is one
Apache Beam pipeline (data_pipeline.beam_pipeline): files are parsed by the
runner's workers (note-seq only, no TensorFlow), melodies are cut and encoded
(data_pipeline.melodies), and written, in sorted path order, to OUT as
``{split}-{i:05d}-of-{n:05d}.tfrecord``; this driver then publishes them and
``manifest.json``.  Locally the runner is Beam's FnApiRunner with
``--num_workers`` processes; ``--runner`` and ``--beam_pipeline_options``
run the same pipeline on Flink, Spark, ... (README, "Scaling out").

Split: a file goes to validation when the first 8 hex digits of
sha1(relative path) mod 10000 < validation_percent * 100, so the split is
deterministic and all melodies of one file share a split.

Cache: the manifest records a fingerprint of the file list (relative paths,
sizes, mtimes) and of the config; a run that finds the same fingerprint and all
its shards returns the manifest without parsing anything.
"""
from data_pipeline import keras_setup  # noqa: F401  (before tensorflow)

import collections
import dataclasses
import glob
import hashlib
import json
import os
import shlex
import sys
import time
from typing import (Any, Callable, Dict, Iterable, List, Optional, Sequence,
                    Tuple, Union)

from data_pipeline import atomic_files
from data_pipeline import beam_pipeline
from data_pipeline import manifests
from data_pipeline import run_lock
from data_pipeline import melodies as melodies_lib
from data_pipeline import tfrecord_format
from data_pipeline.beam_pipeline import split_of  # noqa: F401  (public here too)

PIPELINE_VERSION = 1
MANIFEST = "manifest.json"


class NoUsableMelodiesError(ValueError):
  """Raised when a directory yields no melody at all."""


class PipelineFailedError(RuntimeError):
  """The Beam pipeline failed (e.g. a worker could not write a shard)."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything that changes the output (all of it is fingerprinted)."""
  melody: melodies_lib.MelodyConfig = melodies_lib.MelodyConfig()
  validation_percent: float = 10.0
  melodies_per_shard: int = 4096

  def validate(self) -> "PipelineConfig":
    self.melody.validate()
    if not 0.0 <= self.validation_percent < 100.0:
      raise ValueError("validation_percent must be in [0, 100), got "
                       f"{self.validation_percent}")
    if self.melodies_per_shard < 1:
      raise ValueError("melodies_per_shard must be >= 1, got "
                       f"{self.melodies_per_shard}")
    return self

  def to_dict(self) -> Dict[str, Any]:
    return {"pipeline_version": PIPELINE_VERSION, **dataclasses.asdict(self)}


def scan_files(midi_dir: str, exclude_dirs: Iterable[str] = ()
               ) -> List[Tuple[str, int, int]]:
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


def fingerprint(files: Iterable[Tuple[str, int, int]],
                config: PipelineConfig) -> str:
  h = hashlib.sha256()
  h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
  for rel, size, mtime in files:
    h.update(f"{rel}\0{size}\0{mtime}\n".encode())
  return h.hexdigest()


def load_manifest(output_dir: str) -> Optional[Dict[str, Any]]:
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


def build_dataset(midi_dir: str, output_dir: str,
                  config: PipelineConfig = PipelineConfig(),
                  num_workers: Optional[int] = None, force: bool = False,
                  progress_every_s: float = 10.0,
                  log: Optional[Callable[[str], None]] = None,
                  file_timeout_s: Optional[float] = None,
                  runner: str = beam_pipeline.LOCAL_RUNNER,
                  beam_options: Union[str, Sequence[str]] = ()
                  ) -> Dict[str, Any]:
  """Builds (or finds cached) TFRecords for every MIDI file under `midi_dir`.

  Returns the manifest dict (with "cached": True when nothing was rebuilt).
  Raises NoUsableMelodiesError naming `midi_dir` when no file yields a melody,
  NotADirectoryError when `midi_dir` is not a directory,
  run_lock.RunLockedError when another process builds into `output_dir`,
  ValueError for Beam options that name the runner, OSError (in-process
  runner) or PipelineFailedError (worker processes) when writing fails.
  file_timeout_s: a file that takes longer to parse is skipped ("parse
  timeout"); default convert.DEFAULT_TIMEOUT_S.
  runner, beam_options: the Beam runner and pass-through Beam pipeline
  options (a string or a list of flags); num_workers is the local runner's
  worker processes (default: all CPU cores), FlinkRunner's parallelism.
  """
  log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
  config.validate()
  midi_dir = os.path.abspath(midi_dir)
  output_dir = os.path.abspath(output_dir)
  if not os.path.isdir(midi_dir):
    raise NotADirectoryError(f"MIDI directory does not exist: {midi_dir}")
  options = beam_pipeline.make_options(runner, num_workers, beam_options)
  with run_lock.hold(output_dir, log=log):
    return _build_locked(midi_dir, output_dir, config, options, force,
                         progress_every_s, log, file_timeout_s,
                         (runner, num_workers, beam_options))


def _remove_shards(output_dir, partial):
  """Removes the shard files (or, with `partial`, the unpublished ones)."""
  suffix = beam_pipeline.PARTIAL_SUFFIX if partial else ""
  for split in tfrecord_format.SPLITS:
    for path in glob.glob(os.path.join(glob.escape(output_dir),
                                       f"{split}-*-of-*.tfrecord{suffix}")):
      os.remove(path)


def _build_locked(midi_dir, output_dir, config, options, force,
                  progress_every_s, log, file_timeout_s, runner_args):
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

  runner, num_workers, beam_options = runner_args
  if runner == beam_pipeline.LOCAL_RUNNER and len(files) < 8:
    # Worker processes take seconds to start: not worth it for a few files.
    options = beam_pipeline.make_options(runner, 1, beam_options)
  log(f"[data_pipeline] parsing {len(files)} files under {midi_dir} on "
      f"Beam's {beam_pipeline.describe_runner(options)}")
  os.makedirs(output_dir, exist_ok=True)
  _remove_shards(output_dir, partial=True)  # left by a killed build
  try:
    summary = beam_pipeline.run(
        midi_dir, [f[0] for f in files], output_dir, config, options,
        timeout_s=file_timeout_s, progress_every_s=progress_every_s)
  except OSError:  # raised here by the in-process runner: as it is
    _remove_shards(output_dir, partial=True)
    raise
  except Exception as e:  # pylint: disable=broad-except
    # A worker's error reaches the driver as the runner's RuntimeError
    # holding the worker's traceback: told in its last line.
    _remove_shards(output_dir, partial=True)
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    raise PipelineFailedError(
        f"the Beam pipeline building {output_dir} failed: "
        f"{lines[-1] if lines else type(e).__name__}") from e
  except BaseException:
    _remove_shards(output_dir, partial=True)
    raise
  t_pipeline = time.time() - t0
  splits = summary["splits"]
  skipped = summary["skipped"]
  files_used = summary["files_used"]
  melodies = sum(s["melodies"] for s in splits.values())
  if progress_every_s and len(files) >= 8:
    log(f"[data_pipeline] {len(files)}/{len(files)} files, {melodies} "
        f"melodies, {len(skipped)} skipped, "
        f"{len(files) / max(t_pipeline, 1e-9):.1f} files/s, "
        f"{t_pipeline:.1f}s")
  skip_reasons = dict(sorted(collections.Counter(
      s["reason"] for s in skipped).items()))
  if not files_used:
    _remove_shards(output_dir, partial=True)
    raise NoUsableMelodiesError(
        f"No usable melody in directory {midi_dir}: {len(files)} files seen, "
        f"skipped by reason: {skip_reasons or 'no files'}")

  # Publish: the old manifest goes first (the directory is invalid until the
  # new one is written), then the old shards; each new shard is renamed into
  # place (fsynced by the pipeline), the manifest last.
  t1 = time.time()
  manifest_path = os.path.join(output_dir, MANIFEST)
  if os.path.exists(manifest_path):
    os.remove(manifest_path)
  _remove_shards(output_dir, partial=False)
  for split in splits.values():
    for name in split["shards"]:
      os.replace(os.path.join(output_dir, name + beam_pipeline.PARTIAL_SUFFIX),
                 os.path.join(output_dir, name))
  atomic_files.fsync_dir(output_dir)
  t_publish = time.time() - t1

  standard = options.view_as(beam_pipeline.beam_options.StandardOptions)
  direct = options.view_as(beam_pipeline.beam_options.DirectOptions)
  local = standard.runner == beam_pipeline.LOCAL_RUNNER
  manifest = {
      "fingerprint": fp,
      "midi_dir": midi_dir,
      "config": config.to_dict(),
      "files_seen": len(files),
      "files_used": files_used,
      "files_skipped": len(skipped),
      "skip_reasons": skip_reasons,
      "melodies": melodies,
      "steps": sum(s["steps"] for s in splits.values()),
      "splits": splits,
      "extraction_stats": summary["extraction_stats"],
      "seconds": {"pipeline": round(t_pipeline, 2),
                  "publish": round(t_publish, 2),
                  "total": round(time.time() - t0, 2)},
      "runner": standard.runner,
      "num_workers": direct.direct_num_workers if local else None,
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
  flags.DEFINE_integer("num_workers", None,
                       "Parallelism: the local runner's worker processes "
                       "(default: all CPU cores); FlinkRunner's --parallelism.")
  flags.DEFINE_string("runner", beam_pipeline.LOCAL_RUNNER,
                      "Beam runner: FnApiRunner (local processes), or "
                      "FlinkRunner, SparkRunner, PortableRunner, ... with "
                      "their settings in --beam_pipeline_options.")
  flags.DEFINE_string("beam_pipeline_options", "",
                      "Beam pipeline options passed through, as one string "
                      "(e.g. \"--flink_master=host:8081 --parallelism=16\"); "
                      "not --runner.")
  flags.DEFINE_integer("melodies_per_shard", PipelineConfig.melodies_per_shard,
                       "Melodies per TFRecord shard.", lower_bound=1)
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
  flags.register_validator("num_workers", lambda v: v is None or v >= 1,
                           message="--num_workers must be >= 1")
  known = beam_pipeline.beam_options.StandardOptions.KNOWN_RUNNER_NAMES
  flags.register_validator(
      "runner", lambda v: v in known or "." in v,
      message=f"--runner must be one of {', '.join(known)} or a runner "
      "class's full name")
  flags.register_validator(
      "beam_pipeline_options",
      lambda v: not any(a.split("=", 1)[0] == "--runner"
                        for a in shlex.split(v or "")),
      message="--beam_pipeline_options must not name the runner: use --runner")
  return flags.FLAGS


FLAGS = None  # absl flags, defined only when run as a program


def _io_errors():
  """OSError, and TensorFlow's I/O errors once it is loaded (a full disk
  while writing shards). Evaluated only when an exception is raised."""
  if "tensorflow" in sys.modules:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return (OSError, tf.errors.OpError)
  return (OSError,)


def main(argv: List[str]) -> int:
  del argv
  flags_ = FLAGS
  config = PipelineConfig(
      melody=melodies_lib.MelodyConfig(
          gap_bars=flags_.gap_bars, min_bars=flags_.min_bars,
          max_steps=flags_.max_steps,
          min_unique_pitches=flags_.min_unique_pitches),
      validation_percent=flags_.validation_percent,
      melodies_per_shard=flags_.melodies_per_shard)
  try:
    manifest = build_dataset(flags_.midi_dir, flags_.output_dir, config,
                             num_workers=flags_.num_workers,
                             force=flags_.force,
                             file_timeout_s=flags_.file_timeout_s,
                             runner=flags_.runner,
                             beam_options=flags_.beam_pipeline_options)
  except (NoUsableMelodiesError, PipelineFailedError,
          run_lock.RunLockedError) + _io_errors() as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(json.dumps({k: manifest[k] for k in (
      "files_seen", "files_used", "files_skipped", "skip_reasons", "melodies",
      "steps", "cached")}, indent=1))
  return 0


if __name__ == "__main__":
  from data_pipeline import console  # pylint: disable=g-import-not-at-top
  FLAGS = _define_flags()
  console.run(lambda argv: sys.exit(main(argv)))
