"""The paper's Figure 3 listening study (section 6) as a web study.

    stimuli.py / prepare_stimuli.py   run's melodies -> MIDI + WAV under opaque ids
    design.py                         Likert scale, model pairs, balanced assignment
    db.py                             SQLAlchemy schema (versioned), engine set-up
    app.py                            the Flask app (participant flow, admin)
    serve.py                          one command: stimuli if missing + gunicorn
    analysis.py / analyze.py          CSV, Kruskal-Wallis + Mann-Whitney, Figure 3
    simulate.py                       simulated participants (HTTP or Chromium)

Layout under a run directory (everything private except stimuli/audio/):
    <run>/listening_study/stimuli/manifest.json   id -> model (never served)
    <run>/listening_study/stimuli/audio/<id>.wav  served to participants
    <run>/listening_study/stimuli/midi/<id>.mid
    <run>/listening_study/study.db                SQLite database (default)
    <run>/listening_study/admin_token             admin token (mode 0600)
    <run>/listening_study/results/                ratings.csv, figure3.png,
                                                  analysis.json, summary.html
"""
import os

STUDY_DIRNAME = "listening_study"


def study_dir(run_dir: str) -> str:
  return os.path.join(run_dir, STUDY_DIRNAME)


def stimuli_dir(study: str) -> str:
  return os.path.join(study, "stimuli")


def results_dir(study: str) -> str:
  return os.path.join(study, "results")


def default_db_url(study: str) -> str:
  return "sqlite:///" + os.path.abspath(os.path.join(study, "study.db"))
