"""The listening rule, enforced by the server from its own timestamps (on
SQLite and on PostgreSQL): a trial's first showing and each clip's first
serving are recorded; a rating is refused before both clips were served or
sooner after the showing than both clips play at max_playback_speed; the
stored response time is the server's.  Also the migration of a version-1
database, whose unverifiable ratings the analysis then excludes."""
import datetime
import math
import re

import pytest
import sqlalchemy as sa

import listening_study
from listening_study import analysis
from listening_study import app as study_app
from listening_study import db
from listening_study import design
from listening_study import stimuli
import listening_study_helpers as helpers

# The database fixtures: each test taking db_url runs on SQLite and on
# PostgreSQL (helpers.postgresql starts the server once per session).
db_url = helpers.db_url
postgresql = helpers.postgresql


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  return helpers.make_study(tmp_path_factory.mktemp("listening"), per_model=2)


@pytest.fixture(scope="module")
def manifest(study):
  return stimuli.load_manifest(listening_study.stimuli_dir(study))


@pytest.fixture
def clock():
  return helpers.StepClock(step=0)  # still until the test advances it


@pytest.fixture
def make_app(study, db_url, clock):
  apps = []

  def make(**kwargs):
    kwargs.setdefault("clock", clock)
    app = study_app.create_app(study, db_url=db_url,
                               admin_token=helpers.ADMIN_TOKEN, **kwargs)
    apps.append(app)
    return app
  yield make
  for app in apps:
    app.extensions["study"]["engine"].dispose()


def begin(app):
  """A new participant on their first pair -> (client, trial id, page)."""
  client = app.test_client()
  assert client.post("/start", data={"consent": "yes"}).status_code == 303
  page = client.get("/study").get_data(as_text=True)
  return client, int(re.search(r'data-trial="(\d+)"', page).group(1)), page


def trial_row(app, trial):
  with app.extensions["study"]["engine"].begin() as conn:
    return conn.execute(sa.select(db.trials).where(
        db.trials.c.id == trial)).one()


def ratings(app):
  with app.extensions["study"]["engine"].begin() as conn:
    return conn.execute(sa.select(db.ratings)).all()


def needed_ms(app, trial, speed=design.MAX_PLAYBACK_SPEED):
  row = trial_row(app, trial)
  return int(math.ceil(row.audio_ms / speed))


def rate(client, trial, value=4, **extra):
  return client.post(f"/api/trials/{trial}/rating",
                     json=dict(value=value, **extra))


def test_showing_and_serving_are_recorded_by_the_server(make_app, clock,
                                                        manifest):
  app = make_app()
  client, trial, page = begin(app)
  row = trial_row(app, trial)
  assert row.shown_at == clock.now
  assert row.audio_ms == design.clips_ms(manifest, row.left_stimulus,
                                         row.right_stimulus) > 0
  assert row.left_served_at is None and row.right_served_at is None
  clock.advance(5)
  client.get("/study")  # a reload keeps the first showing
  assert trial_row(app, trial).shown_at == row.shown_at
  left, right = helpers.audio_paths(page)
  assert f"/audio/{row.left_stimulus}.wav" in left
  # No audio is recorded for a HEAD, for someone without a session, for
  # another participant, or for a clip that is not this trial's.
  assert client.head(left).status_code == 200
  assert app.test_client().get(left).status_code == 200
  other, _, _ = begin(app)
  assert other.get(left).status_code == 200
  elsewhere = next(i for i in manifest["stimuli"]
                   if i not in (row.left_stimulus, row.right_stimulus))
  assert client.get(f"/audio/{elsewhere}.wav").status_code == 200
  row = trial_row(app, trial)
  assert row.left_served_at is None and row.right_served_at is None
  clock.advance(1)
  r = client.get(left)
  assert r.status_code == 200 and "private" in r.headers["Cache-Control"]
  row = trial_row(app, trial)
  assert row.left_served_at == clock.now and row.right_served_at is None
  clock.advance(1)
  client.get(left)  # the first serving counts
  assert trial_row(app, trial).left_served_at == row.left_served_at


