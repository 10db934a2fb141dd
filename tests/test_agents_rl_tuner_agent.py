"""The agent's loss and update, checked against a direct computation."""
import collections

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from rl_tuner_tf import melody_environment
from rl_tuner_tf import note_rnn
from rl_tuner_tf.agents import rl_tuner_agent

N = 6


def _agent(algorithm, learning_rate=1e-2, gamma=0.5, updates=1):
  tf.random.set_seed(4)
  source = note_rnn.NoteRNN()
  q = note_rnn.NoteRNN()
  q.set_weights(source.get_weights())
  target = note_rnn.NoteRNN()
  optimizer = tf.keras.optimizers.Adam(learning_rate)
  optimizer.build(q.trainable_variables)
  agent = rl_tuner_agent.RLTunerAgent(
      ts.time_step_spec(melody_environment.observation_spec()),
      melody_environment.action_spec(), q, target, algorithm, optimizer,
      gamma=gamma, target_updates_per_train=updates,
      train_step_counter=tf.Variable(0, dtype=tf.int64))
  agent.initialize()
  return agent


def _experience(seed=0, boundary_rows=(), reward_scale=1.0):
  """[N, 2] trajectories: item 0 is the transition, item 1 its next state."""
  rng = np.random.default_rng(seed)
  notes = rng.integers(0, 38, N).astype(np.int32)
  actions = rng.integers(0, 38, N).astype(np.int32)
  step_type = np.full([N, 2], ts.StepType.MID, np.int32)
  next_step_type = np.full([N, 2], ts.StepType.MID, np.int32)
  for row in boundary_rows:  # LAST -> FIRST: not a transition
    step_type[row, 0] = ts.StepType.LAST
    next_step_type[row, 0] = ts.StepType.FIRST
  def state():
    return tuple(rng.normal(size=[N, 2, 100]).astype(np.float32) * 0.5
                 for _ in range(2))
  obs = collections.OrderedDict(
      note=np.stack([notes, actions], 1),
      reward_logits=rng.normal(size=[N, 2, 38]).astype(np.float32))
  return trajectory.Trajectory(
      step_type=tf.constant(step_type),
      observation=tf.nest.map_structure(tf.constant, obs),
      action=tf.constant(np.stack([actions, actions], 1)),
      policy_info={"q_state": tf.nest.map_structure(tf.constant, state())},
      next_step_type=tf.constant(next_step_type),
      reward=tf.constant(rng.normal(size=[N, 2]).astype(np.float32)
                         * reward_scale),
      discount=tf.constant(np.ones([N, 2], np.float32)))


def _direct_loss(agent, exp, algorithm, gamma=0.5, mask=None):
  e = tf.nest.map_structure(lambda t: t.numpy(), exp)
  values, _ = agent.q_network.step(
      e.observation["note"][:, 0],
      tuple(tf.constant(s[:, 0]) for s in e.policy_info["q_state"]))
  chosen = values.numpy()[np.arange(N), e.action[:, 0]]
  nxt, _ = agent.target_q_network.step(
      e.observation["note"][:, 1],
      tuple(tf.constant(s[:, 1]) for s in e.policy_info["q_state"]))
  nxt = nxt.numpy().astype(np.float64)
  r = e.reward[:, 0]
  if algorithm in ("q", "rl_only"):
    y = r + gamma * nxt.max(1)
  elif algorithm == "psi":
    y = r + gamma * np.log(np.exp(nxt).sum(1))
  else:
    logits = e.observation["reward_logits"][:, 1].astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    y = r + gamma * np.log(np.exp(log_p + nxt).sum(1))
  sq = (y - chosen) ** 2
  mask = np.ones(N) if mask is None else mask
  return (sq * mask).sum() / mask.sum()


@pytest.mark.parametrize("algorithm", ["q", "psi", "g", "rl_only"])
def test_loss_matches_direct_computation(algorithm):
  agent = _agent(algorithm)
  exp = _experience()
  loss = agent.loss(exp).loss.numpy()
  np.testing.assert_allclose(loss, _direct_loss(agent, exp, algorithm),
                             rtol=1e-4)


def test_boundary_pairs_are_masked():
  agent = _agent("q")
  exp = _experience(boundary_rows=(1, 4))
  mask = np.ones(N)
  mask[[1, 4]] = 0
  np.testing.assert_allclose(agent.loss(exp).loss.numpy(),
                             _direct_loss(agent, exp, "q", mask=mask),
                             rtol=1e-4)


@pytest.mark.parametrize("updates", [1, 8])
def test_train_step_lowers_loss_and_soft_updates_target(updates):
  agent = _agent("psi", updates=updates)
  exp = _experience(seed=2)
  before = agent.loss(exp).loss.numpy()
  target_before = [v.numpy() for v in agent.target_q_network.variables]
  agent.train(exp)
  q_after = [v.numpy() for v in agent.q_network.variables]
  eta = 1 - (1 - 0.01) ** updates  # k merged updates: 1 - (1 - eta)^k
  assert agent.effective_target_update_rate == pytest.approx(eta)
  for t0, t1, q in zip(target_before, agent.target_q_network.variables, q_after):
    # theta- <- theta- - eta (theta- - theta)
    np.testing.assert_allclose(t1.numpy(), t0 - eta * (t0 - q), atol=1e-6)
  for _ in range(20):
    agent.train(exp)
  assert agent.loss(exp).loss.numpy() < before
  assert int(agent.train_step_counter.numpy()) == 21


def test_nonfinite_loss_changes_nothing():
  agent = _agent("q")
  exp = _experience(reward_scale=np.inf)
  state = (agent.q_network.variables + agent.target_q_network.variables
           + agent._optimizer.variables)  # pylint: disable=protected-access
  state_before = [v.numpy() for v in state]
  loss = agent.train(exp).loss.numpy()
  assert not np.isfinite(loss)
  for v, before in zip(state, state_before):  # weights, target, Adam's slots
    np.testing.assert_array_equal(v.numpy(), before)
  assert int(agent.train_step_counter.numpy()) == 1


def test_bad_arguments():
  with pytest.raises(ValueError, match="unknown algorithm"):
    _agent("dqn")
  with pytest.raises(ValueError, match="gamma"):
    _agent("q", gamma=1.5)
