"""The library from Python, with configuration values and no flags: train ->
evaluate -> export in one process; rules of one's own from a module and
weights, recorded in config.json and needed again to resume."""
import json
import os
import sys
import textwrap

import pytest
import tensorflow as tf

from export import exporter
from rl_tuner_tf import configuration
from rl_tuner_tf import rewards
from rl_tuner_tf import tuning
from rl_tuner_tf import tuning_job
from rl_tuner_tf.evaluation import pipeline

TINY = dict(num_notes=400, num_compositions=40, replay_capacity=1000)


def test_train_evaluate_export_in_one_process(random_checkpoint, tmp_path):
  run_dir = tmp_path / "run"
  config = tuning.TuningConfig.of(algorithm="g", seed=2, **TINY)
  run = tuning_job.RunConfig(note_rnn_checkpoint=random_checkpoint,
                             figure2_melodies=10)
  lines = []
  model_dir = tuning_job.tune(config, run, str(run_dir / "g"),
                              log=lines.append)
  assert any("done: 400 notes" in line for line in lines), lines
  # A finished run is lean: what later stages read, no checkpoints.
  assert sorted(os.listdir(run_dir / "g")) == [
      "config.json", "figure2.csv", "model", "tensorboard"]
  with open(run_dir / "g" / "config.json") as f:
    recorded = json.load(f)
  assert tuning.TuningConfig.from_settings(recorded,
                                           ignore_unknown=True) == config
  assert tuning_job.RunConfig.from_settings(
      dict(recorded, note_rnn_checkpoint=random_checkpoint),
      ignore_unknown=True) == run

  evaluation = pipeline.EvaluationConfig(
      run_dir=str(run_dir), note_rnn_checkpoint=random_checkpoint,
      num_melodies=100, batch_size=100, num_samples=0, beyond_rules=False)
  results, output_dir, report_path = pipeline.run(evaluation,
                                                  log=lambda _: None)
  assert sorted(results) == ["g", "note_rnn"]
  assert results["g"]["run_settings"]["seed"] == 2
  assert os.path.exists(report_path)
  assert os.path.exists(os.path.join(output_dir, "g", "melodies.npy"))

  exported = exporter.export_all(str(tmp_path / "exports" / "melody"),
                                 tuned_model_dir=model_dir, max_steps=16,
                                 max_batch=4, export_tfagents_policy=False)
  assert _served_tokens(exported).shape == (1, 8)


def _served_tokens(exported):
  """8 tokens after the primer [14, 16] from the exported serving model."""
  loaded = tf.saved_model.load(exported["serving"][1])
  return loaded.signatures["generate"](
      primer=tf.constant([[14, 16]], tf.int32),
      num_steps=tf.constant(8, tf.int32),
      temperature=tf.constant(1.0, tf.float32),
      seed=tf.constant(1, tf.int64))["tokens"].numpy()


def _write_rule_module(folder, name, body):
  path = folder / f"{name}.py"
  path.write_text(textwrap.dedent(body))
  return path


@pytest.fixture
def user_rule_module(tmp_path, monkeypatch):
  """A module whose import registers 'likes_c' (+1 for each C played)."""
  name = f"user_rules_{os.getpid()}_{id(tmp_path) % 10**6}"
  _write_rule_module(tmp_path, name, """
      import tensorflow as tf
      from rl_tuner_tf import rewards

      def likes_c(state, action):
        return tf.cast(tf.equal((action - 2) % 12, 0), tf.float32)

      rewards.register_reward("likes_c", likes_c)
      """)
  monkeypatch.syspath_prepend(str(tmp_path))
  yield name
  if "likes_c" in rewards.rule_names():
    rewards.unregister_reward("likes_c")
  sys.modules.pop(name, None)


def test_a_rule_module_and_weights_tune_and_are_recorded(
    random_checkpoint, tmp_path, user_rule_module):
  config = tuning.TuningConfig.of(
      algorithm="q", reward_modules=[user_rule_module],
      reward_weights={"likes_c": 3.0, "key": 0.0}, **TINY)
  run = tuning_job.RunConfig(note_rnn_checkpoint=random_checkpoint,
                             figure2_melodies=10, log_every_notes=40,
                             keep_checkpoints=True)
  run_dir = str(tmp_path / "run" / "q")
  lines = []
  tuning_job.tune(config, run, run_dir, log=lines.append)
  assert os.path.exists(os.path.join(run_dir, "checkpoints", "checkpoint"))
  assert "likes_c" in rewards.rule_names()
  with open(os.path.join(run_dir, "config.json")) as f:
    recorded = json.load(f)
  assert recorded["reward_modules"] == [user_rule_module]
  assert recorded["reward_weights"] == {"likes_c": 3.0, "key": 0.0}
  # The rule was part of the reward the tuner saw: its per-rule summary.
  events = tf.compat.v1.train.summary_iterator
  tags = set()
  for name in os.listdir(os.path.join(run_dir, "tensorboard")):
    for event in events(os.path.join(run_dir, "tensorboard", name)):
      tags.update(v.tag for v in event.summary.value)
  assert "rules/likes_c" in tags


