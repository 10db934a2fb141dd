"""Melodies against real ones (rl_tuner_tf/evaluation/beyond_rules.py).

Each metric against values worked out by hand on a few melodies; MusPy's
shared metrics on the same melodies; sanity on a synthetic corpus (its own
held-out half at the floor, a one-melody model and uniform random tokens far
from it); the evaluation job's files and report section.
"""
import json
import math
import os

import numpy as np
import pytest

from data_pipeline import tfrecords
from rl_tuner_tf import note_rnn
from rl_tuner_tf.evaluation import beyond_rules as br
from rl_tuner_tf.evaluation import reference


def tok(pitch):
  return pitch - br.LOWEST_PITCH + br.FIRST_PITCH_TOKEN


# C4 for 4 steps, E4 for 2 (then a note-off and a rest), G4 for 8.
M1 = [tok(60), 1, 1, 1, tok(64), 1, 0, 1, tok(67), 1, 1, 1, 1, 1, 1, 1]
# C4 for 1 step, a rest beat, D4 for 2, C#4 for 6.
M2 = [tok(60), 0, 1, 1, 1, 1, 1, 1, tok(62), 1, tok(61), 1, 1, 1, 1, 1]


def test_notes_and_features_by_hand():
  notes = br.Notes([M1, M2])
  assert notes.count.tolist() == [3, 3]
  assert notes.pitches[:, :3].tolist() == [[60, 64, 67], [60, 62, 61]]
  assert notes.lengths[:, :3].tolist() == [[4, 2, 8], [1, 2, 6]]
  assert notes.starts[:, :3].tolist() == [[0, 4, 8], [0, 8, 10]]
  assert notes.sounding[1].astype(int).tolist() == [1, 0, 0, 0, 0, 0, 0, 0,
                                                    1, 1, 1, 1, 1, 1, 1, 1]
  f = br.features([M1, M2])
  np.testing.assert_allclose(f["pitch_count"], [3, 3])
  np.testing.assert_allclose(f["pitch_range"], [7, 2])
  np.testing.assert_allclose(f["average_pitch_interval"], [3.5, 1.5])
  np.testing.assert_allclose(f["inter_onset_interval"], [4.0, 5.0])
  np.testing.assert_allclose(f["pitch_entropy"], [math.log2(3)] * 2)
  np.testing.assert_allclose(f["pitch_class_entropy"], [math.log2(3)] * 2)
  # C E G all in C major; C C# D: at most 2 of 3 in any major / minor scale.
  np.testing.assert_allclose(f["scale_consistency"], [1.0, 2 / 3])
  np.testing.assert_allclose(f["empty_beat_rate"], [0.0, 0.25])
  hist = np.zeros(12)
  hist[[0, 4, 7]] = 1 / 3
  np.testing.assert_allclose(f["pitch_class_histogram"][0], hist)
  trans = np.zeros((12, 12))
  trans[0, 4] = trans[4, 7] = 0.5
  np.testing.assert_allclose(f["pitch_class_transition_matrix"][0],
                             trans.ravel())
  # lengths 4, 2, 8 -> classes 3, 1, 5; 1, 2, 6 -> 0, 1, 4
  lengths = np.zeros((2, 9))
  lengths[0, [3, 1, 5]] = 1 / 3
  lengths[1, [0, 1, 4]] = 1 / 3
  np.testing.assert_allclose(f["note_length_histogram"], lengths)
  nl = np.zeros((9, 9))
  nl[3, 1] = nl[1, 5] = 0.5
  np.testing.assert_allclose(f["note_length_transition_matrix"][0], nl.ravel())


def test_a_melody_without_notes_is_left_out_not_zero():
  f = br.features([[0] * 8, [1] * 8])
  assert f["notes"].tolist() == [0, 0]
  assert np.isnan(f["pitch_count"]).all() and np.isnan(f["pitch_entropy"]).all()
  assert f["empty_beat_rate"].tolist() == [1.0, 1.0]


