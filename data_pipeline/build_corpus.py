r"""Builds the embedded default corpus (music21 folk tunes -> MIDI -> TFRecords).

    python -m data_pipeline.build_corpus [--root=DIR] [--force] [--num_workers=N]

Prints tunes parsed / failed and the melodies they became.  Cached: a second
run returns in seconds.  Default root: see data_pipeline.corpus.default_root.
"""
from data_pipeline import keras_setup  # noqa: F401  (before tensorflow)

import os
import sys
import time
from typing import List

from absl import app
from absl import flags

from data_pipeline import console
from data_pipeline import corpus

_ROOT = flags.DEFINE_string(
    "root", None, "Output root (default: $RL_TUNER_TF_HOME, else generated/ "
    "beside the package, else ~/.cache/rl_tuner_tf).")
_FORCE = flags.DEFINE_boolean("force", False, "Rebuild both stages.")
_COLLECTIONS = flags.DEFINE_list(
    "collections", list(corpus.COLLECTIONS),
    "music21 collections to convert (a subset is for quick trials; give it "
    "its own --root).")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", os.cpu_count() or 1,
                                    "Worker processes.", lower_bound=1)


def main(argv: List[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  t0 = time.time()
  root = _ROOT.value or corpus.default_root()
  unknown = sorted(set(_COLLECTIONS.value) - set(corpus.COLLECTIONS))
  if unknown or not _COLLECTIONS.value:
    raise app.UsageError(f"--collections: unknown {unknown}; choose from "
                         f"{', '.join(corpus.COLLECTIONS)}")
  abc, manifest = corpus.build_default_corpus(
      root=root, num_workers=_NUM_WORKERS.value, force=_FORCE.value,
      collections=tuple(_COLLECTIONS.value))
  splits = manifest["splits"]
  print(f"root:            {root}")
  print(f"tunes:           {abc['tunes']} in {abc['tunebooks']} ABC books")
  print(f"parsed:          {abc['parsed']} (note_seq.abc_parser "
        f"{abc['parsed_by']['note_seq']}, music21 {abc['parsed_by']['music21']})")
  print(f"failed:          {abc['failed']}")
  print(f"MIDI files:      {manifest['files_seen']} seen, "
        f"{manifest['files_used']} used, {manifest['files_skipped']} skipped "
        f"{manifest['skip_reasons']}")
  print(f"melodies:        {manifest['melodies']} ({manifest['steps']} steps)")
  print(f"train:           {splits['train']['melodies']} melodies, "
        f"{splits['train']['steps']} steps")
  print(f"validation:      {splits['validation']['melodies']} melodies, "
        f"{splits['validation']['steps']} steps")
  print(f"ABC -> MIDI:     {abc['seconds']:.1f}s"
        + (" (cached)" if abc.get("cached") else ""))
  print(f"MIDI -> records: {manifest['seconds']['total']:.1f}s"
        + (" (cached)" if manifest.get("cached") else ""))
  print(f"this run:        {time.time() - t0:.1f}s")
  print(f"tfrecords:       {corpus.default_tfrecord_dir(root)}")
  return 0


if __name__ == "__main__":
  console.run(lambda argv: sys.exit(main(argv)))
