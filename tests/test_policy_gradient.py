"""The on-policy math (agents/policy_gradient.py) against hand-computed values."""
import math

import numpy as np
import pytest
import tensorflow as tf

from rl_tuner_tf.agents import policy_gradient as pg


def test_kl_penalised_reward_per_token():
  # PG-2: r_MT/c + log p - log pi.
  r = pg.kl_penalised_rewards(tf.constant([[1.0, -2.0]]),
                              tf.math.log([[0.5, 0.25]]),
                              tf.math.log([[0.25, 0.5]]))
  np.testing.assert_allclose(r, [[1.0 + math.log(2), -2.0 - math.log(2)]],
                             rtol=1e-6)


def test_gae_against_hand_computed_values():
  rewards = tf.constant([[1.0, 2.0, 3.0]])
  values = tf.constant([[0.5, 1.0, 1.5]])
  # gamma 1, lambda 0.5: deltas 1 + 1 - 0.5 = 1.5, 2 + 1.5 - 1 = 2.5,
  # 3 + 0 - 1.5 = 1.5 (V = 0 after the last note);
  # A2 = 1.5, A1 = 2.5 + 0.5 * 1.5 = 3.25, A0 = 1.5 + 0.5 * 3.25 = 3.125.
  adv, ret = pg.gae(rewards, values, gamma=1.0, lam=0.5)
  np.testing.assert_allclose(adv, [[3.125, 3.25, 1.5]], rtol=1e-6)
  np.testing.assert_allclose(ret, [[3.625, 4.25, 3.0]], rtol=1e-6)
  # lambda 1: Monte Carlo return-to-go minus V; lambda 0: the TD errors.
  adv, ret = pg.gae(rewards, values, gamma=1.0, lam=1.0)
  np.testing.assert_allclose(adv, [[5.5, 4.0, 1.5]], rtol=1e-6)
  np.testing.assert_allclose(ret, [[6.0, 5.0, 3.0]], rtol=1e-6)
  adv, _ = pg.gae(rewards, values, gamma=1.0, lam=0.0)
  np.testing.assert_allclose(adv, [[1.5, 2.5, 1.5]], rtol=1e-6)
  # gamma 0.5, lambda 1: A0 = 1 + 0.5 * 2 + 0.25 * 3 - 0.5 = 2.25.
  adv, _ = pg.gae(rewards, values, gamma=0.5, lam=1.0)
  np.testing.assert_allclose(adv[0, 0], 2.25, rtol=1e-6)
  # Rows are independent compositions.
  adv2, _ = pg.gae(tf.concat([rewards, 2 * rewards], 0),
                   tf.concat([values, values], 0), gamma=1.0, lam=0.5)
  np.testing.assert_allclose(adv2[0], [3.125, 3.25, 1.5], rtol=1e-6)
  assert float(adv2[1, 2]) == pytest.approx(6.0 - 1.5)


def test_clipped_surrogate_loss_and_its_gradient():
  ratios = tf.constant([1.5, 0.5, 1.1, 0.7])
  advantages = tf.constant([1.0, 1.0, -1.0, -1.0])
  log_pi = tf.Variable(tf.math.log(ratios))
  with tf.GradientTape() as tape:
    loss, clip_fraction = pg.clipped_surrogate_loss(
        log_pi, tf.zeros([4]), advantages, clip=0.2)
  # min(r A, clip(r) A): 1.2 (clipped), 0.5, -1.1, -0.8 (clipped);
  # loss = -mean = -(1.2 + 0.5 - 1.1 - 0.8) / 4 = 0.05.
  assert float(loss) == pytest.approx(0.05, abs=1e-6)
  assert float(clip_fraction) == pytest.approx(0.75)
  # Clipped terms pass no gradient; the others d(r A)/d log pi = r A.
  np.testing.assert_allclose(tape.gradient(loss, log_pi),
                             [0.0, -0.5 / 4, 1.1 / 4, 0.0], atol=1e-6)


def test_value_loss():
  assert float(pg.value_loss(tf.constant([1.0, 3.0]),
                             tf.constant([2.0, 1.0]))) == pytest.approx(1.25)


def test_rloo_leave_one_out_baseline():
  returns = tf.constant([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
  # Group (1, 2, 3): 1 - (2 + 3) / 2 = -1.5, 2 - 2 = 0, 3 - 1.5 = 1.5.
  np.testing.assert_allclose(pg.leave_one_out_advantages(returns, 3),
                             [-1.5, 0.0, 1.5, -15.0, 0.0, 15.0], rtol=1e-6)
  # k = 2: each baseline is the other's return.
  np.testing.assert_allclose(pg.leave_one_out_advantages(returns[:4], 2),
                             [-1.0, 1.0, -7.0, 7.0], rtol=1e-6)
  with pytest.raises(ValueError, match="k >= 2"):
    pg.leave_one_out_advantages(returns, 1)


def test_whiten():
  x = pg.whiten(tf.constant([[1.0, 2.0], [3.0, 4.0]]))
  assert float(tf.reduce_mean(x)) == pytest.approx(0.0, abs=1e-6)
  assert float(tf.math.reduce_std(x)) == pytest.approx(1.0, abs=1e-4)
