"""The preference-collection design: a large pool rendered on demand, pairs
drawn at random from it, and simulated listeners whose planted taste is a
feature of the melody (register), taking the study through the real server
into the real database (SQLite and PostgreSQL), then to a preference file."""
import os
import random
import subprocess
import sys
import wave

import numpy as np
import pytest

import listening_study
from listening_study import analysis
from listening_study import app as study_app
from listening_study import design
from listening_study import export_preferences
from listening_study import simulate
from listening_study import stimuli
import listening_study_helpers as helpers
from rl_tuner_tf import preferences

db_url = helpers.db_url
postgresql = helpers.postgresql

SPEED = 200
POOL_MODELS = ("note_rnn", "q", "g")


def _pool_melodies(n=40, steps=16, seed=1):
  """Melodies in registers spread over two octaves, so a register taste
  has something to prefer."""
  rng = np.random.default_rng(seed)
  out = {}
  for m in POOL_MODELS:
    base = rng.integers(2, 24, size=(n, 1))
    tokens = base + rng.integers(0, 12, size=(n, steps))
    tokens[:, 1::2] = 1  # note, hold, note, hold ...
    out[m] = tokens
  return out


@pytest.fixture(scope="module")
def pool_study(tmp_path_factory):
  study = str(tmp_path_factory.mktemp("pool") / "study")
  stimuli.prepare(None, listening_study.stimuli_dir(study), per_model=30,
                  melodies=_pool_melodies(), design="preferences",
                  render_mode="on_demand")
  return study


def test_an_on_demand_pool_writes_only_its_manifest(pool_study):
  out = listening_study.stimuli_dir(pool_study)
  manifest = stimuli.load_manifest(out)
  assert manifest["design"] == "preferences"
  assert manifest["render"] == "on_demand"
  assert len(manifest["stimuli"]) == 30 * len(POOL_MODELS)
  assert not os.listdir(os.path.join(out, "audio"))
  assert not os.path.exists(os.path.join(out, "midi"))
  # a study rendered ahead still refuses a manifest whose WAV is missing
  ahead = os.path.join(os.path.dirname(out), "ahead")
  made = stimuli.prepare(None, ahead, per_model=2, melodies=_pool_melodies(4))
  os.remove(os.path.join(ahead, "audio", next(iter(made["stimuli"])) + ".wav"))
  with pytest.raises(stimuli.StimuliError, match="WAV is missing"):
    stimuli.load_manifest(ahead)


def test_a_clip_rendered_on_demand_is_the_clip_rendered_ahead(tmp_path):
  melodies = _pool_melodies(3)
  ahead = stimuli.prepare(None, str(tmp_path / "ahead"), per_model=1, seed=4,
                          melodies=melodies)
  later = stimuli.prepare(None, str(tmp_path / "later"), per_model=1, seed=4,
                          melodies=melodies, render_mode="on_demand")
  by_melody = {(c["model"], c["melody_index"]): i
               for i, c in later["stimuli"].items()}
  for clip_id, clip in ahead["stimuli"].items():
    other = by_melody[(clip["model"], clip["melody_index"])]
    path = stimuli.render_stimulus(later, str(tmp_path / "later"), other)
    with wave.open(path) as a, wave.open(str(tmp_path / "ahead" / "audio" /
                                             (clip_id + ".wav"))) as b:
      assert a.getnframes() == b.getnframes() == later["clip_samples"]
      x = np.frombuffer(a.readframes(a.getnframes()), "<i2") / 32767
      y = np.frombuffer(b.readframes(b.getnframes()), "<i2") / 32767
    # same renderer, length and loudness (FluidSynth's voices may differ
    # by rounding only)
    assert stimuli.dbfs(stimuli.gated_rms(x)) == pytest.approx(
        stimuli.dbfs(stimuli.gated_rms(y)), abs=0.01)
    assert np.abs(x - y).max() < 2e-3
    assert clip["gated_rms_dbfs"] == stimuli.TARGET_RMS_DBFS or clip[
        "peak_limited"]
    assert os.stat(path).st_mtime == stimuli.FILE_STAMP


