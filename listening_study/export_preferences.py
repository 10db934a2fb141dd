r"""The study's ratings as a preference file (rl_tuner_tf/preferences.py),
the input of a reward model and of DPO.

    python -m listening_study.export_preferences --run_dir=runs/paper \
        --output=runs/paper/listening_study/preferences.npz

Each rated model pair becomes one pair: melody A is the clip the participant
saw on the left, B the one on the right (the private stimuli manifest maps
each clip back to its tokens), rating the 7-point value (1 = A much better).
Attention checks are left out, and so are the participants the analysis
leaves out (failed attention check; implausible sessions, unless
--include_implausible), so a reward model learns from the ratings the
analysis trusts. The file records where its pairs came from and how many
were left out, and is checksummed: a reward model names the data it learnt.
"""
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import flags
from data_pipeline import console
import numpy as np

import listening_study
from listening_study import analysis
from listening_study import app as study_app
from listening_study import design
from listening_study import stimuli
from rl_tuner_tf import preferences


def pairs_from_rows(
    rows: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any],
    exclude_failed_attention: bool = True, exclude_implausible: bool = True,
    max_playback_speed: float = design.MAX_PLAYBACK_SPEED,
    source: Optional[Dict[str, Any]] = None) -> preferences.PreferencePairs:
  """The trusted model-pair ratings of export rows (app.export_rows) as
  PreferencePairs; ValueError when none is left."""
  implausible = analysis.implausible_sessions(rows, max_playback_speed)
  clips = manifest["stimuli"]
  kept: List[Mapping[str, Any]] = []
  left_out = {"attention_check_failed": 0, "implausible": 0}
  for row in rows:
    if row["kind"] != "pair" or row["value"] is None:
      continue
    if exclude_failed_attention and row["attention_passed"] is False:
      left_out["attention_check_failed"] += 1
    elif exclude_implausible and row["participant_id"] in implausible:
      left_out["implausible"] += 1
    else:
      kept.append(row)
  if not kept:
    raise ValueError(f"no rating is left to export (left out: {left_out})")
  tokens_a = np.array([clips[r["left_stimulus"]]["tokens"] for r in kept])
  tokens_b = np.array([clips[r["right_stimulus"]]["tokens"] for r in kept])
  provenance = dict(source or {}, ratings=len(kept), left_out=left_out,
                    implausible_excluded=bool(exclude_implausible),
                    max_playback_speed=float(max_playback_speed),
                    models=sorted({r["left_model"] for r in kept} |
                                  {r["right_model"] for r in kept}))
  return preferences.PreferencePairs(
      tokens_a, tokens_b, np.array([int(r["value"]) for r in kept]),
      np.array([str(r["participant_id"]) for r in kept]),
      provenance=provenance)


def _redacted(url: str) -> str:
  """The database URL without its password."""
  head, sep, tail = url.partition("@")
  if sep and ":" in head.split("//", 1)[-1]:
    scheme, credentials = head.split("//", 1)
    return f"{scheme}//{credentials.split(':', 1)[0]}:***@{tail}"
  return url


def define_flags() -> None:
  flags.DEFINE_string("run_dir", None, "Run directory of the study.")
  flags.DEFINE_string("study_dir", None,
                      "Study directory; default <run_dir>/listening_study.")
  flags.DEFINE_string("db_url", None, "SQLAlchemy URL; default the study's "
                      "SQLite database.")
  flags.DEFINE_string("output", None, "The preference file to write "
                      "(default <study_dir>/preferences.npz).")
  flags.DEFINE_bool("include_implausible", False,
                    "Keep the sessions whose server timestamps break the "
                    "listening rule.")
  flags.DEFINE_float("max_playback_speed", design.MAX_PLAYBACK_SPEED,
                     "The listening rule's speed (the server's).")


def main(argv: List[str]) -> None:
  del argv
  f = flags.FLAGS
  if f.run_dir is None and f.study_dir is None:
    sys.exit("--run_dir or --study_dir is required")
  study = f.study_dir or listening_study.study_dir(f.run_dir)
  db_url = f.db_url or listening_study.default_db_url(study)
  try:
    rows = study_app.study_rows(study, db_url)
  except FileNotFoundError as e:
    sys.exit(str(e))
  manifest = stimuli.load_manifest(listening_study.stimuli_dir(study))
  try:
    pairs = pairs_from_rows(
        rows, manifest, exclude_implausible=not f.include_implausible,
        max_playback_speed=design.check_playback_speed(f.max_playback_speed),
        source={"study_dir": os.path.abspath(study),
                "database": _redacted(db_url)})
  except ValueError as e:
    sys.exit(str(e))
  output = f.output or os.path.join(study, "preferences.npz")
  digest = preferences.save(pairs, output)
  print(f"wrote {pairs.num_pairs} rated pairs to {output} (sha256 "
        f"{digest[:12]}; left out: {pairs.provenance['left_out']})")


if __name__ == "__main__":
  define_flags()
  console.run(main)
