"""A whole study taken over HTTP by simulated participants at once, against
the real server (gunicorn, `python -m listening_study.serve`) on SQLite and
on PostgreSQL; then the database and the analysis.  A script that skips the
audio takes part in the same study and gets nothing stored."""
import csv
import io
import json
import os
import re
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
import sqlalchemy as sa

import listening_study
from listening_study import analysis
from listening_study import app as study_app
from listening_study import db
from listening_study import design
from listening_study import export_preferences
from listening_study import simulate
from listening_study import stimuli
import listening_study_helpers as helpers
from rl_tuner_tf import preferences

# The database fixtures: each test taking db_url runs on SQLite and on
# PostgreSQL (helpers.postgresql starts the server once per session).
db_url = helpers.db_url
postgresql = helpers.postgresql

SPEED = 50  # the simulated participants "play" clips 50x faster than real
PARTICIPANTS = 4


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  return helpers.make_study(tmp_path_factory.mktemp("server"), per_model=2)


def _cheat(url, taste):
  """Reports both clips played and rates at once, never fetching audio."""
  cheat = simulate.HttpParticipant(url, taste)
  status, _, _ = cheat.request(
      "POST", "/start", "consent=yes&external_id=cheat",
      {"Content-Type": "application/x-www-form-urlencoded"})
  assert status == 303
  _, _, page = cheat.request("GET", "/study")
  trial = int(re.search(r'data-trial="(\d+)"', page).group(1))
  for side in ("left", "right"):
    status, body = cheat.post_json(f"/api/trials/{trial}/played",
                                   {"side": side})
    assert status == 409 and "never loaded" in body["error"], body
  status, body = cheat.post_json(f"/api/trials/{trial}/rating",
                                 {"value": 7, "response_ms": 9000})
  assert status == 409 and "play both" in body["error"], body
  status, body = cheat.post_json("/api/trials/99999999999999999999/rating",
                                 {"value": 7})
  assert status == 404 and body == {"error": "no such API resource"}


def test_simulated_participants_take_the_whole_study_over_http(
    study, db_url):
  manifest = stimuli.load_manifest(listening_study.stimuli_dir(study))
  quality = {"q": 2.0, "psi": 1.5, "g": 1.0}
  with simulate.ServerProcess(study, helpers.ADMIN_TOKEN, [
      "--workers=2", "--threads=4", f"--db_url={db_url}",
      f"--max_playback_speed={SPEED}"]) as server:
    participants = [simulate.HttpParticipant(
        server.url, simulate.Taste(manifest, quality, seed=k),
        playback_speed=SPEED) for k in range(PARTICIPANTS)]
    codes = simulate.take_part(participants, threads=PARTICIPANTS)
    _cheat(server.url, simulate.Taste(manifest, quality))
    admin = simulate.HttpParticipant(server.url, None)
    status, _, text = admin.request(
        "GET", "/admin/export.csv",
        headers={"Authorization": f"Bearer {helpers.ADMIN_TOKEN}"})
  assert status == 200
  assert len(codes) == PARTICIPANTS and all(codes)
  trials_each = len(design.model_pairs(manifest["models"])) + 1
  assert all(p.audio_bytes > 0 for p in participants)
  exported = list(csv.DictReader(io.StringIO(text)))
  assert len(exported) == PARTICIPANTS * trials_each
  assert set(study_app.EXPORT_COLUMNS) <= set(exported[0])

  engine = db.make_engine(db_url)
  with engine.begin() as conn:
    rows = study_app.export_rows(conn)
    people = conn.execute(sa.select(db.participants)).all()
  engine.dispose()
  assert len(people) == PARTICIPANTS + 1  # the cheat has no code
  assert sum(p.completion_code is None for p in people) == 1
  acknowledged = {(t, v) for p in participants for t, v in p.ratings}
  assert {(r["trial_id"], r["value"]) for r in rows} == acknowledged
  for r in rows:  # the server's own record of every rating
    assert r["shown_at"] <= r["left_served_at"] <= r["created_at"]
    assert r["shown_at"] <= r["right_served_at"] <= r["created_at"]
    assert r["response_ms"] >= design.min_listen_ms(r["audio_ms"], SPEED)
    assert r["client_response_ms"] is not None
  # At the speed the server allowed, every session is plausible; a listening
  # rule at real time excludes them all (they played 50x faster).
  result = analysis.analyse(rows, max_playback_speed=SPEED)
  assert result["participants_implausible"] == 0
  assert result["ratings_used"] == PARTICIPANTS * (trials_each - 1)
  strict = analysis.analyse(rows)
  assert strict["participants_implausible"] == PARTICIPANTS
  assert strict["implausible_reasons"]["fast_rating"] == PARTICIPANTS
  assert strict["ratings_used"] == 0
  assert analysis.analyse(rows, exclude_implausible=False)[
      "ratings_used"] == PARTICIPANTS * (trials_each - 1)
  # The command line says the same, from the same database.
  for flags, used, implausible in (
      ([f"--max_playback_speed={SPEED}"], len(rows) - PARTICIPANTS, 0),
      (["--include_implausible"], len(rows) - PARTICIPANTS, PARTICIPANTS)):
    r = subprocess.run([sys.executable, "-m", "listening_study.analyze",
                        f"--study_dir={study}", f"--db_url={db_url}", *flags],
                       capture_output=True, text=True, timeout=300,
                       cwd=helpers.ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(os.path.join(listening_study.results_dir(study),
                           "analysis.json")) as f:
      saved = json.load(f)
    assert saved["ratings_used"] == used
    assert saved["participants_implausible"] == implausible
    assert saved["implausible_excluded"] == (not implausible)
  # The trusted ratings as a preference file for a reward model / DPO.
  pairs = export_preferences.pairs_from_rows(rows, manifest,
                                             max_playback_speed=SPEED)
  rated = [r for r in rows if r["kind"] == "pair"]
  assert pairs.num_pairs == len(rated)
  clips = manifest["stimuli"]
  np.testing.assert_array_equal(
      pairs.tokens_a, [clips[r["left_stimulus"]]["tokens"] for r in rated])
  np.testing.assert_array_equal(pairs.rating, [r["value"] for r in rated])
  with pytest.raises(ValueError, match="no rating is left"):
    export_preferences.pairs_from_rows(rows, manifest)  # all too fast
  output = os.path.join(str(study), "prefs.npz")
  r = subprocess.run([sys.executable, "-m", "listening_study.export_preferences",
                      f"--study_dir={study}", f"--db_url={db_url}",
                      f"--max_playback_speed={SPEED}", f"--output={output}"],
                     capture_output=True, text=True, timeout=300,
                     cwd=helpers.ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  loaded = preferences.load(output)
  assert loaded.num_pairs == len(rated)
  assert loaded.provenance["left_out"] == {"attention_check_failed": 0,
                                           "implausible": 0}
  secret = urllib.parse.urlsplit(db_url).password
  if secret:
    assert secret not in json.dumps(loaded.provenance)


def test_serve_refuses_a_bad_playback_speed(study):
  r = subprocess.run([sys.executable, "-m", "listening_study.serve",
                      f"--study_dir={study}", "--max_playback_speed=0"],
                     capture_output=True, text=True, timeout=120,
                     cwd=helpers.ROOT)
  assert r.returncode != 0 and "--max_playback_speed" in r.stderr
