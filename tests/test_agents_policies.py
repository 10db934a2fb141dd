"""Policies (Eq. 5 / 12 / 14), exploration and state handling."""
import collections

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from rl_tuner_tf import melody_environment
from rl_tuner_tf import note_rnn
from rl_tuner_tf.agents import exploration
from rl_tuner_tf.agents import policies

B = 8


@pytest.fixture(scope="module")
def network():
  tf.random.set_seed(2)
  return note_rnn.NoteRNN()


def _specs():
  return (ts.time_step_spec(melody_environment.observation_spec()),
          melody_environment.action_spec())


def _time_step(notes, logits, step_type=ts.StepType.MID):
  n = len(notes)
  return ts.TimeStep(
      step_type=tf.fill([n], step_type), reward=tf.zeros([n]),
      discount=tf.ones([n]),
      observation=collections.OrderedDict(
          note=tf.constant(notes, tf.int32),
          reward_logits=tf.constant(logits, tf.float32)))


def _random_state(network, n):
  return tuple(tf.random.normal([n, u]) for u in network.layer_sizes
               for _ in range(2))


@pytest.mark.parametrize("kind", ["q", "rl_only", "g"])
def test_greedy_actions_follow_eq5_and_eq14(network, kind):
  rng = np.random.default_rng(0)
  notes = rng.integers(0, 38, B)
  logits = rng.normal(size=[B, 38]).astype(np.float32) * 3
  state = _random_state(network, B)
  policy = policies.MelodyPolicy(*_specs(), network, kind, greedy=True)
  step = policy.action(_time_step(notes, logits), state)
  values, new_state = network.step(notes, state)
  if kind == "g":  # Eq. 14: argmax of log p(a|s) + G(s, a)
    expected = np.argmax(tf.nn.log_softmax(logits).numpy() + values.numpy(), 1)
  else:  # Eq. 5: argmax Q
    expected = np.argmax(values.numpy(), 1)
  np.testing.assert_array_equal(step.action, expected)
  for got, want in zip(step.state, new_state):
    np.testing.assert_allclose(got, want, atol=1e-6)
  for got, want in zip(step.info["q_state"], state):  # state *before*
    np.testing.assert_allclose(got, want)


def test_q_is_greedy_and_psi_g_sample_by_default(network):
  assert policies.MelodyPolicy(*_specs(), network, "q")._greedy
  assert not policies.MelodyPolicy(*_specs(), network, "psi")._greedy
  assert not policies.MelodyPolicy(*_specs(), network, "g")._greedy
  with pytest.raises(ValueError, match="unknown algorithm"):
    policies.MelodyPolicy(*_specs(), network, "note_rnn")


def test_psi_samples_from_softmax_of_psi(network):
  n = 4000
  policy = policies.MelodyPolicy(*_specs(), network, "psi", seed=1)
  notes = np.full([n], 14)
  state = network.zero_state(n)
  actions = policy.action(_time_step(notes, np.zeros([n, 38])), state).action
  values, _ = network.step(notes[:1], network.zero_state(1))
  expected = tf.nn.softmax(values[0]).numpy()  # Eq. 12
  counts = np.bincount(actions.numpy(), minlength=38) / n
  top = np.argsort(expected)[-3:]
  np.testing.assert_allclose(counts[top], expected[top], atol=0.03)


def test_g_sampling_weights_by_the_prior(network):
  # A prior that puts (almost) all mass on class 20 dominates small G values.
  n = 500
  logits = np.full([n, 38], -30.0, np.float32)
  logits[:, 20] = 30.0
  policy = policies.MelodyPolicy(*_specs(), network, "g", seed=1)
  step = policy.action(_time_step(np.full([n], 14), logits),
                       network.zero_state(n))
  assert np.all(step.action.numpy() == 20)


