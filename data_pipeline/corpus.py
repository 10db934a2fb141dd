"""The embedded default corpus: music21's folk-tune books -> MIDI -> TFRecords.

music21 installs ABC tune books in ``music21/corpus`` (COLLECTIONS below,
about 13,000 tunes).  ``ensure_default_corpus()`` turns them into one MIDI
file per tune (data_pipeline.abc_to_midi) under ``<root>/corpus_midi/`` and
then runs the ordinary MIDI pipeline (data_pipeline.build_dataset) into
``<root>/corpus_tfrecords/``.  Both stages are cached by fingerprint, so a
second call returns in about a second.

Root directory (``default_root()``), first that applies:
  1. ``$RL_TUNER_TF_HOME`` if set;
  2. ``generated/`` beside the ``data_pipeline`` package (the repository root
     for a source checkout or editable install) when it is writable;
  3. ``~/.cache/rl_tuner_tf``.
"""
import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from data_pipeline import manifests

COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs",
               "miscFolk")
ENV_HOME = "RL_TUNER_TF_HOME"
MIDI_SUBDIR = "corpus_midi"
TFRECORD_SUBDIR = "corpus_tfrecords"
ABC_MANIFEST = "corpus_midi_manifest.json"
CONVERTER_VERSION = 2


def _writable(directory):
  """True when `directory` exists (or can be created) and is writable."""
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError:
    return False
  return os.access(directory, os.W_OK | os.X_OK)


def default_root() -> str:
  """Where generated data goes (see module docstring)."""
  env = os.environ.get(ENV_HOME)
  if env:
    return os.path.abspath(os.path.expanduser(env))
  package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  candidate = os.path.join(package_parent, "generated")
  if _writable(candidate):
    return candidate
  return os.path.join(os.path.expanduser("~"), ".cache", "rl_tuner_tf")


def default_midi_dir(root: Optional[str] = None) -> str:
  return os.path.join(root or default_root(), MIDI_SUBDIR)


def default_tfrecord_dir(root: Optional[str] = None) -> str:
  """TFRecord directory of the embedded corpus (may not be built yet)."""
  return os.path.join(root or default_root(), TFRECORD_SUBDIR)


def music21_corpus_dir() -> str:
  import music21  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.dirname(music21.__file__), "corpus")


def list_tunebooks(corpus_dir: Optional[str] = None,
                   collections: Optional[Sequence[str]] = None
                   ) -> List[Tuple[str, str]]:
  """Sorted [(collection, absolute path)] of the .abc files."""
  corpus_dir = corpus_dir or music21_corpus_dir()
  collections = collections or COLLECTIONS
  books = []
  for collection in collections:
    directory = os.path.join(corpus_dir, collection)
    if not os.path.isdir(directory):
      raise FileNotFoundError(
          f"music21 corpus collection missing: {directory} (is music21 "
          "installed with its corpus?)")
    for root, _, files in os.walk(directory):
      for name in sorted(files):
        if name.lower().endswith(".abc"):
          books.append((collection, os.path.join(root, name)))
  return sorted(books)


def _read_text(path):
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:
    return data.decode("latin-1")


# ------------------------------------------------------- ABC -> MIDI stage --
def _convert_tune(job):
  """Worker: (out path, header, tune text) -> (out path, parser or None, error)."""
  from data_pipeline import abc_to_midi  # pylint: disable=g-import-not-at-top
  path, header, text = job
  try:
    return path, abc_to_midi.tune_to_midi_file(text, path, header), ""
  except Exception as e:  # pylint: disable=broad-except
    return path, None, f"{type(e).__name__}: {e}"[:300]


def _abc_fingerprint(books):
  import music21  # pylint: disable=g-import-not-at-top
  import note_seq  # pylint: disable=g-import-not-at-top
  h = hashlib.sha256()
  h.update(f"{CONVERTER_VERSION} {music21.__version__} "
           f"{note_seq.__version__}\n".encode())
  for collection, path in books:
    h.update(f"{collection} {os.path.basename(path)} "
             f"{os.path.getsize(path)}\n".encode())
  return h.hexdigest()


def _pool(num_workers):
  ctx = multiprocessing.get_context(
      "spawn" if "tensorflow" in sys.modules else "fork")
  return ctx.Pool(num_workers)


