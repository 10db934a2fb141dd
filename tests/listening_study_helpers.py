"""Shared fixtures' logic for the listening-study tests: a tiny study, server
clocks, a throwaway PostgreSQL server, and the database URL fixture that runs
a test on SQLite and on PostgreSQL.

A test module uses the fixtures by naming them at its top level:

    db_url = helpers.db_url
    postgresql = helpers.postgresql

PostgreSQL comes from Debian's `postgresql` package (initdb and pg_ctl under
/usr/lib/postgresql/<version>/bin).  Without it (or without the psycopg2
driver) the PostgreSQL cases skip with the reason, except in CI (CI set),
where they fail: the README's test command installs both.
"""
import datetime
import glob
import html
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid

import numpy as np
import pytest

import listening_study
from listening_study import stimuli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("note_rnn", "q", "psi", "g")
ADMIN_TOKEN = "test-admin-token-0123456789"
DATABASES = ("sqlite", "postgresql")
POSTGRES_USER = "postgres"  # the OS user Debian's package creates
_AUDIO_SRC_RE = re.compile(r'src="(/audio/[0-9a-f]{16}\.wav[^"]*)"')


def tiny_melodies(models=MODELS, n=3, steps=16, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for m in models:
    tokens = rng.integers(14, 30, size=(n, steps))
    tokens[:, 1::2] = 1
    out[m] = tokens
  return out


def make_study(tmp_path, per_model=2, models=MODELS):
  """A study folder with rendered stimuli (FluidSynth if installed)."""
  study = os.path.join(str(tmp_path), "study")
  stimuli.prepare(None, listening_study.stimuli_dir(study),
                  per_model=per_model, melodies=tiny_melodies(models))
  return study


# ---- server clocks for the Flask test client --------------------------------
class StepClock:
  """A server clock whose every reading is `step` seconds after the last
  (`step` 0: it stands still until `advance`).  With the default minute, a
  rating always comes long after its pair was shown, so flow tests meet the
  listening rule without waiting; timing tests set the time themselves."""

  def __init__(self, step=60.0):
    self.now = datetime.datetime(2030, 1, 1)
    self.step = datetime.timedelta(seconds=step)

  def __call__(self):
    self.now += self.step
    return self.now

  def advance(self, seconds):
    self.now += datetime.timedelta(seconds=seconds)


def audio_paths(page):
  """The two clips' URLs of a trial page, as its <audio> elements load them."""
  return [html.unescape(src) for src in _AUDIO_SRC_RE.findall(page)[:2]]


def listen(client, trial, page):
  """What the page does before a rating can be taken: loads both clips (the
  server records them served) and reports them played."""
  for path in audio_paths(page):
    r = client.get(path)
    assert r.status_code == 200 and r.data[:4] == b"RIFF", path
  for side in ("left", "right"):
    r = client.post(f"/api/trials/{trial}/played", json={"side": side})
    assert r.status_code == 200, r.get_json()


# ---- a throwaway PostgreSQL server ------------------------------------------
def postgresql_bin_dir():
  """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl,
  or None."""
  found = [os.path.dirname(p) for p in glob.glob(
      "/usr/lib/postgresql/*/bin/pg_ctl")
           if os.path.exists(os.path.join(os.path.dirname(p), "initdb"))]

  def version(path):
    name = os.path.basename(os.path.dirname(path))
    return tuple(int(x) for x in re.findall(r"\d+", name))
  return max(found, key=version) if found else None


def postgresql_missing():
  """Why a PostgreSQL server cannot be started here, or None."""
  if postgresql_bin_dir() is None:
    return ("PostgreSQL is not installed (apt-get install postgresql: "
            "initdb and pg_ctl under /usr/lib/postgresql/*/bin)")
  try:
    import psycopg2  # pylint: disable=g-import-not-at-top
  except ImportError:
    return "the psycopg2 driver is missing (pip install -e '.[study]')"
  del psycopg2
  if os.geteuid() == 0:
    try:
      pwd.getpwnam(POSTGRES_USER)
    except KeyError:
      return (f"running as root and there is no '{POSTGRES_USER}' user to run "
              "PostgreSQL as (Debian's postgresql package creates it)")
  return None


def require_postgresql():
  """Skips the test when PostgreSQL cannot run here; in CI, fails."""
  missing = postgresql_missing()
  if missing:
    if os.environ.get("CI"):
      pytest.fail("CI is set but " + missing)
    pytest.skip(missing)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class PostgresServer:
  """A PostgreSQL cluster in a temporary folder on a free localhost port,
  trust authentication, durability off (a test server).  PostgreSQL refuses
  to run as root, so as root its programs run as the `postgres` user, who
  owns the folder; otherwise as the current user."""

  def __init__(self, bin_dir=None):
    self.bin_dir = bin_dir or postgresql_bin_dir()
    self.root = tempfile.mkdtemp(prefix="listening-study-pg-")
    self.data = os.path.join(self.root, "data")
    self.log = os.path.join(self.root, "server.log")
    self.port = None
    self.as_user = []
    if os.geteuid() == 0:
      user = pwd.getpwnam(POSTGRES_USER)
      os.chown(self.root, user.pw_uid, user.pw_gid)
      self.as_user = ["runuser", "-u", POSTGRES_USER, "--"]

  def _run(self, program, *args, timeout=120):
    command = self.as_user + [os.path.join(self.bin_dir, program), *args]
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=timeout, cwd=self.root)
    if result.returncode != 0:
      log = ""
      if os.path.exists(self.log):
        with open(self.log, errors="replace") as f:
          log = f.read()[-3000:]
      raise RuntimeError(f"{' '.join(command)} failed "
                         f"({result.returncode}):\n{result.stdout}"
                         f"{result.stderr}{log}")
    return result

  def start(self):
    self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
              "-E", "UTF8", "--locale=C", "--no-sync")
    for attempt in range(3):  # a free port can be taken before we bind it
      self.port = _free_port()
      options = (f"-p {self.port} -k {self.root} "
                 "-c listen_addresses=127.0.0.1 -c fsync=off "
                 "-c synchronous_commit=off -c full_page_writes=off "
                 "-c max_connections=300")
      try:
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                  "-o", options, "start")
        return self
      except RuntimeError:
        if attempt == 2:
          raise
    return self

  def url(self, database="postgres"):
    return (f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/"
            f"{database}")

  def _admin(self, sql):
    import sqlalchemy as sa  # pylint: disable=g-import-not-at-top
    engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
    try:
      with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    finally:
      engine.dispose()

  def create_database(self):
    """A new empty database -> its SQLAlchemy URL."""
    name = "study_" + uuid.uuid4().hex[:12]
    self._admin(f"CREATE DATABASE {name}")
    return self.url(name)

  def drop_database(self, url):
    """Drops the database of `url`, closing what is still connected."""
    self._admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} "
                "WITH (FORCE)")

  def stop(self):
    try:
      if self.port is not None:
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop",
                  timeout=60)
    finally:
      shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgresql():
  """A PostgreSQL server for the whole test session (skips, or fails in
  CI, when PostgreSQL is missing); stopped and deleted at the end."""
  require_postgresql()
  server = PostgresServer().start()
  try:
    yield server
  finally:
    server.stop()


def database_url(kind, request, tmp_path):
  """A new empty database of `kind` ("sqlite" or "postgresql") for one test,
  dropped afterwards -> its SQLAlchemy URL."""
  if kind == "sqlite":
    return "sqlite:///" + str(tmp_path / "study.db")
  server = request.getfixturevalue("postgresql")
  url = server.create_database()
  request.addfinalizer(lambda: server.drop_database(url))
  return url


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path):
  """The test runs once on SQLite and once on PostgreSQL, each time on a
  new empty database."""
  return database_url(request.param, request, tmp_path)
