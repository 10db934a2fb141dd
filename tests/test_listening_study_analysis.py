"""The analysis on simulated raters with a planted preference order, and its
exclusion of sessions whose server timestamps break the listening rule."""
import csv
import datetime
import json
import os

import numpy as np

from listening_study import analysis
from listening_study import design

MODELS = ["note_rnn", "q", "psi", "g"]
PLANTED = {"note_rnn": 0.0, "g": 0.6, "psi": 1.2, "q": 1.8}  # g < psi < q
AUDIO_MS = 6000  # two 3-second clips
START = datetime.datetime(2030, 1, 1)


def timed(row, shown, response_ms, served=True, audio_ms=AUDIO_MS):
  """`row` with the server's record: shown at `shown`, rated response_ms
  later, both clips served (or not)."""
  served_at = shown + datetime.timedelta(seconds=1) if served else None
  row.update(shown_at=shown, left_served_at=served_at,
             right_served_at=served_at, audio_ms=audio_ms,
             response_ms=response_ms,
             created_at=shown + datetime.timedelta(milliseconds=response_ms))
  return row


def simulate_rows(quality, participants=32, seed=0, noise=1.0,
                  fail_attention_every=0):
  """Rows as the export gives them: each participant rates every pair once
  (6 x 32 = 192 ratings, the paper's count) plus one attention check."""
  rng = np.random.default_rng(seed)
  rows, rating_id = [], 0
  for p in range(1, participants + 1):
    shown = START + datetime.timedelta(hours=p)
    failed = bool(fail_attention_every) and p % fail_attention_every == 0
    for a, b in design.pairs_for(p, MODELS, 6):
      left, right = (a, b) if rng.random() < 0.5 else (b, a)
      diff = quality[right] - quality[left]
      value = int(np.clip(4 + np.round(diff + rng.normal(0, noise)), 1, 7))
      if failed:
        value = int(rng.integers(1, 8))  # careless: random answers
      rating_id += 1
      rows.append(timed(dict(rating_id=rating_id, participant_id=p,
                             kind="pair", left_model=left, right_model=right,
                             value=value, attention_passed=not failed),
                        shown, AUDIO_MS + 2500))
      shown += datetime.timedelta(seconds=10)
    rating_id += 1
    rows.append(timed(dict(rating_id=rating_id, participant_id=p,
                           kind="attention", left_model="q", right_model="g",
                           value=1 if not failed else 7,
                           attention_passed=not failed), shown, AUDIO_MS + 900))
  return rows


def test_planted_order_is_recovered_and_significant():
  result = analysis.analyse(simulate_rows(PLANTED), MODELS)
  assert result["ratings_used"] == 192
  assert all(result["per_model"][m]["comparisons"] == 96 for m in MODELS)
  assert result["ranking"] == ["q", "psi", "g", "note_rnn"]
  assert result["kruskal_wallis"]["df"] == 3
  assert result["kruskal_wallis"]["p"] < 1e-6
  tests = {(x["a"], x["b"]): x for x in result["mann_whitney"]}
  for tuned in ("q", "psi", "g"):  # all tuned models above the Note RNN
    x = tests[("note_rnn", tuned)]
    assert x["significant"] and x["higher"] == tuned
  assert tests[("q", "g")]["significant"]
  # Figure 3's wins follow the planted order too
  wins = [result["per_model"][m]["wins"] for m in ("note_rnn", "g", "psi", "q")]
  assert wins == sorted(wins)


def test_no_effect_is_not_significant():
  flat = {m: 0.0 for m in MODELS}
  result = analysis.analyse(simulate_rows(flat, seed=1), MODELS)
  assert result["kruskal_wallis"]["p"] > 0.05
  assert not any(x["significant"] for x in result["mann_whitney"])
  # and over many simulated studies the false-positive rate stays near alpha
  rejections = sum(
      analysis.analyse(simulate_rows(flat, seed=s), MODELS)
      ["kruskal_wallis"]["p"] < 0.05 for s in range(100, 140))
  assert rejections <= 6, rejections


