"""The RL Tuner agent: DQN-style training of a Note RNN copy (paper section 3).

A TF-Agents ``TFAgent``. The Q-network (trained) and the target network (its
soft copy) are NoteRNNs that start as copies of the Note RNN; the frozen
Reward RNN lives in the environment. ``train`` takes a batch of 2-step
trajectories sampled from the replay buffer (``train_sequence_length`` 2, as
TF-Agents' DqnAgent) and takes one gradient step:

  state s  = (previous note, Q-network LSTM state before the step)  [item 0]
  action a, reward r, discount d                                     [item 0]
  state s' = (a, Q-network LSTM state after the step, as collected)  [item 1]
             -- the original's quirk: the *target* network is run from the
             Q-network's stored next LSTM state.
  y = algorithms.get(algorithm).target(r, d, gamma, Q-(s', .), ...)
      (Eq. 4 / 11 / 13; see targets.py, algorithms.py)
  loss = mean over valid transitions of (y - Q(s, a))^2
  each gradient clipped to norm 5, Adam, then the target network moves
  toward the Q-network: theta- <- theta- - eta (theta- - theta) (the
  update written out, with its guard, in update_step.py).

Pairs whose first item ends a composition (LAST -> FIRST, TF-Agents'
"boundary") are not transitions and are masked out of the loss.

With ``prior_network`` (G only; the original code's behaviour, reference
section 9) the Reward RNN -- the prior p -- is trained too: the G target's
log p(a'|s') is recomputed from the stored Reward RNN state without a
stop-gradient, and the optimizer updates the prior's weights with the
G-network's. The paper's prior is fixed (the default: no prior_network).

When one update stands for k of the paper's minibatches (``update_rate_
multiplier`` k; see tuning.py), the soft update uses 1 - (1 - eta)^k so the
target network tracks the Q-network at the paper's pace per note.
"""
from typing import List

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.utils import common

from rl_tuner_tf.agents import exploration
from rl_tuner_tf.agents import policies
from rl_tuner_tf import algorithms
from rl_tuner_tf import note_rnn
from rl_tuner_tf.agents import update_step