def build_corpus_midi(midi_dir: str, manifest_path: str,
                      num_workers: Optional[int] = None, force: bool = False,
                      progress_every_s: float = 10.0,
                      log: Optional[Callable[[str], None]] = None,
                      collections: Optional[Sequence[str]] = None
                      ) -> Dict[str, Any]:
  """ABC tune books -> MIDI files under `midi_dir` (cached); returns a summary.

  collections: a subset of COLLECTIONS (default all of them).
  """
  log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
  books = list_tunebooks(collections=collections)
  fp = _abc_fingerprint(books)
  if not force and os.path.exists(manifest_path):
    try:
      with open(manifest_path) as f:
        summary = json.load(f)
    except (OSError, ValueError) as e:  # damaged: rebuild
      log(f"[corpus] {manifest_path} cannot be read ({e}); rebuilding")
      summary = {}
    if (isinstance(summary, dict) and summary.get("fingerprint") == fp
        and os.path.isdir(midi_dir)):
      summary["cached"] = True
      return summary

  t0 = time.time()
  from data_pipeline import abc_to_midi  # pylint: disable=g-import-not-at-top
  if os.path.exists(manifest_path):
    os.remove(manifest_path)  # invalid until the new one is written
  if os.path.isdir(midi_dir):
    shutil.rmtree(midi_dir)
  jobs = []
  per_collection = {c: {"tunes": 0} for c in collections or COLLECTIONS}
  for collection, path in books:
    header, tunes = abc_to_midi.split_tunebook(_read_text(path))
    out_dir = os.path.join(midi_dir, collection)
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    for i, tune in enumerate(tunes):
      jobs.append((os.path.join(out_dir, f"{stem}_{i + 1:04d}.mid"), header,
                   tune))
    per_collection[collection]["tunes"] += len(tunes)
  log(f"[corpus] {len(jobs)} tunes in {len(books)} ABC tune books; "
      "converting to MIDI")

  num_workers = num_workers or os.cpu_count() or 1
  parsers = {"note_seq": 0, "music21": 0}
  failed = []
  start = last = time.time()
  pool = _pool(num_workers) if num_workers > 1 else None
  results = (pool.imap_unordered(_convert_tune, jobs, chunksize=16) if pool
             else map(_convert_tune, jobs))
  try:
    for done, (path, parser, error) in enumerate(results, 1):
      collection = os.path.basename(os.path.dirname(path))
      if parser is None:
        failed.append({"tune": os.path.relpath(path, midi_dir),
                       "error": error})
        per_collection[collection]["failed"] = (
            per_collection[collection].get("failed", 0) + 1)
      else:
        parsers[parser] += 1
        per_collection[collection][parser] = (
            per_collection[collection].get(parser, 0) + 1)
      if progress_every_s and time.time() - last >= progress_every_s:
        last = time.time()
        rate = done / (last - start)
        log(f"[corpus] {done}/{len(jobs)} tunes, {len(failed)} failed, "
            f"{rate:.0f} tunes/s, ETA {(len(jobs) - done) / rate:.0f}s")
  finally:
    if pool is not None:
      pool.close()
      pool.join()
  failed.sort(key=lambda f: f["tune"])
  summary = {
      "fingerprint": fp,
      "tunebooks": len(books),
      "tunes": len(jobs),
      "parsed": parsers["note_seq"] + parsers["music21"],
      "parsed_by": parsers,
      "failed": len(failed),
      "midi_files": parsers["note_seq"] + parsers["music21"],
      "per_collection": per_collection,
      "seconds": round(time.time() - t0, 2),
      "num_workers": num_workers,
      "failures": failed,
  }
  manifests.write_json_atomically(manifest_path, summary)
  summary["cached"] = False
  log(f"[corpus] ABC -> MIDI: {summary['parsed']} of {summary['tunes']} tunes "
      f"parsed (note_seq {parsers['note_seq']}, music21 {parsers['music21']}),"
      f" {summary['failed']} failed, {summary['seconds']:.1f}s")
  return summary


@contextlib.contextmanager
def _lock(root):
  """Serialises corpus builds between processes sharing `root`."""
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, ".corpus.lock"), "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def build_default_corpus(root: Optional[str] = None,
                         num_workers: Optional[int] = None, force: bool = False,
                         log: Optional[Callable[[str], None]] = None,
                         collections: Optional[Sequence[str]] = None
                         ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Both stages; returns (abc summary, dataset manifest).

  collections: a subset of COLLECTIONS (default all; a subset is for tests
  and trials -- give it its own root).
  """
  from data_pipeline import build_dataset  # pylint: disable=g-import-not-at-top
  root = root or default_root()
  with _lock(root):
    midi_dir = default_midi_dir(root)
    abc = build_corpus_midi(midi_dir, os.path.join(root, ABC_MANIFEST),
                            num_workers=num_workers, force=force, log=log,
                            collections=collections)
    manifest = build_dataset.build_dataset(
        midi_dir, default_tfrecord_dir(root), num_workers=num_workers,
        force=force, log=log)
  return abc, manifest


def ensure_default_corpus(root: Optional[str] = None,
                          log: Optional[Callable[[str], None]] = None) -> str:
  """Path of the embedded corpus's TFRecord dir, building it when missing."""
  build_default_corpus(root=root, log=log)
  return default_tfrecord_dir(root)
