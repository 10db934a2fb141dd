"""The math of the on-policy KL-regularised tuners, PPO and RLOO.

Both maximise the same objective as Psi- and G-learning (paper section 3,
Eq. 8-14), over one composition of T notes (32) primed like the others:

  J(pi) = E_pi[ sum_t r_MT(s_t, a_t)/c + log p(a_t|s_t) - log pi(a_t|s_t) ]
        = E_pi[ sum_t r_MT/c ] - KL(pi || p)                           (PG-1)

p the frozen Note RNN (the Reward RNN), pi the tuned policy. In r_MT units,
c * J = E[sum r_MT] - c * KL: the KL weight ("beta" of RLHF) is c. The
optimum is the Boltzmann policy  pi*(a|s) ∝ p(a|s) exp(Q*(s, a))  with
temperature 1, Q* the soft (log-sum-exp) value of r_MT/c -- G-learning's
Eq. 14 and Psi-learning's Eq. 12 (Psi = log p + G).

Per-token KL-penalised reward (the penalty sampled at the action taken, under
the policy that composed the batch, pi_old):

  r_t = r_MT(s_t, a_t)/c + log p(a_t|s_t) - log pi_old(a_t|s_t)       (PG-2)

PPO (Schulman et al. 2017) with a learned value V(s_t) and GAE (Schulman et
al. 2016), undiscounted over the composition by default (gamma 1, V = 0
after the last note):

  delta_t = r_t + gamma V(s_{t+1}) - V(s_t)                            (PG-3)
  A_t     = sum_l (gamma lambda)^l delta_{t+l},  R_t = A_t + V(s_t)    (PG-4)
  ratio_t = pi(a_t|s_t) / pi_old(a_t|s_t)
  L_clip  = -E[ min(ratio_t A_t, clip(ratio_t, 1-eps, 1+eps) A_t) ]    (PG-5)
  L_V     = 1/2 E[ (V(s_t) - R_t)^2 ]                                  (PG-6)

RLOO (Kool et al. 2019; Ahmadian et al. 2024): k compositions per primer,
each scored by its whole KL-penalised return, baseline = the mean return of
the other k - 1 (no value network):

  R^i = sum_t r^i_t,   A^i = R^i - 1/(k-1) sum_{j != i} R^j            (PG-7)

and every token of composition i gets A^i in the same clipped surrogate
(PG-5), as TRL's RLOO trainer does.
"""
from typing import Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf


def kl_penalised_rewards(r_mt_over_c: tf.Tensor, log_p: tf.Tensor,
                         log_pi: tf.Tensor) -> tf.Tensor:
  """PG-2: r_t = r_MT/c + log p(a_t|s_t) - log pi(a_t|s_t), elementwise."""
  return r_mt_over_c + log_p - log_pi


def gae(rewards: tf.types.experimental.TensorLike,
        values: tf.types.experimental.TensorLike, gamma: float = 1.0,
        lam: float = 0.95) -> Tuple[tf.Tensor, tf.Tensor]:
  """PG-3 / PG-4 on whole compositions.

  rewards, values: [B, T]; the composition ends after step T - 1 (V = 0
  beyond it). Returns (advantages A [B, T], returns R = A + V [B, T]).
  """
  rewards = tf.convert_to_tensor(rewards, tf.float32)
  values = tf.convert_to_tensor(values, tf.float32)
  next_values = tf.concat([values[:, 1:], tf.zeros_like(values[:, :1])], 1)
  deltas = rewards + gamma * next_values - values               # PG-3
  # A_t = delta_t + gamma lambda A_{t+1}, scanned backwards over T.
  advantages = tf.scan(lambda carry, d: d + gamma * lam * carry,
                       tf.transpose(deltas), initializer=tf.zeros_like(
                           deltas[:, 0]), reverse=True)
  advantages = tf.transpose(advantages)                         # PG-4
  return advantages, advantages + values


def clipped_surrogate_loss(log_pi: tf.Tensor, log_pi_old: tf.Tensor,
                           advantages: tf.Tensor, clip: float = 0.2
                           ) -> Tuple[tf.Tensor, tf.Tensor]:
  """PG-5 (a loss: minimised). Returns (loss, fraction of tokens clipped)."""
  ratio = tf.exp(log_pi - log_pi_old)
  unclipped = ratio * advantages
  clipped = tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip) * advantages
  loss = -tf.reduce_mean(tf.minimum(unclipped, clipped))
  clip_fraction = tf.reduce_mean(tf.cast(
      tf.greater(tf.abs(ratio - 1.0), clip), tf.float32))
  return loss, clip_fraction


def value_loss(values: tf.Tensor, returns: tf.Tensor) -> tf.Tensor:
  """PG-6: 1/2 mean squared error of V against the GAE returns."""
  return 0.5 * tf.reduce_mean(tf.square(values - returns))


def leave_one_out_advantages(returns: tf.types.experimental.TensorLike,
                             k: int) -> tf.Tensor:
  """PG-7: returns [B] (B = groups * k, each group's k consecutive items share
  a primer) -> A^i = R^i - mean of the other k - 1 returns of its group."""
  returns = tf.convert_to_tensor(returns, tf.float32)
  if k < 2:
    raise ValueError(f"RLOO needs k >= 2 samples per primer, got {k}")
  groups = tf.reshape(returns, [-1, k])
  others = (tf.reduce_sum(groups, axis=1, keepdims=True) - groups) / (k - 1)
  return tf.reshape(groups - others, [-1])


def whiten(x: tf.Tensor, eps: float = 1e-8) -> tf.Tensor:
  """(x - mean) / std over all elements: rescales the step size, keeps the
  sign structure (a constant shift is a baseline: no bias in expectation)."""
  mean, variance = tf.nn.moments(tf.reshape(x, [-1]), axes=[0])
  return (x - mean) * tf.math.rsqrt(variance + eps)
