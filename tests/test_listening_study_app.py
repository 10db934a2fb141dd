"""The study app's safety and flow (Flask test client, on SQLite and on
PostgreSQL; the browser and server tests drive the real server)."""
import collections
import csv
import io
import re

import pytest
import sqlalchemy as sa

import listening_study
from listening_study import app as study_app
from listening_study import db
from listening_study import design
from listening_study import stimuli
import listening_study_helpers as helpers

# The database fixtures: each test taking db_url runs on SQLite and on
# PostgreSQL (helpers.postgresql starts the server once per session).
db_url = helpers.db_url
postgresql = helpers.postgresql

TOKEN = helpers.ADMIN_TOKEN
_APPS = []


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  return helpers.make_study(tmp_path_factory.mktemp("app"), per_model=2)


@pytest.fixture(autouse=True)
def _close_engines():
  yield
  while _APPS:
    _APPS.pop().extensions["study"]["engine"].dispose()


def make_app(study, db_url, trials=None, clock=None, **kwargs):
  """The app on a StepClock: every rating comes a minute after the last
  server event, so the listening rule holds without waiting."""
  app = study_app.create_app(study, db_url=db_url, admin_token=TOKEN,
                             trials=trials, clock=clock or helpers.StepClock(),
                             **kwargs)
  _APPS.append(app)
  return app


def counts(db_url):
  engine = sa.create_engine(db_url)
  with engine.connect() as conn:
    out = {t: conn.execute(sa.select(sa.func.count()).select_from(
        getattr(db, t))).scalar_one() for t in ("participants", "ratings")}
  engine.dispose()
  return out


def start(client, external_id=""):
  r = client.post("/start", data={"consent": "yes", "external_id": external_id})
  assert r.status_code == 303, r.data
  return r


def current(client):
  r = client.get("/study")
  if r.status_code == 302:
    return None, None
  page = r.get_data(as_text=True)
  trial = int(re.search(r'data-trial="(\d+)"', page).group(1))
  return trial, page


def rate(client, trial, value):
  return client.post(f"/api/trials/{trial}/rating", json={"value": value})


def answer(page):
  attention = re.search(r"please choose\s*<strong>(\d)", page)
  return int(attention.group(1)) if attention else 5


def test_consent_required_and_nothing_stored(study, db_url):
  client = make_app(study, db_url).test_client()
  r = client.get("/")
  assert r.status_code == 200 and b"consent" in r.data
  r = client.post("/start", data={"external_id": "x"})
  assert r.status_code == 400 and b"consent box" in r.data
  assert counts(db_url)["participants"] == 0
  r = client.post("/start", data={"consent": "yes", "external_id": "x" * 65})
  assert r.status_code == 400
  assert counts(db_url)["participants"] == 0


def test_pages_never_reveal_models_or_manifest(study, db_url):
  client = make_app(study, db_url).test_client()
  start(client)
  manifest = stimuli.load_manifest(listening_study.stimuli_dir(study))
  while True:
    trial, page = current(client)
    if trial is None:
      break
    for model in manifest["models"] + ["manifest", "model", ".mid"]:
      assert not re.search(rf"\b{re.escape(model)}\b", page), model
    ids = re.findall(r"/audio/([0-9a-f]{16})\.wav", page)
    assert len(ids) == 2 and all(i in manifest["stimuli"] for i in ids)
    wav = client.get(f"/audio/{ids[0]}.wav")
    assert wav.status_code == 200 and wav.data[:4] == b"RIFF"
    helpers.listen(client, trial, page)
    assert rate(client, trial, answer(page)).status_code == 200
  # Headers do not group clips by model either: one length, one date, no ETag.
  heads = [client.get(f"/audio/{i}.wav").headers for i in manifest["stimuli"]]
  assert len({h["Content-Length"] for h in heads}) == 1
  assert len({h["Last-Modified"] for h in heads}) == 1
  assert not any("ETag" in h for h in heads)
  for path in ("/audio/manifest.json", "/audio/..%2Fmanifest.json",
               "/stimuli/manifest.json", "/audio/0123456789abcdef.wav",
               "/static/../stimuli/manifest.json", "/audio/x.mid"):
    assert client.get(path).status_code == 404, path


