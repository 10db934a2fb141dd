"""The preference reward model: the pairs file format, the planted taste and
its Bayes rate, learning that taste (and not learning noise), the saved
model, resuming and the command line (rl_tuner_tf/preferences.py,
reward_model.py, train_reward_model.py). Small: a 16-unit Note RNN,
melodies of 32 tokens."""
import dataclasses
import json
import os

from absl import app
import numpy as np
import pytest

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from conftest import run_command
from rl_tuner_tf import configuration
from rl_tuner_tf import note_rnn
from rl_tuner_tf import preferences
from rl_tuner_tf import reward_model
from rl_tuner_tf import train_reward_model

T = 32
SCALE, NOISE = 0.3, 1.0  # the planted register taste of the learning tests


# -- helpers -------------------------------------------------------------------
def _melodies(n, seed, length=T):
  """n melodies [n, length]: notes around a random centre (its register),
  holds and rests."""
  rng = np.random.default_rng(seed)
  centre = rng.integers(8, 31, n)
  notes = np.clip(centre[:, None] + rng.integers(-4, 5, (n, length)), 2, 37)
  kind = rng.random((n, length))
  return np.where(kind < 0.55, notes, np.where(kind < 0.9, 1, 0)).astype(
      np.int32)


def _participants(n, people=40):
  return np.array([f"p{i % people:02d}" for i in range(n)])


def _register_pairs(n, seed=0):
  """n pairs rated by the planted register taste (higher is better)."""
  a, b = _melodies(n, seed), _melodies(n, seed + 1000)
  rating = preferences.simulate_ratings(a, b, preferences.register_utility,
                                        SCALE, NOISE, seed=seed + 2000)
  return preferences.PreferencePairs(
      a, b, rating, _participants(n),
      provenance={"simulated": "register", "scale": SCALE, "noise": NOISE})


def _control_pairs(n, seed=0):
  """n pairs whose ratings are independent of the melodies."""
  a, b = _melodies(n, seed), _melodies(n, seed + 1000)
  rating = np.random.default_rng(seed + 3000).integers(1, 8, n)
  return preferences.PreferencePairs(a, b, rating, _participants(n),
                                     provenance={"simulated": "control"})


def _config(pairs_path, output_dir, checkpoint, **overrides):
  settings = dict(preferences=pairs_path, output_dir=output_dir,
                  note_rnn_checkpoint=checkpoint, num_steps=300,
                  batch_size=64, learning_rate=0.01, validation_fraction=0.2,
                  l2=1e-3, seed=0, checkpoint_every=300, log_every=300)
  settings.update(overrides)
  return train_reward_model.RewardModelConfig(**settings)


def _write_raw(path, header_changes=None, **arrays):
  """A pairs file written by save, then rewritten with some arrays or
  header fields replaced (to plant one problem)."""
  preferences.save(_register_pairs(8), path)
  with np.load(path, allow_pickle=False) as npz:
    contents = {name: npz[name] for name in npz.files}
  header = json.loads(str(contents.pop("header")))
  header.update(header_changes or {})
  contents.update(arrays)
  with open(path, "wb") as f:
    np.savez(f, header=np.array(json.dumps(header)), **contents)


@pytest.fixture(scope="module")
def small_note_rnn(tmp_path_factory):
  """A seeded random Note RNN with one 16-unit layer, saved."""
  tf.keras.utils.set_random_seed(0)
  directory = str(tmp_path_factory.mktemp("note_rnn_16"))
  note_rnn.save(note_rnn.NoteRNN((16,)), directory)
  return directory


@pytest.fixture(scope="module")
def register_run(tmp_path_factory, small_note_rnn):
  """A reward model trained 300 steps on 2,000 register-taste pairs:
  (pairs, config, metrics)."""
  root = tmp_path_factory.mktemp("register_run")
  pairs = _register_pairs(2000)
  path = str(root / "pairs.npz")
  preferences.save(pairs, path)
  config = _config(path, str(root / "out"), small_note_rnn)
  return pairs, config, train_reward_model.train(config, log=lambda _: None)


