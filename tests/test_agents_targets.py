"""Targets of Eq. 4 / 11 / 13 against values computed by hand."""
import math

import numpy as np
import pytest
import tensorflow as tf

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


def test_dispatch_and_rl_only_is_q():
  q = targets.bootstrapped_target("q", REWARD, DISCOUNT, GAMMA, NEXT_VALUES)
  rl = targets.bootstrapped_target("rl_only", REWARD, DISCOUNT, GAMMA,
                                   NEXT_VALUES)
  np.testing.assert_array_equal(q, rl)
  psi = targets.bootstrapped_target("psi", REWARD, DISCOUNT, GAMMA, NEXT_VALUES)
  assert psi.numpy()[0] > q.numpy()[0]  # logsumexp > max
  with pytest.raises(ValueError, match="next_reward_logits"):
    targets.bootstrapped_target("g", REWARD, DISCOUNT, GAMMA, NEXT_VALUES)
  with pytest.raises(ValueError, match="unknown algorithm"):
    targets.bootstrapped_target("sarsa", REWARD, DISCOUNT, GAMMA, NEXT_VALUES)


def test_which_algorithms_have_log_p_in_the_reward():
  assert targets.includes_log_p_in_reward("q")
  assert targets.includes_log_p_in_reward("psi")
  assert not targets.includes_log_p_in_reward("g")
  assert not targets.includes_log_p_in_reward("rl_only")


def test_targets_work_in_a_graph():
  fn = tf.function(lambda v: targets.psi_target(REWARD, DISCOUNT, GAMMA, v))
  np.testing.assert_allclose(fn(NEXT_VALUES),
                             targets.psi_target(REWARD, DISCOUNT, GAMMA,
                                                NEXT_VALUES))
