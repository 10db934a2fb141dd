"""The participant API probed as an attacker would, on SQLite and on
PostgreSQL: ids out of range or not numbers, wrong methods, unknown routes,
bodies that are not JSON objects, missing fields, values out of range.  Every
answer must be a 4xx with a JSON {"error": ...} (never an HTML page, never a
5xx), and nothing may change in the database."""
import json
import re

import pytest
import sqlalchemy as sa

from listening_study import app as study_app
from listening_study import db
import listening_study_helpers as helpers

# The database fixtures: each test taking db_url runs on SQLite and on
# PostgreSQL (helpers.postgresql starts the server once per session).
db_url = helpers.db_url
postgresql = helpers.postgresql

BAD_IDS = ("99999999999999999999", "9223372036854775807",
           "9223372036854775808", "18446744073709551616", "2147483648",
           "9999999999", "0", "-1", "-2147483648", "-99999999999999999999",
           "abc", "1e3", "0x10", "1.5", "%201", "1%2F2", "%00", "NaN",
           "1" * 400)
# Bodies for the rating and "played" endpoints: (raw body, content type,
# expected status).
BAD_BODIES = (
    ("value=3", "application/x-www-form-urlencoded", 415),
    ('{"value": 3}', "text/plain", 415),
    ('{"value": 3}', None, 415),
    ('{"value": ', "application/json", 400),
    ("", "application/json", 400),
    ("[]", "application/json", 400),
    ("null", "application/json", 400),
    ('"value"', "application/json", 400),
    ("3", "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    ("[" * 5000 + "]" * 5000, "application/json", 400),  # deeper than Python
    ('{"value": 3, "pad": "' + "x" * 20000 + '"}', "application/json", 413),
)
BAD_VALUES = (0, 8, -1, 10**30, -10**30, 3.5, "3", "", True, False, None, [3],
              {"v": 3})
BAD_RESPONSE_MS = (-1, 10**9, 10**30, "5", 1.5, True, [1])
BAD_SIDES = ("middle", "LEFT", "", None, 1, True, ["left"], {"side": "left"})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  return helpers.make_study(tmp_path_factory.mktemp("attacks"), per_model=2)


@pytest.fixture
def app(study, db_url):
  app = study_app.create_app(study, db_url=db_url,
                             admin_token=helpers.ADMIN_TOKEN,
                             clock=helpers.StepClock())
  yield app
  app.extensions["study"]["engine"].dispose()


@pytest.fixture
def session(app):
  """A participant on their first pair, both clips loaded and reported
  played, and a minute later on the server's clock: any valid rating would
  now be taken, so a refusal is the probe's doing."""
  client = app.test_client()
  assert client.post("/start", data={"consent": "yes"}).status_code == 303
  page = client.get("/study").get_data(as_text=True)
  trial = int(re.search(r'data-trial="(\d+)"', page).group(1))
  helpers.listen(client, trial, page)
  return client, trial


def snapshot(app):
  """Every row of the study's tables, to show that nothing changed."""
  engine = app.extensions["study"]["engine"]
  with engine.begin() as conn:
    return {t.name: sorted(map(tuple, conn.execute(sa.select(t)).all()),
                           key=repr)
            for t in (db.participants, db.trials, db.ratings)}


def assert_refused(response, status=None):
  """A 4xx (or exactly `status`) with a JSON object {"error": text}."""
  what = f"{response.request.method} {response.request.path}"
  assert 400 <= response.status_code < 500, (what, response.status_code,
                                             response.data[:200])
  if status is not None:
    assert response.status_code == status, (what, response.status_code,
                                            response.data[:200])
  assert response.mimetype == "application/json", (what, response.mimetype)
  body = json.loads(response.data)
  assert isinstance(body, dict) and isinstance(body.get("error"), str), what
  assert body["error"], what
  lowered = response.data.lower()
  assert b"<html" not in lowered and b"<!doctype" not in lowered, what


def test_ids_out_of_range_or_not_numbers_are_404_json(app, session):
  client, _ = session
  before = snapshot(app)
  for bad in BAD_IDS:
    for endpoint, body in (("rating", {"value": 4}), ("played",
                                                      {"side": "left"})):
      assert_refused(client.post(f"/api/trials/{bad}/{endpoint}", json=body),
                     404)
  assert snapshot(app) == before


def test_other_peoples_and_missing_trials_are_refused(app, session):
  client, trial = session
  other = app.test_client()
  assert other.post("/start", data={"consent": "yes"}).status_code == 303
  page = other.get("/study").get_data(as_text=True)
  theirs = int(re.search(r'data-trial="(\d+)"', page).group(1))
  before = snapshot(app)
  for target, status in ((theirs, 403), (study_app.MAX_ID, 403),
                         (trial + 10**6, 403)):
    assert_refused(client.post(f"/api/trials/{target}/rating",
                               json={"value": 4}), status)
    assert_refused(client.post(f"/api/trials/{target}/played",
                               json={"side": "left"}), status)
  nobody = app.test_client()
  assert_refused(nobody.post(f"/api/trials/{trial}/rating", json={"value": 4}),
                 401)
  assert_refused(nobody.post("/api/comment", json={"text": "hi"}), 401)
  assert snapshot(app) == before


def test_wrong_methods_are_405_json(app, session):
  client, trial = session
  before = snapshot(app)
  for path in (f"/api/trials/{trial}/rating", f"/api/trials/{trial}/played",
               "/api/comment"):
    for method in ("GET", "PUT", "DELETE", "PATCH"):
      r = client.open(path, method=method, json={"value": 4})
      assert_refused(r, 405)
      assert "POST" in r.headers.get("Allow", ""), (method, path)
  assert snapshot(app) == before


def test_unknown_api_routes_are_404_json(app, session):
  client, trial = session
  before = snapshot(app)
  for path in ("/api", "/api/", "/api/nope", "/api/trials",
               "/api/trials/", f"/api/trials/{trial}",
               f"/api/trials/{trial}/", f"/api/trials/{trial}/rating/",
               f"/api/trials/{trial}/rating/extra", f"/api/trials/{trial}/x",
               "/api/admin/export.csv", "/api/comment/", "/api/%00",
               "/api/" + "a" * 5000):
    for method in ("GET", "POST", "PUT", "DELETE"):
      assert_refused(client.open(path, method=method, json={"value": 4}), 404)
  assert snapshot(app) == before


@pytest.mark.parametrize("endpoint", ["rating", "played", "comment"])
def test_bodies_that_are_not_json_objects_are_refused(app, session, endpoint):
  client, trial = session
  path = ("/api/comment" if endpoint == "comment"
          else f"/api/trials/{trial}/{endpoint}")
  before = snapshot(app)
  for body, content_type, status in BAD_BODIES:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post(path, data=body, headers=headers)
    assert_refused(r, status)
  assert snapshot(app) == before


def test_missing_fields_and_values_out_of_range_are_422(app, session):
  client, trial = session
  rating, played = (f"/api/trials/{trial}/rating",
                    f"/api/trials/{trial}/played")
  before = snapshot(app)
  assert_refused(client.post(rating, json={}), 422)
  assert_refused(client.post(rating, json={"response_ms": 5000}), 422)
  assert_refused(client.post(played, json={}), 422)
  assert_refused(client.post("/api/comment", json={}), 422)
  for value in BAD_VALUES:
    r = client.post(rating, json={"value": value})
    assert_refused(r, 422)
    assert "value must be" in r.get_json()["error"], value
  for literal in ("NaN", "Infinity", "-Infinity", "1e400", "4.0"):
    assert_refused(client.post(rating, data='{"value": %s}' % literal,
                               content_type="application/json"), 422)
  for response_ms in BAD_RESPONSE_MS:
    assert_refused(client.post(rating, json={"value": 4,
                                             "response_ms": response_ms}), 422)
  for side in BAD_SIDES:
    assert_refused(client.post(played, json={"side": side}), 422)
  for text in (5, None, ["x"], "x" * (study_app.MAX_COMMENT + 1)):
    assert_refused(client.post("/api/comment", json={"text": text}), 422)
  assert_refused(client.post("/api/comment", json={"text": "early"}), 409)
  assert snapshot(app) == before
  # and the same session can still rate: the probes changed nothing
  assert client.post(rating, json={"value": 4}).status_code == 200


def test_participant_pages_stay_html_and_unknown_pages_404(app):
  client = app.test_client()
  assert client.get("/").mimetype == "text/html"
  for path in ("/nope", "/audio/nope.wav", "/resume/xyz"):
    assert client.get(path).status_code == 404