def test_rating_waits_for_both_clips_and_their_length(make_app, clock):
  app = make_app()
  client, trial, page = begin(app)
  left, right = helpers.audio_paths(page)
  clock.advance(3600)  # time alone is not enough
  for side in ("left", "right"):
    r = client.post(f"/api/trials/{trial}/played", json={"side": side})
    assert r.status_code == 409 and "never loaded" in r.get_json()["error"]
  r = rate(client, trial)
  assert r.status_code == 409 and "play both" in r.get_json()["error"]
  client.get(left)
  client.post(f"/api/trials/{trial}/played", json={"side": "left"})
  assert rate(client, trial).status_code == 409  # one clip is not both
  client.get(right)
  client.post(f"/api/trials/{trial}/played", json={"side": "right"})
  assert ratings(app) == []
  # Now the time: a fresh pair, both clips served at once.
  assert rate(client, trial).status_code == 200
  page = client.get("/study").get_data(as_text=True)
  second = int(re.search(r'data-trial="(\d+)"', page).group(1))
  helpers.listen(client, second, page)
  needed = needed_ms(app, second)
  for early in (0, needed / 2, needed - 1):
    clock.now = trial_row(app, second).shown_at + datetime.timedelta(
        milliseconds=early)
    r = rate(client, second, response_ms=999999)
    assert r.status_code == 409 and "too soon" in r.get_json()["error"]
  assert len(ratings(app)) == 1
  clock.now = trial_row(app, second).shown_at + datetime.timedelta(
      milliseconds=needed)
  assert rate(client, second, response_ms=999999).status_code == 200
  stored = {r.trial_id: r for r in ratings(app)}[second]
  assert stored.response_ms == needed  # the server's measure ...
  assert stored.client_response_ms == 999999  # ... the page's kept apart
  assert stored.created_at == clock.now


@pytest.mark.parametrize("speed", [2.0, 16.0])
def test_max_playback_speed_is_a_server_setting(make_app, clock, speed):
  app = make_app(max_playback_speed=speed)
  client, trial, page = begin(app)
  helpers.listen(client, trial, page)
  needed = needed_ms(app, trial, speed)
  assert needed < needed_ms(app, trial)
  shown = trial_row(app, trial).shown_at
  clock.now = shown + datetime.timedelta(milliseconds=needed - 1)
  assert rate(client, trial).status_code == 409
  clock.now = shown + datetime.timedelta(milliseconds=needed)
  assert rate(client, trial).status_code == 200


def test_bad_playback_speeds_are_refused(study, tmp_path):
  for bad in (0, -1, float("nan"), float("inf"), "fast"):
    with pytest.raises(ValueError):
      study_app.create_app(study, db_url="sqlite:///" + str(tmp_path / "s.db"),
                           admin_token=helpers.ADMIN_TOKEN,
                           max_playback_speed=bad)


def test_a_script_that_skips_the_audio_gets_nothing_stored(make_app, clock):
  """What a script did before: report both clips played and rate every pair
  at once, without fetching audio."""
  app = make_app()
  client = app.test_client()
  client.post("/start", data={"consent": "yes"})
  with app.extensions["study"]["engine"].begin() as conn:
    trial_ids = conn.execute(sa.select(db.trials.c.id).order_by(
        db.trials.c.position)).scalars().all()
  # Without opening the pair's page, the pair was never shown.
  r = rate(client, trial_ids[0])
  assert r.status_code == 409 and "not been shown" in r.get_json()["error"]
  client.get("/study")
  clock.advance(3600)
  for trial in trial_ids:
    for side in ("left", "right"):
      client.post(f"/api/trials/{trial}/played", json={"side": side})
    assert rate(client, trial, response_ms=60000).status_code == 409
  assert ratings(app) == []
  assert client.get("/done").status_code == 302  # no completion code
  assert all(not trial_row(app, t).played_left for t in trial_ids)


def test_a_script_that_fetches_but_does_not_wait_is_refused(make_app, clock):
  app = make_app()
  client, trial, page = begin(app)
  helpers.listen(client, trial, page)
  clock.advance(0.05)
  r = rate(client, trial, response_ms=30000)
  assert r.status_code == 409 and "too soon" in r.get_json()["error"]
  assert ratings(app) == []