def test_refusals_are_4xx_and_store_nothing(study, db_url):
  app = make_app(study, db_url)
  alice, bob, nobody = (app.test_client() for _ in range(3))
  start(alice)
  start(bob)
  trial, page = current(alice)
  bob_trial, _ = current(bob)
  # not played yet
  r = rate(alice, trial, 3)
  assert r.status_code == 409 and "play both" in r.get_json()["error"]
  helpers.listen(alice, trial, page)
  # out of range / wrong type
  for bad in (0, 8, -1, "3", 3.5, True, None, [3]):
    r = rate(alice, trial, bad)
    assert r.status_code == 422, bad
    assert "value must be" in r.get_json()["error"]
  assert alice.post(f"/api/trials/{trial}/rating", data="value=3",
                    content_type="application/x-www-form-urlencoded"
                   ).status_code == 415
  assert alice.post(f"/api/trials/{trial}/played",
                    json={"side": "middle"}).status_code == 422
  # not assigned: bob's trial, a trial that does not exist, no session
  assert rate(alice, bob_trial, 3).status_code == 403
  assert alice.post(f"/api/trials/{bob_trial}/played",
                    json={"side": "left"}).status_code == 403
  assert rate(alice, 10**6, 3).status_code == 403
  assert rate(nobody, trial, 3).status_code == 401
  assert counts(db_url)["ratings"] == 0
  # out of order: the second trial before the first (its clips cannot be
  # served as the current trial's, so it cannot be reported played either)
  second = trial + 1
  assert alice.post(f"/api/trials/{second}/played",
                    json={"side": "left"}).status_code == 409
  assert rate(alice, second, 3).status_code == 409
  assert counts(db_url)["ratings"] == 0
  # once, then twice
  assert rate(alice, trial, answer(page)).status_code == 200
  r = rate(alice, trial, 2)
  assert r.status_code == 409 and "already" in r.get_json()["error"]
  assert counts(db_url)["ratings"] == 1
  engine = sa.create_engine(db_url)
  with engine.connect() as conn:
    assert conn.execute(sa.select(db.ratings.c.value)).scalar_one() == answer(
        page)
  engine.dispose()


def test_admin_needs_token_and_everything_typed_is_escaped(study, db_url):
  app = make_app(study, db_url)
  client = app.test_client()
  evil = "<script>alert(1)</script>"
  start(client, external_id=evil)
  assert b"<script>alert" not in client.get("/study").data
  while True:
    trial, page = current(client)
    if trial is None:
      break
    helpers.listen(client, trial, page)
    assert rate(client, trial, answer(page)).status_code == 200
  assert client.post("/api/comment", json={"text": "=HYPERLINK(\"x\")<img "
                                                   "src=x onerror=alert(1)>"}
                     ).status_code == 200
  done = client.get("/done").get_data(as_text=True)
  assert "<img src=x" not in done and "&lt;img src=x" in done
  for path in ("/admin/results", "/admin/export.csv"):
    assert client.get(path).status_code == 401
    assert client.get(path + "?token=wrong-token-0123456789").status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer nope"}
                      ).status_code == 401
  page = client.get("/admin/results",
                    headers={"Authorization": f"Bearer {TOKEN}"}).get_data(
                        as_text=True)
  assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
  assert "<img src=x" not in page
  r = client.get(f"/admin/export.csv?token={TOKEN}")
  assert r.status_code == 200 and r.mimetype == "text/csv"
  rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
  assert len(rows) == counts(db_url)["ratings"] == len(
      design.model_pairs(helpers.MODELS)) + 1
  assert rows[0]["external_id"] == evil  # CSV keeps the text; no formula
  assert sum(r["kind"] == "attention" for r in rows) == 1


def test_resume_after_server_and_browser_restart(study, db_url):
  clock = helpers.StepClock()  # one server time across the restarts
  client = make_app(study, db_url, clock=clock).test_client()
  start(client)
  first, page = current(client)
  helpers.listen(client, first, page)
  assert rate(client, first, answer(page)).status_code == 200
  second, page = current(client)
  assert client.get(helpers.audio_paths(page)[0]).status_code == 200
  assert client.post(f"/api/trials/{second}/played",
                     json={"side": "left"}).status_code == 200
  # "server restart": a new app and engine on the same database
  restarted = make_app(study, db_url, clock=clock).test_client()
  restarted.set_cookie(study_app.COOKIE,
                       client.get_cookie(study_app.COOKIE).value)
  trial, page = current(restarted)
  assert trial == second and 'data-played-left="true"' in page
  assert 'data-played-right="false"' in page
  # "another browser": the resume link alone
  token = client.get_cookie(study_app.COOKIE).value
  other = make_app(study, db_url, clock=clock).test_client()
  assert other.get(f"/resume/{token}").status_code == 302
  assert current(other)[0] == second
  assert other.get("/resume/" + "0" * 32).status_code == 404
  assert counts(db_url) == {"participants": 1, "ratings": 1}
  while True:
    trial, page = current(other)
    if trial is None:
      break
    helpers.listen(other, trial, page)
    assert rate(other, trial, answer(page)).status_code == 200
  code = re.search(r'id="completion-code">([^<]+)<',
                   other.get("/done").get_data(as_text=True)).group(1)
  engine = sa.create_engine(db_url)
  with engine.connect() as conn:
    row = conn.execute(sa.select(db.participants)).one()
  engine.dispose()
  assert row.completion_code == code and row.attention_passed is True