class RLTunerAgent(tf_agent.TFAgent):
  """Q-learning / Psi-learning / G-learning / RL-only on melody trajectories."""

  def __init__(self, time_step_spec, action_spec, q_network, target_q_network,
               algorithm, optimizer, gamma=0.5, target_update_rate=0.01,
               target_updates_per_train=1, gradient_clip_norm=5.0,
               exploration_mode="egreedy", epsilon=0.1,
               boltzmann_temperature=1.0, random_note_max=36, primer=None,
               seed=0, train_step_counter=None, prior_network=None,
               name="rl_tuner_agent"):
    spec = algorithms.get(algorithm)
    if spec.on_policy:
      raise ValueError(f"RLTunerAgent trains off-policy algorithms, not "
                       f"{algorithm!r} (see on_policy_tuning.py)")
    if exploration_mode not in exploration.MODES:
      raise ValueError(f"unknown exploration {exploration_mode!r}; expected "
                       f"one of {exploration.MODES}")
    if not 0.0 <= gamma <= 1.0:
      raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not 0.0 < target_update_rate <= 1.0:
      raise ValueError(f"target_update_rate must be in (0, 1], got "
                       f"{target_update_rate}")
    if prior_network is not None and not spec.target_reads_prior:
      raise ValueError("prior_network (training the prior) is G-learning's "
                       f"alone, not {algorithm!r}'s")
    tf.Module.__init__(self, name=name)
    self._prior_network = prior_network
    self._q_network = q_network
    self._target_q_network = target_q_network
    self._algorithm = algorithm
    self._target = spec.target
    self._optimizer = optimizer
    self._gamma = float(gamma)
    # k updates of rate eta in a row move the target by 1 - (1 - eta)^k.
    self._target_update_rate = 1.0 - (1.0 - float(target_update_rate)) ** int(
        target_updates_per_train)
    self._gradient_clip_norm = gradient_clip_norm
    update_step.check_optimizer(optimizer)
    policy = policies.MelodyPolicy(
        time_step_spec, action_spec, q_network, algorithm, primer=primer,
        seed=seed + 1, name="greedy_policy")
    if exploration_mode == "egreedy":
      collect_policy = exploration.EpsilonGreedyMelodyPolicy(
          time_step_spec, action_spec, q_network, algorithm, epsilon,
          random_note_max=random_note_max, primer=primer, seed=seed + 2,
          name="collect_policy")
    else:
      collect_policy = exploration.BoltzmannMelodyPolicy(
          time_step_spec, action_spec, q_network, algorithm,
          temperature=boltzmann_temperature, primer=primer, seed=seed + 2,
          name="collect_policy")
    super().__init__(
        time_step_spec, action_spec, policy, collect_policy,
        train_sequence_length=2, train_step_counter=train_step_counter)

  @property
  def algorithm(self) -> str:
    return self._algorithm

  @property
  def q_network(self) -> note_rnn.NoteRNN:
    return self._q_network

  @property
  def target_q_network(self) -> note_rnn.NoteRNN:
    return self._target_q_network

  @property
  def trained_variables(self) -> List[tf.Variable]:
    """What the optimizer updates: the Q/Psi/G network (and the prior)."""
    variables = list(self._q_network.trainable_variables)
    if self._prior_network is not None:
      variables += list(self._prior_network.variables)
    return variables

  @property
  def effective_target_update_rate(self) -> float:
    return self._target_update_rate

  def _initialize(self):
    """The target network starts as an exact copy of the Q-network."""
    common.soft_variables_update(
        self._q_network.variables, self._target_q_network.variables, tau=1.0)

  def _loss(self, experience, weights=None, training=False):
    del training
    first = tf.nest.map_structure(lambda t: t[:, 0], experience)
    second = tf.nest.map_structure(lambda t: t[:, 1], experience)
    valid = tf.cast(tf.logical_not(first.is_boundary()), tf.float32)
    if weights is not None:
      valid *= tf.cast(weights, tf.float32)

    values, _ = self._q_network.step(first.observation["note"],
                                     first.policy_info["q_state"])
    chosen = tf.gather(values, first.action, axis=1, batch_dims=1)
    next_values, _ = self._target_q_network.step(
        second.observation["note"], second.policy_info["q_state"])
    next_reward_logits = second.observation["reward_logits"]
    if self._prior_network is not None:
      # The original's G: log p(a'|s') from the live prior, gradient kept.
      next_reward_logits, _ = self._prior_network.step(
          second.observation["note"], second.observation["reward_state"])
    else:
      next_reward_logits = tf.stop_gradient(next_reward_logits)
    # Eq. 4 (q, rl_only) / Eq. 11 (psi) / Eq. 13 (g): algorithms.py.
    target = self._target(first.reward, first.discount, self._gamma,
                          tf.stop_gradient(next_values), next_reward_logits)
    td_error = target - chosen
    count = tf.maximum(tf.reduce_sum(valid), 1.0)
    loss = tf.reduce_sum(valid * tf.square(td_error)) / count
    extra = {"mean_value": tf.reduce_sum(valid * chosen) / count,
             "mean_target": tf.reduce_sum(valid * target) / count}
    return tf_agent.LossInfo(loss, extra)

  def _train(self, experience, weights=None):
    variables = self.trained_variables
    with tf.GradientTape() as tape:
      loss_info = self._loss(experience, weights)
    gradients = tape.gradient(loss_info.loss, variables)
    # A non-finite loss changes nothing (update_step's arithmetic guard);
    # the caller stops the run.
    ok = tf.math.is_finite(loss_info.loss)
    # The original clips each gradient to norm 5 (tf.clip_by_norm), then Adam.
    update_step.apply(self._optimizer, gradients, variables, ok,
                      clip_norm=self._gradient_clip_norm)
    # Soft target update: theta- <- theta- - eta (theta- - theta).
    update_step.soft_update(self._q_network.variables,
                            self._target_q_network.variables,
                            self._target_update_rate, ok)
    self.train_step_counter.assign_add(1)
    return loss_info