def test_pairs_are_drawn_from_the_whole_pool(pool_study):
  manifest = stimuli.load_manifest(listening_study.stimuli_dir(pool_study))
  rng = random.Random(0)
  seen_pairs, same_model = set(), 0
  for participant in range(1, 41):
    rows = design.build_trials(participant, manifest, 10, rng)
    assert len(rows) == 11
    assert [r["kind"] for r in rows].count("attention") == 1
    assert rows[0]["kind"] == "pair" and rows[-1]["kind"] == "pair"
    clips = [c for r in rows for c in (r["left_stimulus"], r["right_stimulus"])]
    assert len(set(clips)) == len(clips)  # no clip twice for one participant
    for r in rows:
      assert r["left_model"] == manifest["stimuli"][r["left_stimulus"]]["model"]
      seen_pairs.add(frozenset((r["left_stimulus"], r["right_stimulus"])))
      same_model += r["left_model"] == r["right_model"]
  # 440 pairs among 90 clips: nearly all distinct, one model with itself
  # about a third of the time (3 models)
  assert len(seen_pairs) > 400
  assert 0.2 < same_model / 440 < 0.45
  assert design.default_trials(manifest) == design.PREFERENCE_TRIALS


def test_taste_of_the_melody_rates_as_the_planted_model():
  manifest = {"stimuli": {"lo": dict(model="q", tokens=[14, 1, 14, 1]),
                          "hi": dict(model="q", tokens=[26, 1, 26, 1])}}
  taste = simulate.Taste(manifest, utility=preferences.register_utility,
                         scale=0.25, noise=0.0)
  # u = 0 and 12 semitones: z = 0.25 * -12 = -3 -> "B much better"
  assert taste.choose("lo", "hi") == 7 and taste.choose("hi", "lo") == 1
  assert taste.choose("lo", "hi", attention_value=1) == 1
  noisy = simulate.Taste(manifest, utility=preferences.register_utility,
                         scale=0.1, noise=1.0, seed=3)
  got = [noisy.choose("hi", "lo") for _ in range(4000)]
  want = preferences.simulate_ratings(np.array([[26, 1, 26, 1]] * 4000),
                                      np.array([[14, 1, 14, 1]] * 4000),
                                      preferences.register_utility, 0.1, 1.0,
                                      seed=3)
  assert got == want.tolist()  # one rating model, one random stream
  with pytest.raises(ValueError, match="give a taste"):
    simulate.Taste(manifest)


def test_simulated_listeners_with_a_register_taste_fill_the_database(
    pool_study, db_url, tmp_path):
  """The simulate command line against the real server: the clips are
  rendered as they are asked for, and the exported pairs carry the taste."""
  with simulate.ServerProcess(pool_study, helpers.ADMIN_TOKEN, [
      "--workers=2", "--threads=4", f"--db_url={db_url}", "--trials=8",
      f"--max_playback_speed={SPEED}"]) as server:
    r = subprocess.run(
        [sys.executable, "-m", "listening_study.simulate", f"--url={server.url}",
         f"--study_dir={pool_study}", "--participants=12", "--threads=4",
         "--utility=register", "--scale=0.5", "--noise=0.5",
         f"--playback_speed={SPEED}", "--seed=7"],
        capture_output=True, text=True, timeout=600, cwd=helpers.ROOT)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert r.stdout.count("code ") == 12
  rows = study_app.study_rows(pool_study, db_url)
  assert len(rows) == 12 * 9
  out = listening_study.stimuli_dir(pool_study)
  served = {c for row in rows for c in (row["left_stimulus"],
                                        row["right_stimulus"])}
  rendered = {n[:-4] for n in os.listdir(os.path.join(out, "audio"))}
  assert served <= rendered
  manifest = stimuli.load_manifest(out)
  pairs = export_preferences.pairs_from_rows(rows, manifest,
                                             max_playback_speed=SPEED)
  assert pairs.num_pairs == 12 * 8
  u = preferences.register_utility
  d = u(pairs.tokens_a) - u(pairs.tokens_b)
  decided = (pairs.rating != 4) & (d != 0)
  agree = np.mean((pairs.rating[decided] < 4) == (d[decided] > 0))
  assert agree > 0.85, agree
  result = analysis.analyse(rows, max_playback_speed=SPEED)
  assert result["same_model_pairs"] > 0
  assert result["ratings_used"] + result["same_model_pairs"] == 12 * 8
