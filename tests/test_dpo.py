"""DPO on rated pairs (rl_tuner_tf/dpo_tuning.py): its loss, that it learns
a planted taste, resumes exactly, is checked naming its settings, and is
tuned, evaluated and exported like every other algorithm."""
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from export import exporter
from rl_tuner_tf import dpo_tuning
from rl_tuner_tf import note_rnn
from rl_tuner_tf import preferences
from rl_tuner_tf import tuning
from rl_tuner_tf import tuning_job
from rl_tuner_tf.evaluation import generate
from rl_tuner_tf.evaluation import pipeline

NOTES = 8


def _melodies(n, seed):
  """n melodies of NOTES tokens around a random register."""
  rng = np.random.default_rng(seed)
  centre = rng.integers(8, 31, n)
  notes = np.clip(centre[:, None] + rng.integers(-3, 4, (n, NOTES)), 2, 37)
  return np.where(rng.random((n, NOTES)) < 0.7, notes, 1).astype(np.int32)


def _register_pairs(path, n=600, seed=0):
  """n pairs rated by a planted taste for the high register; saved."""
  a, b = _melodies(n, seed), _melodies(n, seed + 1)
  rating = preferences.simulate_ratings(a, b, preferences.register_utility,
                                        0.5, 1.0, seed=seed + 2)
  pairs = preferences.PreferencePairs(
      a, b, rating, np.array([f"p{i % 20}" for i in range(n)]))
  preferences.save(pairs, path)
  return path


def _config(path, iterations, **overrides):
  settings = dict(algorithm="dpo", dpo_preferences=path,
                  num_notes_in_melody=NOTES, dpo_batch_size=32,
                  dpo_learning_rate=1e-2, dpo_beta=0.5, seed=0)
  settings.update(overrides)
  settings["num_notes"] = (iterations * 2 * settings["dpo_batch_size"] *
                          settings["num_notes_in_melody"])
  return tuning.TuningConfig.of(**settings)


def test_dpo_loss_and_sequence_log_prob():
  delta = tf.constant([0.0, 2.0, -1.0])
  target = tf.constant([1.0, 1.0, 0.25])
  loss = dpo_tuning.dpo_loss(delta, target, beta=0.5).numpy()
  sig = lambda x: 1 / (1 + math.exp(-x))
  expected = [math.log(2), -math.log(sig(1.0)),
              -(0.25 * math.log(sig(-0.5)) + 0.75 * math.log(sig(0.5)))]
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  tf.keras.utils.set_random_seed(1)
  network = note_rnn.NoteRNN((8,))
  tokens = tf.constant(_melodies(3, 5))
  state, total = network.zero_state(3), np.zeros(3)
  for t in range(NOTES - 1):
    logits, state = network.step(tokens[:, t], state)
    total += tf.gather(tf.nn.log_softmax(logits), tokens[:, t + 1], axis=1,
                       batch_dims=1).numpy()
  np.testing.assert_allclose(
      dpo_tuning.sequence_log_prob(network, tokens).numpy(), total,
      rtol=1e-5)


def test_dpo_learns_the_planted_taste_and_resumes(tmp_path):
  path = _register_pairs(str(tmp_path / "pairs.npz"))
  tf.keras.utils.set_random_seed(0)
  source = note_rnn.NoteRNN((16,))
  config = _config(path, 60)
  tuner = tuning.make_tuner(config, source)
  assert isinstance(tuner, dpo_tuning.DPOTuner)

  def mean_class(kind, network):
    tokens, _ = generate.generate_melodies(kind, network, source, 400,
                                           seed=3, num_notes=NOTES)
    notes = tokens[tokens >= 2]
    return float(notes.mean())
  before = mean_class("note_rnn", None)
  assert tuner.run(30) == 30
  first = tuner.read_and_reset_stats()
  assert first["loss"] < math.log(2) + 1e-3
  saved = tuner.checkpoint.save(str(tmp_path / "ckpt"))
  assert tuner.run(30) == 30
  stats = tuner.read_and_reset_stats()
  assert stats["accuracy"] > 0.7, stats
  after = mean_class("dpo", tuner.q_network)
  assert after > before + 2, (before, after)
  assert tuner.num_notes_composed == 60 * 2 * 32 * NOTES
  resumed = tuning.make_tuner(config, source)
  resumed.checkpoint.restore(saved).assert_consumed()
  resumed.run(30)
  for a, b in zip(tuner.q_network.variables, resumed.q_network.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_dpo_settings_are_checked_naming_them(tmp_path):
  with pytest.raises(tuning.ConfigError, match="--dpo_preferences"):
    tuning.TuningConfig.of(algorithm="dpo", num_notes=2 * 64 * 32)
  with pytest.raises(tuning.ConfigError, match="--num_notes"):
    tuning.TuningConfig.of(algorithm="dpo", dpo_preferences="x",
                           num_notes=1000)
  with pytest.raises(tuning.ConfigError, match="--dpo_beta"):
    _config("x", 1, dpo_beta=0.0)
  path = _register_pairs(str(tmp_path / "pairs.npz"), n=40)
  with pytest.raises(tuning.ConfigError, match="--dpo_preferences.*notes"):
    tuning.make_tuner(_config(path, 1, num_notes_in_melody=16),
                      note_rnn.NoteRNN((8,)))
  with pytest.raises(tuning.ConfigError, match="--dpo_preferences"):
    tuning.make_tuner(_config(str(tmp_path / "none.npz"), 1),
                      note_rnn.NoteRNN((8,)))


def test_dpo_tunes_evaluates_and_exports(random_checkpoint, tmp_path):
  """The library's tune(), the evaluation and the export, as for Q."""
  rng = np.random.default_rng(0)
  a = np.where(rng.random((200, 32)) < 0.7, rng.integers(2, 38, (200, 32)),
               1).astype(np.int32)
  b = a[::-1].copy()
  path = str(tmp_path / "pairs.npz")
  preferences.save(preferences.PreferencePairs(
      a, b, preferences.simulate_ratings(a, b, preferences.register_utility,
                                         0.5, 1.0, seed=0),
      np.array([f"p{i % 10}" for i in range(200)])), path)
  config = tuning.TuningConfig.of(algorithm="dpo", dpo_preferences=path,
                                  dpo_batch_size=16, num_notes=4 * 2 * 16 * 32)
  run_dir = tmp_path / "run"
  lines = []
  model_dir = tuning_job.tune(config, tuning_job.RunConfig(
      note_rnn_checkpoint=random_checkpoint, figure2_melodies=10,
      log_every_notes=2 * 16 * 32), str(run_dir / "dpo"), log=lines.append)
  assert any("pair accuracy" in line for line in lines), lines
  results, _, _ = pipeline.run(pipeline.EvaluationConfig(
      run_dir=str(run_dir), note_rnn_checkpoint=random_checkpoint,
      num_melodies=100, batch_size=100, num_samples=0, beyond_rules=False),
      log=lambda _: None)
  assert results["dpo"]["kind"] == "dpo"
  exported = exporter.export_all(str(tmp_path / "exports" / "melody"),
                                 tuned_model_dir=model_dir, max_steps=16,
                                 max_batch=4)
  loaded = tf.saved_model.load(exported["serving"][1])
  tokens = loaded.signatures["generate"](
      primer=tf.constant([[14, 16]], tf.int32),
      num_steps=tf.constant(8, tf.int32),
      temperature=tf.constant(1.0, tf.float32),
      seed=tf.constant(3, tf.int64))["tokens"]
  assert tokens.shape == (1, 8)
  assert os.path.isdir(exported["tfagents_policy"][1])
