"""Tuning with a learned reward: r_RM, a score of each whole composition,
enters the environment's reward at its last note (alone or beside r_MT,
over c, with the same KL to the Note RNN), and a tuner moves the melodies
toward what it rewards."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from rl_tuner_tf import melody_environment
from rl_tuner_tf import note_rnn
from rl_tuner_tf import preferences
from rl_tuner_tf import reward_model
from rl_tuner_tf import train_reward_model
from rl_tuner_tf import tuning
from rl_tuner_tf import tuning_job
from rl_tuner_tf.evaluation import generate
from rl_tuner_tf.evaluation import pipeline

NOTES = 8


def _mean_class(tokens):
  """A planted taste as a sequence reward: the mean class of the notes."""
  tokens = tf.cast(tokens, tf.float32)
  return tf.reduce_mean(tokens, axis=-1) / 10.0


def _step_through(env, actions):
  env.reset()
  return [env.step(tf.constant(a, tf.int32)) for a in actions]


def test_r_rm_is_added_at_the_last_note_over_c():
  tf.keras.utils.set_random_seed(0)
  prior = note_rnn.NoteRNN((8,))
  actions = [[10, 20]] * NOTES
  plain = melody_environment.MelodyEnvironment(
      prior, 2, c=0.5, include_log_p=False, num_notes_in_melody=NOTES)
  with_rm = melody_environment.MelodyEnvironment(
      prior, 2, c=0.5, include_log_p=False, num_notes_in_melody=NOTES,
      sequence_reward=_mean_class, sequence_reward_weight=3.0)
  alone = melody_environment.MelodyEnvironment(
      prior, 2, c=0.5, include_log_p=False, num_notes_in_melody=NOTES,
      sequence_reward=_mean_class, include_r_mt=False)
  r_plain = np.array([s.reward.numpy() for s in _step_through(plain, actions)])
  r_rm = np.array([s.reward.numpy() for s in _step_through(with_rm, actions)])
  r_alone = np.array([s.reward.numpy() for s in _step_through(alone, actions)])
  expected = np.array([1.0, 2.0])  # mean class 10, 20 over 10
  np.testing.assert_allclose(r_rm[:-1], r_plain[:-1])
  np.testing.assert_allclose(r_rm[-1] - r_plain[-1], 3.0 * expected / 0.5,
                             rtol=1e-6)
  np.testing.assert_allclose(r_alone[:-1], 0.0)
  np.testing.assert_allclose(r_alone[-1], expected / 0.5, rtol=1e-6)
  assert "r_rm" in with_rm.read_and_reset_stats()


def test_the_reward_model_reads_the_encoding_under_either_token_reading():
  """The rules may read tokens 0/1 swapped (magenta); r_RM sees the
  composition as it was played."""
  def note_offs(tokens):
    return tf.reduce_sum(tf.cast(tf.equal(tokens, 0), tf.float32), axis=-1)
  prior = note_rnn.NoteRNN((8,))
  actions = [[0, 1]] * NOTES
  last = {}
  for reading in ("paper", "magenta"):
    env = melody_environment.MelodyEnvironment(
        prior, 2, c=1.0, include_log_p=False, num_notes_in_melody=NOTES,
        token_reading=reading, sequence_reward=note_offs, include_r_mt=False)
    last[reading] = _step_through(env, actions)[-1].reward.numpy()
  np.testing.assert_allclose(last["paper"], [NOTES, 0])
  np.testing.assert_allclose(last["magenta"], last["paper"])


def test_reward_settings_are_checked_naming_them():
  with pytest.raises(tuning.ConfigError, match="--reward_model_dir"):
    tuning.TuningConfig.of(reward="rm")
  with pytest.raises(tuning.ConfigError, match="--reward_model_dir"):
    tuning.TuningConfig.of(reward_model_dir="/x")
  with pytest.raises(tuning.ConfigError, match="--reward"):
    tuning.TuningConfig.of(reward="likes")
  config = tuning.TuningConfig.of(reward="r_mt+rm", reward_model_dir="/x")
  with pytest.raises(tuning.ConfigError, match="--reward_model_dir"):
    tuning.make_tuner(config, note_rnn.NoteRNN((8,)))


@pytest.mark.parametrize("algorithm", ["rloo", "ppo"])
def test_tuning_with_r_rm_alone_moves_what_it_rewards(algorithm):
  tf.keras.utils.set_random_seed(0)
  source = note_rnn.NoteRNN((16,))
  settings = dict(algorithm=algorithm, num_notes_in_melody=NOTES, c=0.1,
                  reward="rm", reward_model_dir="unused", seed=0)
  settings.update(pg_num_compositions=40, pg_minibatches=2, pg_epochs=2,
                  rloo_k=4, pg_learning_rate=1e-2, num_notes=12 * 40 * NOTES)
  config = tuning.TuningConfig.of(**settings)

  def mean_class():
    tokens, _ = generate.generate_melodies(
        "note_rnn" if tuner is None else algorithm,
        None if tuner is None else tuner.q_network, source, 400, seed=3,
        num_notes=NOTES)
    return float(np.mean(tokens))
  tuner = None
  before = mean_class()
  tuner = tuning.make_tuner(config, source, reward_model=_mean_class)
  tuner.run(config.num_notes // tuner.notes_per_iteration)
  after = mean_class()
  assert after > before + 3, (before, after)


def test_tune_with_a_trained_reward_model(random_checkpoint, tmp_path):
  """A reward model trained on simulated pairs (a register taste) drives a
  run of the library's tune(); the run records it and logs r_RM."""
  rng = np.random.default_rng(0)
  melodies = np.where(rng.random((600, 32)) < 0.6,
                      rng.integers(2, 38, (600, 32)), 1).astype(np.int32)
  a, b = melodies[:300], melodies[300:]
  pairs = preferences.PreferencePairs(
      a, b, preferences.simulate_ratings(a, b, preferences.register_utility,
                                         0.3, 1.0, seed=1),
      np.array([f"p{i % 10}" for i in range(300)]))
  path = str(tmp_path / "pairs.npz")
  preferences.save(pairs, path)
  train_reward_model.train(train_reward_model.RewardModelConfig(
      preferences=path, output_dir=str(tmp_path / "rm"),
      note_rnn_checkpoint=random_checkpoint, num_steps=20, batch_size=32,
      checkpoint_every=20, log_every=20), log=lambda _: None)
  model_dir = str(tmp_path / "rm" / "model")
  config = tuning.TuningConfig.of(
      algorithm="ppo", num_notes_in_melody=32, pg_num_compositions=10,
      pg_minibatches=2, pg_epochs=1, num_notes=2 * 10 * 32,
      reward="r_mt+rm", reward_model_dir=model_dir, reward_model_weight=2.0)
  lines = []
  run_dir = str(tmp_path / "run" / "ppo")
  tuning_job.tune(config, tuning_job.RunConfig(
      note_rnn_checkpoint=random_checkpoint, figure2_melodies=10,
      log_every_notes=320), run_dir, log=lines.append)
  assert any("r_RM" in line for line in lines), lines
  with open(os.path.join(run_dir, "config.json")) as f:
    recorded = json.load(f)
  assert recorded["reward"] == "r_mt+rm"
  assert recorded["reward_model_dir"] == model_dir
  assert recorded["reward_model_weight"] == 2.0
  # The evaluation scores every model's melodies with the reward model the
  # run was trained with: r_RM beside Table 1.
  results, out, _ = pipeline.run(pipeline.EvaluationConfig(
      run_dir=str(tmp_path / "run"), note_rnn_checkpoint=random_checkpoint,
      num_melodies=300, batch_size=100, num_samples=0, beyond_rules=False),
      log=lambda _: None)
  scorer = reward_model.load(model_dir)
  for name in ("note_rnn", "ppo"):
    melodies = np.load(os.path.join(out, name, "melodies.npy"))
    with open(os.path.join(out, name, "table1.json")) as f:
      r_rm = json.load(f)["r_rm"]
    assert r_rm["mean"] == pytest.approx(float(np.mean(scorer(melodies))),
                                         abs=1e-5)
    assert 0 < r_rm["ci95"] < 10 and r_rm["reward_model"] == model_dir
  with open(os.path.join(out, "table1.md")) as f:
    assert "Mean r_RM, the reward model's score" in f.read()
  missing = tuning.TuningConfig.of(reward="rm",
                                   reward_model_dir=str(tmp_path / "none"))
  with pytest.raises(tuning.ConfigError, match="--reward_model_dir"):
    tuning_job.tune(missing, tuning_job.RunConfig(
        note_rnn_checkpoint=random_checkpoint), str(tmp_path / "x" / "q"))