# -- the file format -----------------------------------------------------------
def test_pairs_round_trip_through_one_file(tmp_path):
  pairs = _register_pairs(50)
  path = str(tmp_path / "pairs.npz")
  sha = preferences.save(pairs, path)
  loaded = preferences.load(path)
  for name in preferences.ARRAY_NAMES:
    np.testing.assert_array_equal(getattr(loaded, name), getattr(pairs, name))
  assert loaded.provenance == pairs.provenance
  header = preferences.read_header(path)
  assert header["format"] == preferences.FORMAT_NAME
  assert header["version"] == preferences.FORMAT_VERSION
  assert (header["num_pairs"], header["length"]) == (50, T)
  assert header["sha256"] == sha == preferences.digest(loaded)
  assert not [f for f in os.listdir(tmp_path) if f != "pairs.npz"]


@pytest.mark.parametrize("change,problem", [
    (dict(header_changes={"version": 2}), "version 2.*newer"),
    (dict(header_changes={"format": "other"}), "format 'other'"),
    (dict(header_changes={"num_pairs": 9}), "header says 9 pairs"),
    (dict(tokens_b=np.ones([8, T + 1], np.uint8)), "tokens_b has shape"),
    (dict(tokens_a=np.full([8, T], 38, np.uint8)), "token 38, outside"),
    (dict(rating=np.full([8], 8, np.uint8)), "rating 8 is outside"),
    (dict(rating=np.zeros([8], np.uint8)), "rating 0 is outside"),
    (dict(rating=np.ones([7], np.uint8)), r"rating has shape \(7,\)"),
    (dict(participant=np.array(["x"] * 3)), "participant has shape"),
    (dict(rating=np.full([8], 4, np.uint8)), "checksum mismatch"),
])
def test_load_names_the_file_and_the_problem(tmp_path, change, problem):
  path = str(tmp_path / "bad.npz")
  _write_raw(path, **change)
  with pytest.raises(preferences.PreferenceFileError,
                     match=f"bad.npz.*{problem}"):
    preferences.load(path)


def test_load_refuses_a_missing_or_foreign_file(tmp_path):
  with pytest.raises(preferences.PreferenceFileError, match="no such file"):
    preferences.load(str(tmp_path / "none.npz"))
  path = tmp_path / "text.npz"
  path.write_text("not a zip")
  with pytest.raises(preferences.PreferenceFileError, match="text.npz.*npz"):
    preferences.load(str(path))
  np.savez(str(tmp_path / "other.npz"), x=np.zeros(3))
  with pytest.raises(preferences.PreferenceFileError, match="no header"):
    preferences.load(str(tmp_path / "other.npz"))


def test_pairs_are_validated_on_construction():
  a = _melodies(4, 0)
  with pytest.raises(preferences.PreferenceFileError, match="rating 9"):
    preferences.PreferencePairs(a, a, np.array([1, 2, 3, 9]), _participants(4))
  with pytest.raises(preferences.PreferenceFileError, match="token -1"):
    preferences.PreferencePairs(a - 1, a, np.ones(4, int), _participants(4))


# -- targets, split, planted taste ---------------------------------------------
def test_preference_target_follows_the_scale():
  # 1 = A much better, 4 = no preference, 7 = B much better.
  assert preferences.preference_target(1) == 1.0
  assert preferences.preference_target(4) == 0.5
  assert preferences.preference_target(7) == 0.0
  np.testing.assert_allclose(preferences.preference_target(np.arange(1, 8)),
                             (7 - np.arange(1, 8)) / 6)
  with pytest.raises(ValueError, match="1..7"):
    preferences.preference_target(np.array([3, 8]))