def test_state_resets_at_first_step(network):
  notes = np.full([B], 14)
  state = _random_state(network, B)
  policy = policies.MelodyPolicy(*_specs(), network, "q")
  step_type = np.array([ts.StepType.FIRST] * 3 + [ts.StepType.MID] * (B - 3))
  t = _time_step(notes, np.zeros([B, 38]))._replace(
      step_type=tf.constant(step_type, tf.int32))
  info = policy.action(t, state).info["q_state"]
  np.testing.assert_array_equal(info[0][:3], np.zeros([3, 100]))
  np.testing.assert_allclose(info[0][3:], state[0][3:])


def test_primer_gives_the_initial_state(network):
  primer = [14, 1, 16, 1, 18]
  policy = policies.MelodyPolicy(*_specs(), network, "q", primer=primer)
  state = policy.get_initial_state(2)
  _, expected = network(tf.constant([primer[:-1]]))
  np.testing.assert_allclose(state[0][1], expected[0][0], atol=1e-5)


def test_linear_epsilon():
  counter = tf.Variable(0, dtype=tf.int64)
  eps = exploration.LinearEpsilon(counter, 1.0, 0.1, period=1000)
  assert float(eps()) == pytest.approx(1.0)
  counter.assign(500)
  assert float(eps()) == pytest.approx(0.55)
  counter.assign(1000)
  assert float(eps()) == pytest.approx(0.1)
  counter.assign(5000)
  assert float(eps()) == pytest.approx(0.1)
  with pytest.raises(ValueError):
    exploration.LinearEpsilon(counter, period=0)


def test_epsilon_greedy(network):
  n = 3000
  notes = np.full([n], 14)
  values, _ = network.step(notes[:1], network.zero_state(1))
  greedy = int(np.argmax(values[0]))
  args = (*_specs(), network, "q")
  always = exploration.EpsilonGreedyMelodyPolicy(*args, epsilon=1.0, seed=0)
  actions = always.action(_time_step(notes, np.zeros([n, 38])),
                          network.zero_state(n)).action.numpy()
  assert actions.max() == 36 and actions.min() == 0  # the 0..36 draw
  assert len(np.unique(actions)) == 37
  never = exploration.EpsilonGreedyMelodyPolicy(*args, epsilon=0.0, seed=0)
  actions = never.action(_time_step(notes, np.zeros([n, 38])),
                         network.zero_state(n)).action.numpy()
  assert np.all(actions == greedy)
  some = exploration.EpsilonGreedyMelodyPolicy(*args, epsilon=0.3, seed=0)
  actions = some.action(_time_step(notes, np.zeros([n, 38])),
                        network.zero_state(n)).action.numpy()
  # Greedy with probability 0.7 + 0.3 / 37.
  assert abs(np.mean(actions == greedy) - (0.7 + 0.3 / 37)) < 0.03


def test_boltzmann_samples_the_policy_softmax(network):
  n = 4000
  notes = np.full([n], 14)
  policy = exploration.BoltzmannMelodyPolicy(*_specs(), network, "q",
                                             temperature=0.5, seed=3)
  actions = policy.action(_time_step(notes, np.zeros([n, 38])),
                          network.zero_state(n)).action.numpy()
  values, _ = network.step(notes[:1], network.zero_state(1))
  expected = tf.nn.softmax(values[0] / 0.5).numpy()
  counts = np.bincount(actions, minlength=38) / n
  top = np.argsort(expected)[-3:]
  np.testing.assert_allclose(counts[top], expected[top], atol=0.03)
  with pytest.raises(ValueError, match="temperature"):
    exploration.BoltzmannMelodyPolicy(*_specs(), network, "q", temperature=0)


def test_same_seed_same_samples(network):
  notes = np.full([B], 14)
  runs = []
  for _ in range(2):
    policy = policies.MelodyPolicy(*_specs(), network, "psi", seed=7)
    runs.append(policy.action(_time_step(notes, np.zeros([B, 38])),
                              network.zero_state(B)).action.numpy())
  np.testing.assert_array_equal(runs[0], runs[1])