# ---- migration from schema version 1 ----------------------------------------
def version_1_metadata():
  """The tables as schema version 1 made them (no server record)."""
  m = sa.MetaData()
  sa.Table("schema_version", m,
           sa.Column("id", sa.Integer, primary_key=True),
           sa.Column("version", sa.Integer, nullable=False),
           sa.Column("updated_at", sa.DateTime, nullable=False))
  sa.Table("participants", m,
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
           sa.Column("token", sa.String(64), nullable=False, unique=True),
           sa.Column("external_id", sa.String(64)),
           sa.Column("created_at", sa.DateTime, nullable=False),
           sa.Column("completed_at", sa.DateTime),
           sa.Column("completion_code", sa.String(32)),
           sa.Column("attention_passed", sa.Boolean),
           sa.Column("comment", sa.Text))
  sa.Table("trials", m,
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
           sa.Column("participant_id", sa.Integer,
                     sa.ForeignKey("participants.id"), nullable=False),
           sa.Column("position", sa.Integer, nullable=False),
           sa.Column("kind", sa.String(16), nullable=False),
           sa.Column("left_stimulus", sa.String(32), nullable=False),
           sa.Column("right_stimulus", sa.String(32), nullable=False),
           sa.Column("left_model", sa.String(64), nullable=False),
           sa.Column("right_model", sa.String(64), nullable=False),
           sa.Column("expected_value", sa.Integer),
           sa.Column("played_left", sa.Boolean, nullable=False),
           sa.Column("played_right", sa.Boolean, nullable=False),
           sa.UniqueConstraint("participant_id", "position"))
  sa.Table("ratings", m,
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
           sa.Column("trial_id", sa.Integer, sa.ForeignKey("trials.id"),
                     nullable=False, unique=True),
           sa.Column("participant_id", sa.Integer,
                     sa.ForeignKey("participants.id"), nullable=False),
           sa.Column("value", sa.Integer, nullable=False),
           sa.Column("response_ms", sa.Integer),
           sa.Column("created_at", sa.DateTime, nullable=False))
  return m


def test_version_1_database_is_migrated_and_its_ratings_unverified(
    db_url, make_app, clock, manifest):
  old = version_1_metadata()
  engine = db.make_engine(db_url)
  old.create_all(engine)
  ids = sorted(manifest["stimuli"], key=lambda i: manifest["stimuli"][i][
      "model"])
  by_model = {}
  for i in ids:
    by_model.setdefault(manifest["stimuli"][i]["model"], i)
  (ma, a), (mb, b) = list(by_model.items())[:2]
  now = datetime.datetime(2029, 1, 1)
  with engine.begin() as conn:
    conn.execute(old.tables["schema_version"].insert().values(
        id=1, version=1, updated_at=now))
    conn.execute(old.tables["participants"].insert().values(
        id=1, token="a" * 32, created_at=now))
    for position in (0, 1):
      conn.execute(old.tables["trials"].insert().values(
          id=position + 1, participant_id=1, position=position, kind="pair",
          left_stimulus=a, right_stimulus=b, left_model=ma, right_model=mb,
          played_left=True, played_right=True))
    conn.execute(old.tables["ratings"].insert().values(
        trial_id=1, participant_id=1, value=6, response_ms=64, created_at=now))
  assert db.create_schema(engine) == db.SCHEMA_VERSION == 2
  with engine.begin() as conn:
    rating = conn.execute(sa.select(db.ratings)).one()
    trial = conn.execute(sa.select(db.trials).where(
        db.trials.c.id == 1)).one()
    rows = study_app.export_rows(conn)
  engine.dispose()
  # The page's 64 ms is kept apart; the server has no measure of it.
  assert rating.client_response_ms == 64 and rating.response_ms is None
  assert trial.shown_at is None and trial.audio_ms is None
  result = analysis.analyse(rows)
  assert result["participants_implausible"] == 1
  assert result["implausible_reasons"]["unverified"] == 1
  assert result["ratings_used"] == 0
  assert analysis.analyse(rows, exclude_implausible=False)["ratings_used"] == 1
  # The participant goes on under version 2: their next pair is recorded.
  app = make_app()
  client = app.test_client()
  client.set_cookie(study_app.COOKIE, "a" * 32)
  page = client.get("/study").get_data(as_text=True)
  assert 'data-trial="2"' in page
  row = trial_row(app, 2)
  assert row.shown_at is not None
  assert row.audio_ms == design.clips_ms(manifest, a, b)
  helpers.listen(client, 2, page)
  clock.advance(60)
  assert rate(client, 2).status_code == 200