def test_split_keeps_each_participant_on_one_side():
  pairs = _register_pairs(400)
  train, validation = preferences.split_by_participant(pairs, 0.25, seed=3)
  assert not set(train.participant) & set(validation.participant)
  assert train.num_pairs + validation.num_pairs == 400
  assert 0.2 <= validation.num_pairs / 400 <= 0.3
  again, _ = preferences.split_by_participant(pairs, 0.25, seed=3)
  np.testing.assert_array_equal(again.participant, train.participant)
  lone = pairs.subset(np.flatnonzero(pairs.participant == "p00"))
  with pytest.raises(ValueError, match="2 or more participants"):
    preferences.split_by_participant(lone, 0.2, seed=0)


def test_utilities():
  c4, g4, off, hold = 14, 21, 0, 1
  melody = np.array([[c4, hold, g4, off], [off, hold, off, hold]])
  np.testing.assert_allclose(preferences.register_utility(melody), [3.5, 0])
  np.testing.assert_allclose(preferences.density_utility(melody), [0.5, 0])


def test_simulated_ratings_cut_z_at_the_stated_thresholds():
  z = np.array([0.0, 0.49, 0.5, 1.49, 1.5, 2.5, 9, -0.5, -1.5, -2.5])
  a, b = np.ones([len(z), 1]), np.zeros([len(z), 1])
  rating = preferences.simulate_ratings(a, b, lambda t: z * t[:, 0],
                                        scale=1.0, noise=0.0, seed=0)
  np.testing.assert_array_equal(rating, [4, 4, 3, 3, 2, 1, 1, 5, 6, 7])


def test_the_true_utility_reaches_best_possible_accuracy():
  n = 40000
  a, b = _melodies(n, 10), _melodies(n, 11)
  u = preferences.register_utility
  rating = preferences.simulate_ratings(a, b, u, SCALE, NOISE, seed=12)
  has = rating != 4
  accuracy = np.mean(((u(a) - u(b)) > 0)[has] == (rating < 4)[has])
  best = preferences.best_possible_accuracy(a, b, u, SCALE, NOISE)
  assert 0.7 < best < 0.95
  assert abs(accuracy - best) < 3 * np.sqrt(best * (1 - best) / has.sum())
  # No noise: the ideal model is always right on a preference.
  assert preferences.best_possible_accuracy(a, b, u, SCALE, 0.0) == 1.0


