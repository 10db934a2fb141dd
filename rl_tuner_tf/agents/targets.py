"""Bootstrapped targets of RL Tuner's four algorithms (paper section 3).

Each function takes a batch of transitions and the target network's outputs
at the next state, and returns the regression target y for the trained
network's value of the action taken (loss: mean squared error, Eq. 4 / 11 /
13). ``discount`` is the environment's per-transition discount (1, or 0 at a
terminal step), multiplied by gamma.

  algorithm  reward r (from the environment)   target y
  q          log p(a|s) + r_MT(a,s)/c  (Eq. 3)  r + gamma max_a' Q-(s',a')         (Eq. 4)
  psi        log p(a|s) + r_MT(a,s)/c  (Eq. 3)  r + gamma logsumexp_a' Psi-(s',a') (Eq. 11)
  g          r_MT(a,s)/c                         r + gamma logsumexp_a' (log p(a'|s') + G-(s',a'))  (Eq. 13)
  rl_only    r_MT(a,s)/c                         as q                              (Eq. 4)
"""
from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf.melody_policy import ALGORITHMS
from rl_tuner_tf.melody_policy import check_algorithm


def q_target(reward, discount, gamma, next_target_values):
  """Q-learning, Eq. 4:  y = r + gamma * max_a' Q-(s', a')."""
  return reward + gamma * discount * tf.reduce_max(next_target_values, axis=-1)


def psi_target(reward, discount, gamma, next_target_values):
  """Generalized Psi-learning, Eq. 11:  y = r + gamma * logsumexp_a' Psi-(s', a')."""
  return reward + gamma * discount * tf.reduce_logsumexp(next_target_values,
                                                         axis=-1)


def g_target(reward, discount, gamma, next_target_values, next_reward_logits):
  """G-learning, Eq. 13 (reward r = r_MT/c, no log p term):

  y = r_MT/c + gamma * logsumexp_a' ( log p(a'|s') + G-(s', a') ),
  log p(.|s') the Reward RNN's normalised log-softmax at the next state.
  """
  next_log_p = tf.nn.log_softmax(next_reward_logits, axis=-1)
  return reward + gamma * discount * tf.reduce_logsumexp(
      next_log_p + next_target_values, axis=-1)


def bootstrapped_target(algorithm, reward, discount, gamma, next_target_values,
                        next_reward_logits=None):
  """Dispatches on ``algorithm`` (one of ALGORITHMS)."""
  if algorithm in ("q", "rl_only"):
    return q_target(reward, discount, gamma, next_target_values)
  if algorithm == "psi":
    return psi_target(reward, discount, gamma, next_target_values)
  if algorithm == "g":
    if next_reward_logits is None:
      raise ValueError("the G-learning target needs next_reward_logits")
    return g_target(reward, discount, gamma, next_target_values,
                    next_reward_logits)
  check_algorithm(algorithm)  # raises: not one of ALGORITHMS
  raise ValueError(f"{algorithm!r} is an on-policy tuner: it has no "
                   "bootstrapped target (see agents/policy_gradient.py)")


def includes_log_p_in_reward(algorithm):
  """Eq. 3's log p(a|s) is in the reward for q and psi, not for g / rl_only."""
  check_algorithm(algorithm)
  return algorithm in ("q", "psi")
