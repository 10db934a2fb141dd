r"""Analyses a listening study: CSV, the paper's tests, Figure 3, summary.

  python -m listening_study.analyze --run_dir=runs/paper [--db_url=...]
      [--include_implausible] [--max_playback_speed=1]

Writes <study_dir>/results/{ratings.csv, analysis.json, figure3.png,
summary.html}, prints the tests, and, when <run_dir>/report.html exists,
rewrites the run's report so that it links to the summary.  Implausible
sessions (analysis.py: clips not served, ratings sooner than the listening
rule allows at --max_playback_speed, no server record) are counted and
excluded unless --include_implausible.
"""
import os
import sys
from typing import List

from absl import flags
from data_pipeline import console

import listening_study
from listening_study import analysis
from listening_study import app as study_app
from listening_study import design

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("run_dir", None, "Run directory.")
  flags.DEFINE_string("study_dir", None,
                      "Study directory; default <run_dir>/listening_study.")
  flags.DEFINE_string("db_url", None, "SQLAlchemy URL; default the study's "
                      "SQLite database.")
  flags.DEFINE_list("models", None, "Models to analyse (default: all rated).")
  flags.DEFINE_bool("exclude_failed_attention", True,
                    "Drop participants who failed the attention check.")
  flags.DEFINE_bool("include_implausible", False,
                    "Keep the sessions whose server timestamps break the "
                    "listening rule (they are counted either way).")
  flags.DEFINE_float("max_playback_speed", design.MAX_PLAYBACK_SPEED,
                     "The listening rule's speed: ratings sooner after their "
                     "pair was shown than both clips take at this speed are "
                     "implausible (the server's --max_playback_speed of a "
                     "simulated study).")


def main(argv: List[str]) -> None:
  del argv
  if FLAGS.run_dir is None and FLAGS.study_dir is None:
    sys.exit("--run_dir or --study_dir is required")
  study = FLAGS.study_dir or listening_study.study_dir(FLAGS.run_dir)
  try:
    speed = design.check_playback_speed(FLAGS.max_playback_speed)
  except ValueError as e:
    sys.exit(f"--{e}")
  try:
    rows = study_app.study_rows(study, FLAGS.db_url)
  except FileNotFoundError as e:
    sys.exit(str(e))
  if not any(r["kind"] == "pair" for r in rows):
    sys.exit("no ratings yet")
  out = analysis.write_results(
      rows, listening_study.results_dir(study), FLAGS.models,
      FLAGS.exclude_failed_attention,
      exclude_implausible=not FLAGS.include_implausible,
      max_playback_speed=speed)
  print(analysis.format_text(out["result"]))
  print(f"wrote {out['csv']}, {out['json']}, {out['figure']}, {out['summary']}")
  if FLAGS.run_dir and os.path.isfile(os.path.join(FLAGS.run_dir,
                                                   "report.html")):
    from rl_tuner_tf.evaluation import report  # pylint: disable=g-import-not-at-top
    print(f"report updated: {report.write_report(FLAGS.run_dir)}")


if __name__ == "__main__":
  define_flags()
  console.run(main)