def test_set_histograms_and_js_by_hand():
  h = br.histograms([M1, M2])
  assert h["pitch_class"][[0, 1, 2, 4, 7]].tolist() == [2, 1, 1, 1, 1]
  interval = np.zeros(27, int)
  for step in (4, 3, 2, -1):
    interval[step + 13] += 1
  assert h["interval"].tolist() == interval.tolist()
  assert h["note_length"][[0, 1, 3, 5, 7]].tolist() == [1, 2, 1, 1, 1]
  assert br.js_bits([1, 0], [0, 1]) == pytest.approx(1.0)
  assert br.js_bits([2, 2], [1, 1]) == pytest.approx(0.0)
  # p = (1/2, 1/2, 0), q = (0, 1/2, 1/2): M = (1/4, 1/2, 1/4) -> 1/2 bit
  assert br.js_bits([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5)


def test_edit_distance_ngrams_and_copying_by_hand():
  a = np.array([[1, 2, 3, 4], [5, 5, 5, 5], [1, 2, 3, 4]])
  b = np.array([[1, 3, 4, 9], [5, 5, 5, 5], [4, 3, 2, 1]])
  # substitute/delete: 1234 -> 1349 is 2 (delete 2, insert 9); 4321 is 4
  assert br.edit_distances(a, b).tolist() == [2, 0, 4]
  scale = [[tok(p) for p in (60, 62, 64, 66, 68)]]  # intervals 2 2 2 2
  assert br.interval_ngrams_per_1000_notes(scale) == pytest.approx(200.0)
  train = [np.array(M1 + M2)]
  index = br.training_window_index(train, width=16)
  assert len(index) == 17  # 17 distinct 16-step windows of 32 steps
  copied = np.array([M2 + M1, list(reversed(M1)) * 2])
  assert br.copied_share(copied[:, :16], index) == 0.5  # M2 is a window
  assert br.nearest_distances(np.array([M1]), np.array([M1, M2])).tolist() == [0]


def test_intervals_overlap_and_frechet_by_hand():
  low, high = br.wilson_interval(50, 100)
  assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4000, 3))
  assert br.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
  # Same covariance, means 3 apart in each of 3 dimensions: 27.
  assert br.frechet_distance(x, x + 3.0) == pytest.approx(27.0, rel=1e-6)
  d = rng.normal(5, 1, 2000)
  oa, kl, *_ = br.density_overlap(d, d)
  assert oa == pytest.approx(1.0, abs=1e-3) and kl == pytest.approx(0, abs=1e-3)
  oa, kl, *_ = br.density_overlap(d, d + 20)
  assert oa < 1e-3 and kl > 10
  # Two unit Gaussians one standard deviation apart overlap 2 Phi(-1/2).
  oa, _, *_ = br.density_overlap(rng.normal(0, 1, 20000),
                                 rng.normal(1, 1, 20000))
  assert oa == pytest.approx(0.617, abs=0.02)
  assert br.pairwise([0.0, 3.0, 4.0]).tolist() == [3.0, 4.0, 1.0]
  assert br.pairwise([[0.0, 0.0]], [[3.0, 4.0], [np.nan, 1.0]]).tolist() == [5.0]


def test_shared_metrics_match_muspy():
  """MusPy's pitch entropy, pitch-class entropy, scale consistency, pitches
  used and pitch range on the same notes. (Its empty-beat rate counts beats
  up to the last note's end and marks the beat a note ends on, so it is not
  the rate over the composition's beats computed here.)"""
  try:
    import muspy  # pylint: disable=g-import-not-at-top
  except ImportError:
    if os.environ.get("CI"):
      raise  # the test extra installs it
    pytest.skip('MusPy is not installed (pip install -e ".[test]")')
  rng = np.random.default_rng(3)
  melodies = np.concatenate([[M1, M2], rng.integers(0, 38, (6, 16))])
  melodies[:, 0] = np.maximum(melodies[:, 0], 2)
  f = br.features(melodies)
  notes = br.Notes(melodies)
  for i in range(len(melodies)):
    track = muspy.Track(notes=[
        muspy.Note(time=int(s), pitch=int(p), duration=int(d), velocity=64)
        for s, p, d in zip(notes.starts[i], notes.pitches[i], notes.lengths[i])
        if p >= 0])
    music = muspy.Music(resolution=4, tracks=[track])
    assert f["pitch_entropy"][i] == pytest.approx(muspy.pitch_entropy(music))
    assert f["pitch_class_entropy"][i] == pytest.approx(
        muspy.pitch_class_entropy(music))
    assert f["scale_consistency"][i] == pytest.approx(
        muspy.scale_consistency(music))
    assert f["pitch_count"][i] == muspy.n_pitches_used(music)
    assert f["pitch_range"][i] == muspy.pitch_range(music)