def test_failed_attention_participants_are_excluded():
  rows = simulate_rows(PLANTED, fail_attention_every=4)
  result = analysis.analyse(rows, MODELS)
  assert result["participants_excluded_attention"] == 8
  assert result["ratings_used"] == 24 * 6
  kept = analysis.analyse(rows, MODELS, exclude_failed_attention=False)
  assert kept["ratings_used"] == 192


def test_implausible_sessions_are_reported_and_excluded_by_default():
  rows = simulate_rows(PLANTED, participants=12)
  by_participant = {}
  for row in rows:
    by_participant.setdefault(row["participant_id"], []).append(row)
  # 1: one pair rated before its clips were served; 2: one rating faster
  # than its audio; 3: every rating on time by its own clock, but all the
  # pairs "shown" at once, so the session is shorter than its audio;
  # 4: no server record (a version-1 database); 5: every rating at twice
  # real time (the session, with its pauses, is long enough), which only a
  # listening rule at 1x calls fast.
  timed(by_participant[1][2], by_participant[1][2]["shown_at"], AUDIO_MS + 10,
        served=False)
  timed(by_participant[2][0], by_participant[2][0]["shown_at"], 1200)
  for row in by_participant[3]:
    timed(row, START, AUDIO_MS + 100)
  for row in by_participant[4]:
    row.update(shown_at=None, response_ms=None, audio_ms=None)
  for row in by_participant[5]:
    timed(row, row["shown_at"], AUDIO_MS // 2 + 10)
  found = analysis.implausible_sessions(rows)
  assert found == {1: ["missing_audio"], 2: ["fast_rating"],
                   3: ["fast_session"], 4: ["unverified"],
                   5: ["fast_rating"]}
  assert set(analysis.implausible_sessions(rows, max_playback_speed=2)) == {
      1, 2, 3, 4}
  result = analysis.analyse(rows, MODELS)
  assert result["participants_implausible"] == 5
  assert result["implausible_excluded"] is True
  assert result["implausible_reasons"] == {
      "unverified": 1, "missing_audio": 1, "fast_rating": 2, "fast_session": 1}
  assert result["ratings_used"] == 7 * 6 and result["participants"] == 7
  assert [s["participant_id"] for s in result["implausible_sessions"]] == [
      1, 2, 3, 4, 5]
  kept = analysis.analyse(rows, MODELS, exclude_implausible=False)
  assert kept["ratings_used"] == 12 * 6
  assert kept["participants_implausible"] == 5
  assert "INCLUDED" in analysis.implausible_text(kept)
  assert "5 implausible sessions" in analysis.format_text(result)
  # Text timestamps, as in ratings.csv, give the same verdicts.
  as_text = [{k: (v.isoformat(sep=" ") if isinstance(v, datetime.datetime)
                  else v) for k, v in r.items()} for r in rows]
  assert analysis.implausible_sessions(as_text) == found


def test_holm_correction():
  assert np.allclose(analysis.holm([0.01, 0.04, 0.03, 0.005]),
                     [0.03, 0.06, 0.06, 0.02])
  assert analysis.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1


def test_write_results_files(tmp_path):
  rows = simulate_rows(PLANTED, participants=6)
  for r in rows:
    r.update(external_id="=1+1", trial_id=r["rating_id"], position=0,
             left_stimulus="a" * 16, right_stimulus="b" * 16,
             expected_value=None, client_response_ms=10,
             participant_completed=True)
  timed(rows[0], rows[0]["shown_at"], 10)  # participant 1 rated too fast
  out = analysis.write_results(rows, str(tmp_path))
  with open(out["csv"]) as f:
    exported = list(csv.DictReader(f))
  assert len(exported) == len(rows)
  assert exported[0]["external_id"] == "'=1+1"  # no spreadsheet formula
  with open(out["json"]) as f:
    saved = json.load(f)
  assert saved["ratings_used"] == 30  # participant 1 excluded
  assert saved["participants_implausible"] == 1
  assert saved["implausible_reasons"]["fast_rating"] == 1
  with open(out["figure"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(out["summary"]) as f:
    page = f.read()
  assert "Kruskal-Wallis" in page and "Holm" in page
  assert "1 implausible session (" in page and "excluded" in page
  assert os.path.basename(out["csv"]) in page
  text = analysis.format_text(out["result"])
  assert "H(3)" in text and "note_rnn" in text
