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

Which algorithm uses which target, and its reward: rl_tuner_tf/algorithms.py.
"""
from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf



def q_target(reward: tf.Tensor, discount: tf.Tensor, gamma: float,
             next_target_values: tf.Tensor) -> tf.Tensor:
  """Q-learning, Eq. 4:  y = r + gamma * max_a' Q-(s', a')."""
  return reward + gamma * discount * tf.reduce_max(next_target_values, axis=-1)


def psi_target(reward: tf.Tensor, discount: tf.Tensor, gamma: float,
               next_target_values: tf.Tensor) -> tf.Tensor:
  """Generalized Psi-learning, Eq. 11:  y = r + gamma * logsumexp_a' Psi-(s', a')."""
  return reward + gamma * discount * tf.reduce_logsumexp(next_target_values,
                                                         axis=-1)


def g_target(reward: tf.Tensor, discount: tf.Tensor, gamma: float,
             next_target_values: tf.Tensor,
             next_reward_logits: tf.Tensor) -> tf.Tensor:
  """G-learning, Eq. 13 (reward r = r_MT/c, no log p term):

  y = r_MT/c + gamma * logsumexp_a' ( log p(a'|s') + G-(s', a') ),
  log p(.|s') the Reward RNN's normalised log-softmax at the next state.
  """
  next_log_p = tf.nn.log_softmax(next_reward_logits, axis=-1)
  return reward + gamma * discount * tf.reduce_logsumexp(
      next_log_p + next_target_values, axis=-1)
