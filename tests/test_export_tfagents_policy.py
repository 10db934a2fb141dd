"""The TF-Agents policy over (Q-network step + Reward RNN step) and its
PolicySaver export."""
import os

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from data_pipeline.encoding import NUM_CLASSES
from export import exporter
from export import tfagents_policy
from rl_tuner_tf import melody_policy
from rl_tuner_tf.note_rnn import NoteRNN


@pytest.fixture(scope="module")
def nets():
  tf.random.set_seed(3)
  q, r = NoteRNN((16,)), NoteRNN((16,))
  for v in q.trainable_variables + r.trainable_variables:
    v.assign(v * 3.0)
  return q, r


def _time_step(notes, first):
  notes = tf.constant(notes, tf.int32)
  batch = notes.shape[0]
  step_type = tf.fill([batch], ts.StepType.FIRST if first else ts.StepType.MID)
  return ts.TimeStep(step_type=step_type, reward=tf.zeros([batch]),
                     discount=tf.ones([batch]), observation=notes)


def test_policy_specs_and_distribution(nets):
  q, r = nets
  policy = tfagents_policy.MelodyPolicy("g", r, q, temperature=2.0)
  assert policy.action_spec.maximum == NUM_CLASSES - 1
  assert set(policy.policy_state_spec) == {"q_network", "reward_rnn"}
  state = policy.get_initial_state(2)
  step = policy.distribution(_time_step([14, 3], first=True), state)
  reward_logits, want_r_state = r.step(tf.constant([14, 3]), r.zero_state(2))
  action_values, want_q_state = q.step(tf.constant([14, 3]), q.zero_state(2))
  want = melody_policy.policy_logits("g", action_values, reward_logits) / 2.0  # Eq. 14
  np.testing.assert_allclose(step.action.logits_parameter(), want, atol=1e-5)
  for got, expected in zip(step.state["q_network"], want_q_state):
    np.testing.assert_allclose(got, expected, atol=1e-6)
  for got, expected in zip(step.state["reward_rnn"], want_r_state):
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_greedy_policy_and_state_reset(nets):
  q, r = nets
  policy = tfagents_policy.build_policy("q", r, q, greedy=True)
  state = policy.get_initial_state(2)
  first = policy.action(_time_step([14, 3], first=True), state)
  action_values, _ = q.step(tf.constant([14, 3]), q.zero_state(2))
  np.testing.assert_array_equal(first.action, tf.argmax(action_values, -1))  # Eq. 5
  later = policy.action(_time_step([14, 3], first=False), first.state)
  # A FIRST step resets the LSTM state (automatic_state_reset) ...
  reset = policy.action(_time_step([14, 3], first=True), later.state)
  np.testing.assert_array_equal(reset.action, first.action)
  # ... and a MID step carries it on.
  assert not np.allclose(later.state["q_network"][0], first.state["q_network"][0])


def test_constructor_checks(nets):
  q, r = nets
  with pytest.raises(ValueError, match="temperature must be > 0"):
    tfagents_policy.MelodyPolicy("q", r, q, temperature=0.0)
  with pytest.raises(ValueError, match="takes no q_network"):
    tfagents_policy.MelodyPolicy("note_rnn", r, q)


def test_policy_saver_export_loads_and_acts(nets, tmp_path):
  q, r = nets
  tuned = str(tmp_path / "tuned")
  melody_policy.save_tuned(tuned, "q", q, r)
  base = str(tmp_path / "serving" / "melody")
  results = exporter.export_all(base, tuned_model_dir=tuned, tfagents_greedy=True)
  version, path = results["tfagents_policy"]
  assert (version, path) == (1, os.path.join(base + "_tfagents_policy", "1"))
  assert results["serving"][0] == 1
  loaded = tf.saved_model.load(path)
  state = loaded.get_initial_state(batch_size=3)
  notes = [14, 0, 37]
  in_process = tfagents_policy.build_policy("q", r, q, greedy=True)
  want_state = in_process.get_initial_state(3)
  for first in (True, False, False):
    step = loaded.action(_time_step(notes, first), state)
    want = in_process.action(_time_step(notes, first), want_state)
    np.testing.assert_array_equal(step.action, want.action)
    assert step.action.dtype == tf.int32 and step.action.shape == (3,)
    state, want_state, notes = step.state, want.state, step.action.numpy()
  # A second export adds version 2 beside the first.
  results = exporter.export_all(base, tuned_model_dir=tuned)
  assert results["tfagents_policy"][0] == 2 and results["serving"][0] == 2
  sampled = tf.saved_model.load(results["tfagents_policy"][1])
  step = sampled.action(_time_step([14] * 64, True),
                        sampled.get_initial_state(batch_size=64))
  actions = step.action.numpy()
  assert actions.min() >= 0 and actions.max() < NUM_CLASSES
  assert len(np.unique(actions)) > 1  # sampled, not argmax