# -- learning --------------------------------------------------------------------
def test_reward_model_learns_the_planted_taste(register_run):
  """Held-out accuracy near the Bayes rate of the planted taste: on the
  run's held-out pairs (within their sampling error) and on 5,000 fresh
  pairs (within 3 points)."""
  pairs, config, metrics = register_run
  _, validation = preferences.split_by_participant(
      pairs, config.validation_fraction, config.seed)
  u = preferences.register_utility
  best = preferences.best_possible_accuracy(
      validation.tokens_a, validation.tokens_b, u, SCALE, NOISE)
  held_out = metrics["validation"]
  n = held_out["pairs_with_preference"]
  truth = reward_model.pair_metrics(
      SCALE * (u(validation.tokens_a) - u(validation.tokens_b)),
      validation.rating)["accuracy"]
  fresh = _register_pairs(5000, seed=77)
  scorer = reward_model.load(os.path.join(config.output_dir, "model"))
  fresh_accuracy = reward_model.evaluate(scorer, fresh)["accuracy"]
  fresh_best = preferences.best_possible_accuracy(
      fresh.tokens_a, fresh.tokens_b, u, SCALE, NOISE)
  print(f"held-out accuracy {held_out['accuracy']:.3f} "
        f"{np.round(held_out['accuracy_ci95'], 3)} on {n} pairs (the true "
        f"utility {truth:.3f}), best possible {best:.3f}; fresh pairs "
        f"{fresh_accuracy:.3f}, best possible {fresh_best:.3f}")
  assert metrics["steps"] == 300
  assert held_out["pairs"] == validation.num_pairs
  assert abs(held_out["accuracy"] - best) < 3 * np.sqrt(best * (1 - best) / n)
  assert abs(fresh_accuracy - fresh_best) < 0.03
  assert held_out["log_loss"] < np.log(2)
  assert len(held_out["calibration"]) == 10
  out = config.output_dir
  for name in ("model", "metrics.json", "calibration.png", "config.json"):
    assert os.path.exists(os.path.join(out, name)), name
  with open(os.path.join(out, "calibration.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_reward_model_learns_nothing_from_unrelated_ratings(
    tmp_path, small_note_rnn):
  path = str(tmp_path / "control.npz")
  preferences.save(_control_pairs(2000), path)
  metrics = train_reward_model.train(
      _config(path, str(tmp_path / "out"), small_note_rnn),
      log=lambda _: None)
  low, high = metrics["validation"]["accuracy_ci95"]
  print(f"control held-out accuracy {metrics['validation']['accuracy']:.3f} "
        f"[{low:.3f}, {high:.3f}]")
  assert low <= 0.5 <= high


def test_bradley_terry_loss_is_the_soft_label_bce():
  d = tf.constant([2.0, -1.0, 0.0])
  y = tf.constant([1.0, 0.5, 0.0])
  p = 1 / (1 + np.exp(-d.numpy()))
  expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
  np.testing.assert_allclose(reward_model.bradley_terry_loss(d, y), expected,
                             rtol=1e-6)


def test_metrics_accuracy_and_wilson_interval():
  d = np.array([1.0, 1.0, -1.0, 3.0, -2.0])
  rating = np.array([1, 7, 6, 4, 2])  # right, wrong, right, (none), wrong
  metrics = reward_model.pair_metrics(d, rating)
  assert metrics["pairs_with_preference"] == 4
  assert metrics["accuracy"] == 0.5
  low, high = metrics["accuracy_ci95"]
  assert low < 0.5 < high and high - low > 0.5
  assert sum(b["count"] for b in metrics["calibration"]) == 5
  lo, hi = reward_model.wilson_interval(81, 100)
  assert (round(lo, 3), round(hi, 3)) == (0.722, 0.875)


# -- the saved model -----------------------------------------------------------
def test_saved_score_signature_matches_the_model(tmp_path, small_note_rnn):
  model = reward_model.RewardModel.from_note_rnn(small_note_rnn)
  source = note_rnn.load(small_note_rnn)
  np.testing.assert_array_equal(model.lstm_layers[0].get_weights()[0],
                                source.lstm_layers[0].get_weights()[0])
  model.head.kernel.assign(np.random.default_rng(0).normal(size=[16, 1]))
  directory = reward_model.save(model, str(tmp_path / "model"),
                                {"metrics": {"x": 1}})
  tokens = _melodies(5, 7)
  expected = model.score(tokens).numpy()
  scorer = reward_model.load(directory)
  np.testing.assert_allclose(scorer(tokens), expected, rtol=1e-5, atol=1e-6)
  assert scorer.metrics == {"x": 1}
  np.testing.assert_allclose(
      reward_model.load_model(directory).score(tokens), expected, rtol=1e-6)
  with pytest.raises(tf.errors.InvalidArgumentError, match="classes 0..37"):
    scorer(tokens + 10)


def test_trained_run_saves_a_scorer_of_its_model(register_run):
  _, config, _ = register_run
  directory = os.path.join(config.output_dir, "model")
  tokens = _melodies(4, 9)
  scorer = reward_model.load(directory)
  assert scorer.config["config"]["num_steps"] == 300
  np.testing.assert_allclose(
      scorer(tokens), reward_model.load_model(directory).score(tokens),
      rtol=1e-5, atol=1e-6)


def test_load_refuses_a_missing_or_broken_folder(tmp_path):
  with pytest.raises(reward_model.RewardModelError, match="no such folder"):
    reward_model.load(str(tmp_path / "none"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(reward_model.RewardModelError, match="is missing"):
    reward_model.load(str(tmp_path / "empty"))
  (tmp_path / "empty" / "reward_model.json").write_text(
      '{"layer_sizes": [16]}')
  with pytest.raises(reward_model.RewardModelError,
                     match="SavedModel cannot be read"):
    reward_model.load(str(tmp_path / "empty"))


# -- resuming --------------------------------------------------------------------
class _Killed(Exception):
  """Stands in for kill -9 in the middle of a run."""


def test_resume_continues_and_refuses_changed_settings(tmp_path,
                                                       small_note_rnn):
  path = str(tmp_path / "pairs.npz")
  preferences.save(_register_pairs(200), path)
  out = str(tmp_path / "out")
  config = _config(path, out, small_note_rnn, num_steps=20,
                   checkpoint_every=10, log_every=5)

  def killed_at_15(line):
    if line.startswith("step 15/"):
      raise _Killed()
  with pytest.raises(_Killed):
    train_reward_model.train(config, log=killed_at_15)
  assert not os.path.exists(os.path.join(out, "metrics.json"))
  assert not os.path.exists(os.path.join(out, ".lock"))

  for setting, value in (("learning_rate", 0.02), ("num_steps", 30),
                         ("seed", 1)):
    changed = dataclasses.replace(config, **{setting: value})
    with pytest.raises(configuration.ConfigError,
                       match=f"--{setting}: was") as e:
      train_reward_model.train(changed, log=lambda _: None)
    assert e.value.name == setting

  lines = []
  metrics = train_reward_model.train(config, log=lines.append)
  assert any("Resumed from" in line and "at step 10" in line
             for line in lines), lines
  assert metrics["steps"] == 20

  # The same run uninterrupted: the same model (batches from (seed, step)).
  whole = train_reward_model.train(
      _config(path, str(tmp_path / "whole"), small_note_rnn, num_steps=20,
              checkpoint_every=10, log_every=5), log=lambda _: None)
  np.testing.assert_allclose(whole["validation"]["log_loss"],
                             metrics["validation"]["log_loss"], rtol=1e-5)

  # A finished run reruns as "already trained"; other data is refused.
  lines = []
  assert train_reward_model.train(config, log=lines.append)["steps"] == 20
  assert "Already trained" in lines[0]
  preferences.save(_register_pairs(200, seed=5), path)
  with pytest.raises(configuration.ConfigError,
                     match="--preferences: was") as e:
    train_reward_model.train(config, log=lambda _: None)
  assert e.value.name == "preferences"


# -- command line --------------------------------------------------------------
def test_command_line_trains_and_writes_the_outputs(tmp_path, small_note_rnn,
                                                    capsys):
  path = str(tmp_path / "pairs.npz")
  preferences.save(_register_pairs(100), path)
  out = str(tmp_path / "cli")
  run_command(train_reward_model, [
      f"--preferences={path}", f"--output_dir={out}",
      f"--note_rnn_checkpoint={small_note_rnn}", "--num_steps=4",
      "--batch_size=8", "--log_every=2", "--checkpoint_every=4"])
  printed = capsys.readouterr().out
  assert "step 4/4" in printed and "Done at step 4" in printed
  for name in ("model", "metrics.json", "calibration.png", "config.json"):
    assert os.path.exists(os.path.join(out, name)), name


@pytest.mark.parametrize("argv,flag", [
    (["--validation_fraction=1.0"], "validation_fraction"),
    (["--num_steps=0"], "num_steps"),
    (["--l2=-1"], "l2"),
    ([], "preferences"),
    (["--preferences=/nonexistent.npz"], "preferences"),
])
def test_command_line_names_a_bad_flag(tmp_path, argv, flag):
  path = tmp_path / "pairs.npz"
  if flag != "preferences":
    argv = [f"--preferences={path}"] + argv
  with pytest.raises(app.UsageError, match=f"--{flag}"):
    run_command(train_reward_model,
                [f"--output_dir={tmp_path / 'out'}"] + argv)