# -- sanity on a synthetic corpus -------------------------------------------------
def folk_like(rng, n, length):
  """Melodies from one simple process: steps on the C major scale, notes of
  1, 2 or 4 sixteenths, now and then a rest."""
  scale = np.array([0, 2, 4, 5, 7, 9, 11])
  out = []
  for _ in range(n):
    degree, melody = rng.integers(7, 14), []
    while len(melody) < length:
      degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, 20))
      pitch = 60 + 12 * (degree // 7) + scale[degree % 7] - 12
      steps = int(rng.choice([1, 2, 2, 4]))
      melody += [tok(pitch)] + [1] * (steps - 1)
      if rng.random() < 0.05:
        melody += [0, 1]
    out.append(np.array(melody[:length]))
  return out


def write_corpus(directory, rng, train=300, validation=300, length=64):
  os.makedirs(directory, exist_ok=True)
  tfrecords.write_shards(directory, "train", folk_like(rng, train, length), 1)
  tfrecords.write_shards(directory, "validation",
                         folk_like(rng, validation, length), 2)
  with open(os.path.join(directory, "manifest.json"), "w") as f:
    json.dump({"synthetic": True, "melodies": train + validation}, f)
  return directory


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  return write_corpus(str(tmp_path_factory.mktemp("corpus")),
                      np.random.default_rng(0))


def test_reference_windows_start_on_notes_in_disjoint_halves(corpus):
  ref = reference.load(corpus, 32)
  assert ref.a.shape[1] == ref.b.shape[1] == 32
  assert (ref.a[:, 0] >= 2).all() and (ref.b[:, 0] >= 2).all()
  assert len(ref.a) >= 150 and len(ref.b) >= 150
  assert len(ref.train_windows) > 0 and ref.train_index.size > 0
  assert reference.windows([1, tok(60), 1, 1, tok(62), 1, tok(64)], 3).tolist() == [
      [tok(60), 1, 1], [tok(62), 1, tok(64)]]


def test_the_held_out_half_scores_at_the_floor_and_bad_models_far(corpus):
  ref = reference.load(corpus, 32)
  model = note_rnn.NoteRNN((16,))
  floor = br.measure(ref.a, ref, note_rnn=model, seed=1)
  rng = np.random.default_rng(2)
  random_tokens = br.measure(rng.integers(0, 38, (3000, 32)), ref,
                             note_rnn=model, seed=1)
  one_melody = br.measure(np.repeat(ref.a[:1], 3000, axis=0), ref,
                          note_rnn=model, seed=1)
  for key in ("js_pitch_class", "js_interval", "js_note_length"):
    assert floor[key] < 0.05, (key, floor[key])
    assert random_tokens[key] > 5 * floor[key] + 0.05, key
  assert floor["classifier_accuracy_low"] < 0.6
  assert random_tokens["classifier_accuracy_low"] > 0.9
  assert one_melody["classifier_accuracy_low"] > 0.9
  assert floor["frechet_note_rnn"] * 10 < random_tokens["frechet_note_rnn"]
  for feature in br.YL_FEATURES:
    assert floor[f"yl_{feature}_oa"] > 0.8, feature
  assert np.mean([random_tokens[f"yl_{k}_oa"] for k in br.YL_FEATURES]) < 0.5
  assert floor["distinct_share"] > 0.95 and one_melody["distinct_share"] < 0.01
  assert one_melody["mean_pairwise_edit_distance"] == 0
  assert one_melody["interval_4grams_per_1000_notes"] < 0.1 * floor[
      "interval_4grams_per_1000_notes"]
  # The one melody is a held-out window: its 16-step windows come from the
  # same process as the training melodies, so they may be in them or not --
  # but it is always the same answer for every melody.
  assert one_melody["copied_16_step_window_share"] in (0.0, 1.0)
  assert random_tokens["copied_16_step_window_share"] == 0.0
  assert random_tokens["near_copy_share"] == 0.0


def test_evaluation_writes_beyond_rules_files_and_report(corpus, tmp_path,
                                                         random_checkpoint):
  from rl_tuner_tf.evaluation import pipeline  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / "eval")
  messages = []
  config = pipeline.EvaluationConfig(
      note_rnn_checkpoint=random_checkpoint, output_dir=out,
      num_melodies=400, batch_size=200, num_samples=0,
      reference_tfrecord_dir=corpus)
  pipeline.run(config, log=messages.append)
  with open(os.path.join(out, "note_rnn", "beyond_rules.json")) as f:
    metrics = json.load(f)
  with open(os.path.join(out, "beyond_rules_floor.json")) as f:
    floor = json.load(f)
  for key in ("js_interval", "yl_pitch_range_oa", "frechet_note_rnn",
              "classifier_accuracy", "distinct_share",
              "copied_16_step_window_share", "pitch_entropy_ci95"):
    assert key in metrics and key in floor
  assert metrics["melodies"] == 400
  table = open(os.path.join(out, "beyond_rules.md")).read()
  assert "held-out melodies (floor)" in table and "| note_rnn |" in table
  assert os.path.getsize(os.path.join(out, "beyond_rules.png")) > 1000
  assert os.path.getsize(os.path.join(out, "beyond_rules_vs_rules.png")) > 1000
  report = open(os.path.join(out, "report.html")).read()
  assert "Beyond the rules" in report
  # A second run reuses the measurements (same melodies, corpus and code).
  before = os.path.getmtime(os.path.join(out, "note_rnn", "beyond_rules.json"))
  pipeline.run(config, log=messages.append)
  assert os.path.getmtime(os.path.join(
      out, "note_rnn", "beyond_rules.json")) == before
