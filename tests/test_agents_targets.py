"""Targets of Eq. 4 / 11 / 13 against values computed by hand."""
import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from rl_tuner_tf import algorithms
from rl_tuner_tf.agents import targets

# Two transitions, three actions.
REWARD = np.array([1.0, -2.0], np.float32)
DISCOUNT = np.array([1.0, 0.0], np.float32)  # the second one is terminal
NEXT_VALUES = np.array([[0.0, 1.0, 2.0], [5.0, -1.0, 3.0]], np.float32)
NEXT_LOGITS = np.array([[0.0, 0.0, math.log(2.0)], [1.0, 2.0, 3.0]], np.float32)
GAMMA = 0.5


def test_q_target_is_reward_plus_gamma_max():
  y = targets.q_target(REWARD, DISCOUNT, GAMMA, NEXT_VALUES).numpy()
  # 1 + 0.5 * max(0, 1, 2) = 2; terminal: -2.
  np.testing.assert_allclose(y, [2.0, -2.0])


def test_psi_target_is_reward_plus_gamma_logsumexp():
  y = targets.psi_target(REWARD, DISCOUNT, GAMMA, NEXT_VALUES).numpy()
  lse = math.log(math.exp(0.0) + math.exp(1.0) + math.exp(2.0))  # 2.4076
  np.testing.assert_allclose(y, [1.0 + 0.5 * lse, -2.0], rtol=1e-6)
  assert abs(y[0] - 2.2038) < 1e-3


def test_g_target_is_prior_weighted_logsumexp():
  y = targets.g_target(REWARD, DISCOUNT, GAMMA, NEXT_VALUES,
                       NEXT_LOGITS).numpy()
  # p(.|s') = softmax([0, 0, log 2]) = [1/4, 1/4, 1/2];
  # logsumexp(log p + G) = log(1/4 * e^0 + 1/4 * e^1 + 1/2 * e^2).
  expected = 1.0 + 0.5 * math.log(0.25 + 0.25 * math.e + 0.5 * math.e ** 2)
  np.testing.assert_allclose(y, [expected, -2.0], rtol=1e-6)
  assert abs(y[0] - 1.7657) < 1e-3


def test_g_target_uses_normalised_log_p():
  shifted = NEXT_LOGITS + 7.0  # logits up to a constant: same log-softmax
  np.testing.assert_allclose(
      targets.g_target(REWARD, DISCOUNT, GAMMA, NEXT_VALUES, shifted),
      targets.g_target(REWARD, DISCOUNT, GAMMA, NEXT_VALUES, NEXT_LOGITS),
      rtol=1e-6)


def test_registry_dispatch_and_rl_only_is_q():
  def target(name, logits=None):
    return algorithms.get(name).target(REWARD, DISCOUNT, GAMMA, NEXT_VALUES,
                                       logits)
  np.testing.assert_array_equal(target("q"), target("rl_only"))
  assert target("psi").numpy()[0] > target("q").numpy()[0]  # logsumexp > max
  np.testing.assert_array_equal(
      target("g", NEXT_LOGITS),
      targets.g_target(REWARD, DISCOUNT, GAMMA, NEXT_VALUES, NEXT_LOGITS))
  with pytest.raises(ValueError, match="next_reward_logits"):
    target("g")
  with pytest.raises(ValueError, match="unknown algorithm 'sarsa'"):
    algorithms.get("sarsa")
  assert algorithms.get("ppo").target is None
  assert algorithms.names() == ("q", "psi", "g", "rl_only", "ppo", "rloo",
                                "dpo")


def test_which_algorithms_have_log_p_in_the_reward():
  with_log_p = [n for n in algorithms.names()
                if algorithms.get(n).log_p_in_reward]
  assert with_log_p == ["q", "psi"]
  assert [n for n in algorithms.names() if algorithms.get(n).greedy] == [
      "q", "rl_only"]


def test_an_algorithm_is_one_kind_and_its_name_is_new():
  with pytest.raises(ValueError, match="needs a target"):
    algorithms.Algorithm("x", on_policy=False, log_p_in_reward=False,
                         policy_logits=lambda v, p: v)
  with pytest.raises(ValueError, match="already registered"):
    algorithms.register(algorithms.get("q"))
  with pytest.raises(ValueError, match="already registered"):
    algorithms.register(dataclasses.replace(algorithms.get("q"),
                                            name="note_rnn"))


def test_targets_work_in_a_graph():
  fn = tf.function(lambda v: targets.psi_target(REWARD, DISCOUNT, GAMMA, v))
  np.testing.assert_allclose(fn(NEXT_VALUES),
                             targets.psi_target(REWARD, DISCOUNT, GAMMA,
                                                NEXT_VALUES))
