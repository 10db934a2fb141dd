"""The whole study in a real headless Chromium (Debian's chromium +
chromium-driver via Selenium), against the real server (gunicorn), then the
database.  The browser plays the clips at simulate.BROWSER_PLAYBACK_SPEED and
the server is told so (--max_playback_speed); the server's own record shows
every clip served and every rating after both clips' length at that speed.
Skipped only when Chromium is missing outside CI; in CI (CI set) a missing
browser is a failure: .ci/run installs it."""
import os

import pytest
import sqlalchemy as sa

import listening_study
from listening_study import db
from listening_study import design
from listening_study import simulate
from listening_study import stimuli
import listening_study_helpers as helpers

SPEED = f"--max_playback_speed={simulate.BROWSER_PLAYBACK_SPEED}"


def _require_browser():
  missing = [p for p in (simulate.CHROMIUM, simulate.CHROMEDRIVER)
             if not os.path.exists(p)]
  try:
    import selenium  # pylint: disable=g-import-not-at-top
    del selenium
  except ImportError:
    missing.append("the selenium package")
  if missing:
    message = (f"{', '.join(missing)} missing: apt-get install chromium "
               "chromium-driver; pip install selenium")
    if os.environ.get("CI"):
      pytest.fail("CI is set but " + message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  return helpers.make_study(tmp_path_factory.mktemp("browser"), per_model=2)


def _db_rows(db_url):
  engine = db.make_engine(db_url)
  with engine.begin() as conn:
    people = conn.execute(sa.select(db.participants)).all()
    trials = conn.execute(sa.select(db.trials).order_by(db.trials.c.id)).all()
    ratings = conn.execute(sa.select(db.ratings)).all()
  engine.dispose()
  return people, trials, ratings


def test_participant_takes_whole_study_in_chromium(study, tmp_path):
  _require_browser()
  manifest = stimuli.load_manifest(listening_study.stimuli_dir(study))
  taste = simulate.Taste(manifest, {"q": 2.0, "psi": 1.5, "g": 1.0}, seed=0)
  profile = str(tmp_path / "profile")
  db_url = "sqlite:///" + str(tmp_path / "study.db")
  with simulate.ServerProcess(study, helpers.ADMIN_TOKEN,
                              ["--workers=1", "--threads=4",
                               f"--db_url={db_url}", SPEED]) as server:
    driver = simulate.make_chromium_driver(user_data_dir=profile)
    try:
      code, first = simulate.take_study_in_browser(
          driver, server.url, taste, external_id="browser-1", max_trials=2)
    finally:
      driver.quit()
  assert code is None and len(first) == 2
  # The server and the browser both restart; the participant goes on.
  with simulate.ServerProcess(study, helpers.ADMIN_TOKEN,
                              ["--workers=2", "--threads=4",
                               f"--db_url={db_url}", SPEED]) as server:
    driver = simulate.make_chromium_driver(user_data_dir=profile)
    try:
      code, rest = simulate.take_study_in_browser(driver, server.url, taste)
      shown = driver.page_source
    finally:
      driver.quit()
  assert code and code in shown
  people, trials, ratings = _db_rows(db_url)
  assert len(people) == 1
  person = people[0]
  assert person.external_id == "browser-1"
  assert person.completion_code == code and person.completed_at is not None
  assert person.attention_passed is True
  num_pairs = len(helpers.MODELS) * (len(helpers.MODELS) - 1) // 2
  assert len(trials) == num_pairs + 1 == len(first) + len(rest)
  assert sorted((r.trial_id, r.value) for r in ratings) == sorted(first + rest)
  assert all(t.played_left and t.played_right for t in trials)
  by_trial = {r.trial_id: r for r in ratings}
  for t in trials:  # the server's own record
    rating = by_trial[t.id]
    assert t.shown_at <= t.left_served_at <= rating.created_at
    assert t.shown_at <= t.right_served_at <= rating.created_at
    assert rating.response_ms >= design.min_listen_ms(
        t.audio_ms, simulate.BROWSER_PLAYBACK_SPEED)
    assert rating.client_response_ms is not None
  assert sum(t.kind == "attention" for t in trials) == 1
  for t in trials:  # the simulated taste answered by the planted qualities
    rating = {r.trial_id: r.value for r in ratings}[t.id]
    if t.kind == "attention":
      assert rating == t.expected_value


def test_browser_is_refused_a_rating_before_both_clips_played(study, tmp_path):
  _require_browser()
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  db_url = "sqlite:///" + str(tmp_path / "study.db")
  with simulate.ServerProcess(study, helpers.ADMIN_TOKEN,
                              ["--workers=1", "--threads=2",
                               f"--db_url={db_url}", SPEED]) as server:
    driver = simulate.make_chromium_driver()
    try:
      driver.get(server.url)
      driver.find_element(By.ID, "consent").click()
      driver.find_element(By.ID, "start").click()
      assert driver.find_element(By.ID, "scale").get_attribute("disabled")
      assert driver.find_element(By.ID, "submit").get_attribute("disabled")
      # Forcing the request from the page still gets a clear 409.
      status = driver.execute_async_script(
          "var done = arguments[0];"
          "var id = document.getElementById('trial').dataset.trial;"
          "fetch('/api/trials/' + id + '/rating', {method: 'POST',"
          " headers: {'Content-Type': 'application/json'},"
          " body: JSON.stringify({value: 4})}).then(function (r) {"
          " done(r.status); });")
      assert status == 409
    finally:
      driver.quit()
  assert _db_rows(db_url)[2] == []  # nothing stored