def test_resume_refuses_a_run_whose_rule_module_is_missing(
    random_checkpoint, tmp_path):
  config = tuning.TuningConfig.of(algorithm="q",
                                  reward_modules=["no_such_rules_module"],
                                  **TINY)
  with pytest.raises(configuration.ConfigError,
                     match="--reward_modules.*no_such_rules_module"):
    tuning_job.tune(config, tuning_job.RunConfig(
        note_rnn_checkpoint=random_checkpoint), str(tmp_path / "q"))
  assert not os.path.exists(tmp_path / "q")
  weights = tuning.TuningConfig.of(reward_weights={"no_such_rule": 1.0},
                                   **TINY)
  with pytest.raises(configuration.ConfigError,
                     match="--reward_weights.*no_such_rule"):
    tuning_job.tune(weights, tuning_job.RunConfig(
        note_rnn_checkpoint=random_checkpoint), str(tmp_path / "q"))


def test_a_rule_module_given_as_a_file(tmp_path):
  path = _write_rule_module(tmp_path, "file_rules", """
      import tensorflow as tf
      from rl_tuner_tf import rewards
      rewards.register_reward("from_file", lambda state, action:
                              tf.zeros_like(action, tf.float32))
      """)
  try:
    tuning_job.import_reward_modules((str(path),), {"from_file": 2.0})
    tuning_job.import_reward_modules((str(path),), {})  # once only
    assert rewards.rule_names()[-1] == "from_file"
  finally:
    rewards.unregister_reward("from_file")
  with pytest.raises(configuration.ConfigError, match="--reward_modules"):
    tuning_job.import_reward_modules((str(tmp_path / "missing.py"),), {})


def _expected_sarsa_target(reward, discount, gamma, next_values,
                           next_prior_logits):
  """y = r + gamma sum_a' softmax(Q-(s', .))_a' Q-(s', a'): expected SARSA
  under the softmax policy, an algorithm the library does not ship."""
  del next_prior_logits
  probs = tf.nn.softmax(next_values, axis=-1)
  return reward + gamma * discount * tf.reduce_sum(probs * next_values, -1)


@pytest.fixture
def expected_sarsa():
  from rl_tuner_tf import algorithms  # pylint: disable=g-import-not-at-top
  algorithm = algorithms.register(algorithms.Algorithm(
      "expected_sarsa", on_policy=False, log_p_in_reward=True,
      policy_logits=lambda values, prior_logits: values,
      target=_expected_sarsa_target))
  yield algorithm.name
  algorithms.unregister(algorithm.name)


def test_a_new_algorithm_registered_here_trains_evaluates_and_exports(
    random_checkpoint, tmp_path, expected_sarsa):
  run_dir = tmp_path / "run"
  config = tuning.TuningConfig.of(algorithm=expected_sarsa, **TINY)
  run = tuning_job.RunConfig(note_rnn_checkpoint=random_checkpoint,
                             figure2_melodies=10)
  model_dir = tuning_job.tune(config, run, str(run_dir / expected_sarsa),
                              log=lambda _: None)
  results, _, _ = pipeline.run(pipeline.EvaluationConfig(
      run_dir=str(run_dir), note_rnn_checkpoint=random_checkpoint,
      num_melodies=100, batch_size=100, num_samples=0, beyond_rules=False),
      log=lambda _: None)
  assert results[expected_sarsa]["kind"] == expected_sarsa
  assert results[expected_sarsa]["num_melodies"] == 100
  exported = exporter.export_all(str(tmp_path / "exports" / "melody"),
                                 tuned_model_dir=model_dir, max_steps=16,
                                 max_batch=4)
  assert _served_tokens(exported).shape == (1, 8)
  assert os.path.isdir(exported["tfagents_policy"][1])
