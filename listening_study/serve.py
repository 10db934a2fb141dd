r"""Starts the listening study (stimuli are rendered first when missing).

  python -m listening_study.serve --run_dir=runs/paper [--port=8000]
      [--db_url=postgresql://user@host/db] [--per_model=12]
      [--max_playback_speed=1]

Serves with gunicorn (gthread workers) the Flask app of listening_study.app;
prints the participant URL and the admin URLs once the socket is bound.
The admin token is --admin_token, else $LISTENING_STUDY_ADMIN_TOKEN, else the
one stored in <study_dir>/admin_token (made on first start, mode 0600).
--max_playback_speed is the listening rule's speed (design.py): a rating is
taken no sooner after its pair was shown than both clips take to play at that
speed; keep 1 for real listeners, raise it only for simulated ones.
"""
import os
import secrets
import sys
from typing import Callable, List, Optional

from absl import flags
from data_pipeline import console

import listening_study
from listening_study import db
from listening_study import design
from listening_study import prepare_stimuli
from listening_study import stimuli

FLAGS = flags.FLAGS
ADMIN_TOKEN_ENV = "LISTENING_STUDY_ADMIN_TOKEN"


def define_flags() -> None:
  flags.DEFINE_string("run_dir", None, "Run directory (with evaluation/).")
  flags.DEFINE_string("study_dir", None,
                      "Study directory; default <run_dir>/listening_study.")
  flags.DEFINE_string("db_url", None, "SQLAlchemy URL; default SQLite "
                      "<study_dir>/study.db (WAL mode).")
  flags.DEFINE_string("host", "127.0.0.1", "Address to bind.")
  flags.DEFINE_integer("port", 8000, "Port to bind (0 = any free port).")
  flags.DEFINE_integer("workers", 2, "gunicorn worker processes.")
  flags.DEFINE_integer("threads", 8, "Threads per worker.")
  flags.DEFINE_integer("trials", None, "Pairs per participant (plus one "
                       "attention check); default: every model pair once "
                       f"(--design=preferences: {design.PREFERENCE_TRIALS}).")
  flags.DEFINE_integer("per_model", 12, "Stimuli per model when rendering.")
  flags.DEFINE_integer("seed", 0, "Seed of the choice of stimuli.")
  flags.DEFINE_list("models", None, "Models (default: the paper's four).")
  flags.DEFINE_string("admin_token", None, "Admin token (>= 16 characters).")
  prepare_stimuli.define_design_flags()
  flags.DEFINE_float("max_playback_speed", design.MAX_PLAYBACK_SPEED,
                     "Fastest speed at which a participant may have played "
                     "the clips: a rating is refused sooner after its pair "
                     "was shown than both clips take at this speed. 1 for "
                     "real listeners; simulations that play faster say so.")


def admin_token_for(study: str, given: Optional[str] = None) -> str:
  token = given or os.environ.get(ADMIN_TOKEN_ENV)
  if token:
    return token
  path = os.path.join(study, "admin_token")
  if os.path.isfile(path):
    with open(path) as f:
      return f.read().strip()
  token = secrets.token_urlsafe(24)
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
  with os.fdopen(fd, "w") as f:
    f.write(token + "\n")
  return token


def run_server(study: str, db_url: str, admin_token: str,
               host: str = "127.0.0.1", port: int = 8000, workers: int = 2,
               threads: int = 8, trials: Optional[int] = None,
               on_ready: Optional[Callable[[str], None]] = None,
               max_playback_speed: float = design.MAX_PLAYBACK_SPEED) -> None:
  """Runs gunicorn in this process until it is stopped (SIGTERM/SIGINT)."""
  from gunicorn.app.base import BaseApplication  # pylint: disable=g-import-not-at-top

  def when_ready(server):
    bound = server.LISTENERS[0].sock.getsockname()
    url = f"http://{bound[0]}:{bound[1]}/"
    print(f"Listening study running at {url}\n"
          f"  admin results: {url}admin/results?token={admin_token}\n"
          f"  CSV export:    {url}admin/export.csv?token={admin_token}\n"
          f"  database:      {db_url}\n"
          f"  listening:     ratings no sooner than both clips play at "
          f"{max_playback_speed:g}x\n"
          "Stop with Ctrl-C.", flush=True)
    if on_ready:
      on_ready(url)

  class StudyServer(BaseApplication):  # pylint: disable=abstract-method

    def load_config(self):
      for key, value in dict(
          bind=f"{host}:{port}", workers=workers, threads=threads,
          worker_class="gthread", timeout=60, graceful_timeout=10,
          accesslog=None, errorlog="-", loglevel="warning",
          preload_app=False, when_ready=when_ready).items():
        self.cfg.set(key, value)

    def load(self):
      from listening_study import app as study_app  # pylint: disable=g-import-not-at-top
      return study_app.create_app(study, db_url=db_url,
                                  admin_token=admin_token, trials=trials,
                                  max_playback_speed=max_playback_speed)

  StudyServer().run()


def main(argv: List[str]) -> None:
  del argv
  if FLAGS.run_dir is None and FLAGS.study_dir is None:
    sys.exit("--run_dir (or --study_dir with prepared stimuli) is required")
  if FLAGS.run_dir is not None and not os.path.isdir(FLAGS.run_dir):
    sys.exit(f"--run_dir: no directory {FLAGS.run_dir!r}")
  if FLAGS.trials is not None and FLAGS.trials < 1:
    sys.exit(f"--trials must be >= 1, got {FLAGS.trials}")
  if FLAGS.workers < 1 or FLAGS.threads < 1:
    sys.exit("--workers and --threads must be >= 1")
  if FLAGS.admin_token is not None and len(FLAGS.admin_token) < 16:
    sys.exit("--admin_token must have at least 16 characters")
  try:
    speed = design.check_playback_speed(FLAGS.max_playback_speed)
  except ValueError as e:
    sys.exit(f"--{e}")
  study = FLAGS.study_dir or listening_study.study_dir(FLAGS.run_dir)
  os.makedirs(study, exist_ok=True)
  manifest_path = os.path.join(listening_study.stimuli_dir(study),
                               stimuli.MANIFEST)
  try:
    if not os.path.isfile(manifest_path):
      if FLAGS.run_dir is None:
        sys.exit(f"no stimuli in {study!r}; pass --run_dir to render them")
      prepare_stimuli.prepare_if_missing(FLAGS.run_dir, study, FLAGS.per_model,
                                         FLAGS.seed, FLAGS.models,
                                         design=FLAGS.design,
                                         render_mode=FLAGS.render)
    stimuli.load_manifest(listening_study.stimuli_dir(study))
  except stimuli.StimuliError as e:
    sys.exit(f"error: {e}")
  db_url = FLAGS.db_url or listening_study.default_db_url(study)
  try:  # schema once (created or migrated), before the workers start
    engine = db.make_engine(db_url)
    try:
      version = db.create_schema(engine)
    finally:
      engine.dispose()  # no connection of this process for the workers
  except Exception as e:  # pylint: disable=broad-except
    sys.exit(f"--db_url: cannot open or create the schema: {e}")
  print(f"database schema version {version}", flush=True)
  run_server(study, db_url, admin_token_for(study, FLAGS.admin_token),
             FLAGS.host, FLAGS.port, FLAGS.workers, FLAGS.threads,
             FLAGS.trials, max_playback_speed=speed)


if __name__ == "__main__":
  define_flags()
  console.run(main)