def test_failed_attention_check_is_recorded(study, db_url):
  client = make_app(study, db_url).test_client()
  start(client)
  assert client.get("/done").status_code == 302  # no code before the end
  while True:
    trial, page = current(client)
    if trial is None:
      break
    helpers.listen(client, trial, page)
    attention = re.search(r"please choose\s*<strong>(\d)", page)
    value = 8 - int(attention.group(1)) if attention else 4
    assert rate(client, trial, value).status_code == 200
  engine = sa.create_engine(db_url)
  with engine.connect() as conn:
    assert conn.execute(sa.select(
        db.participants.c.attention_passed)).scalar_one() is False
  engine.dispose()


@pytest.mark.parametrize("trials", [None, 2, 4])
def test_assignment_is_balanced_over_model_pairs(study, db_url, trials):
  app = make_app(study, db_url, trials=trials)
  num_pairs = len(design.model_pairs(helpers.MODELS))
  for _ in range(num_pairs):  # P participants: each pair exactly `trials` times
    start(app.test_client())
  engine = sa.create_engine(db_url)
  with engine.connect() as conn:
    rows = conn.execute(sa.select(db.trials)).all()
  engine.dispose()
  pairs = collections.Counter(tuple(sorted((r.left_model, r.right_model)))
                              for r in rows if r.kind == "pair")
  per = trials or num_pairs
  assert set(pairs.values()) == {per}, pairs
  assert len(pairs) == num_pairs
  assert all(r.left_model != r.right_model for r in rows)
  if trials is None:  # 36 pair trials: every model seen on the left unless
    # sides were not random (chance 4 * 2**-18); with 12 trials, 1 in 16
    sides = collections.Counter(r.left_model for r in rows
                                if r.kind == "pair")
    assert len(sides) == len(helpers.MODELS)  # left/right is randomised
  by_participant = collections.Counter(r.participant_id for r in rows
                                       if r.kind == "attention")
  assert set(by_participant.values()) == {1}


def test_pairs_for_cycles_through_all_pairs():
  models = ["a", "b", "c", "d"]
  seen = collections.Counter()
  for k in range(1, 7):
    seen.update(design.pairs_for(k, models, 5))
  assert set(seen.values()) == {5} and len(seen) == 6


def test_schema_version_recorded_and_newer_refused(tmp_path):
  engine = db.make_engine("sqlite:///" + str(tmp_path / "s.db"))
  assert db.create_schema(engine) == db.SCHEMA_VERSION
  assert db.create_schema(engine) == db.SCHEMA_VERSION  # idempotent
  with engine.connect() as conn:
    assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
  with engine.begin() as conn:
    conn.execute(db.schema_version.update().values(version=99))
  with pytest.raises(db.SchemaError, match="newer"):
    db.create_schema(engine)


def test_older_schema_is_migrated(db_url, monkeypatch):
  engine = db.make_engine(db_url)
  db.create_schema(engine)
  calls = []
  later = db.SCHEMA_VERSION + 1

  def add_column(conn):
    calls.append(1)
    conn.exec_driver_sql("ALTER TABLE participants ADD COLUMN note TEXT")

  monkeypatch.setattr(db, "SCHEMA_VERSION", later)
  monkeypatch.setattr(db, "MIGRATIONS",
                      {**db.MIGRATIONS, later - 1: add_column})
  assert db.create_schema(engine) == later and calls == [1]
  assert db.create_schema(engine) == later and calls == [1]  # once only
  with engine.connect() as conn:
    assert conn.execute(sa.select(db.schema_version.c.version)).scalar() == (
        later)
    conn.exec_driver_sql("SELECT note FROM participants")
  engine.dispose()


def test_schema_without_a_migration_path_is_refused(tmp_path, monkeypatch):
  engine = db.make_engine("sqlite:///" + str(tmp_path / "m.db"))
  db.create_schema(engine)
  monkeypatch.setattr(db, "SCHEMA_VERSION", db.SCHEMA_VERSION + 1)
  with pytest.raises(db.SchemaError, match="no migration"):
    db.create_schema(engine)


def test_admin_token_must_be_long(study, tmp_path):
  with pytest.raises(ValueError, match="16"):
    study_app.create_app(study, db_url="sqlite:///" + str(tmp_path / "s.db"),
                         admin_token="short")


def test_serve_and_analyze_fail_fast_with_clear_messages(tmp_path):
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def run(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)

  r = run("listening_study.serve", f"--run_dir={tmp_path}")
  assert r.returncode != 0 and "melodies.npy" in r.stderr
  r = run("listening_study.serve", f"--run_dir={tmp_path}", "--trials=0")
  assert r.returncode != 0 and "--trials" in r.stderr
  r = run("listening_study.serve", f"--run_dir={tmp_path / 'nope'}")
  assert r.returncode != 0 and "--run_dir" in r.stderr
  r = run("listening_study.analyze", f"--run_dir={tmp_path}")
  assert r.returncode != 0 and "no study database" in r.stderr
