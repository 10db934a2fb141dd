"""One on-policy run (PPO or RLOO), compiled into one graph like tuning.Tuner.

  MelodyEnvironment (batched, include_log_p=False: reward r_MT/c)   melody_environment.py
  policy network: a NoteRNN initialised from the Note RNN            (the "q_network")
  PPO only: a value network (NoteRNN trunk from the Note RNN + a linear value head)
  the math: agents/policy_gradient.py (PG-1 .. PG-7)

An iteration composes B = ``pg_num_compositions`` whole compositions of T
notes (B x T notes; RLOO: B / k primers, k compositions each) by sampling
from the policy, then trains on them: the per-token KL-penalised rewards
(PG-2, log p from the frozen Reward RNN, log pi from the policy that
composed), advantages (PPO: GAE over the value network, PG-3/4; RLOO: leave-
one-out, PG-7), whitened over the batch, then ``pg_epochs`` passes over the
B compositions in ``pg_minibatches`` shuffled minibatches, each one Adam step
on the clipped surrogate (PG-5; PPO adds the value loss PG-6 for the value
network). Policy and value network are separate networks, each gradient
clipped to ``gradient_clip_norm`` on its own, so the (large) value loss never
takes the policy's share of the clipping budget; hence no value-loss
coefficient (Adam is invariant to it).

The public surface is tuning.Tuner's (train.py drives either through
tuning.make_tuner). Everything that defines where a run is -- networks,
optimizer, environment, random generator, counters -- is in ``checkpoint``;
an iteration always ends with every composition finished, so a checkpoint
never holds half a batch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf import compose
from rl_tuner_tf import configuration
from rl_tuner_tf import dpo_tuning
from rl_tuner_tf import melody_environment
from rl_tuner_tf import tuner_base
from rl_tuner_tf.agents import policy_gradient as pg

if TYPE_CHECKING:
  from rl_tuner_tf import tuning


class OnPolicyTuner(tuner_base.TunerBase):
  """What PPO and RLOO share: environment, policy network, rollout (whole
  compositions), the clipped surrogate update (PG-5) over minibatches.
  Subclasses give the advantages (and PPO its value network)."""
  ALGORITHM = None  # the algorithm a subclass runs

  @classmethod
  def check_config(cls, config: tuning.TuningConfig) -> None:
    """Raises configuration.ConfigError for settings this method cannot run
    (TuningConfig asks when it is built)."""

  @classmethod
  def iteration_notes(cls, config: tuning.TuningConfig) -> int:
    """Notes one iteration composes: B whole compositions."""
    return config.pg.num_compositions * config.num_notes_in_melody

  @classmethod
  def schedule(cls, config: tuning.TuningConfig) -> str:
    return (f"{config.pg.num_compositions} whole compositions "
            f"({cls.iteration_notes(config)} notes) per iteration, then "
            f"{config.pg.epochs} epochs x {config.pg.minibatches} minibatches")

  def __init__(self, config, note_rnn_model, primer=None, reward_weights=None,
               reward_model=None):
    if config.algorithm != self.ALGORITHM:
      raise ValueError(f"{type(self).__name__} runs {self.ALGORITHM}, not "
                       f"{config.algorithm!r} (see tuning.make_tuner)")
    self.config = config
    b = config.pg.num_compositions
    tf.random.set_seed(config.seed)
    self.q_network = tuner_base.copy_network(note_rnn_model, "policy_network")
    self.reward_rnn = tuner_base.copy_network(note_rnn_model, "reward_rnn")
    self.reward_rnn.trainable = False
    self.env = melody_environment.MelodyEnvironment(
        self.reward_rnn, b, c=config.c, include_log_p=False,
        num_notes_in_melody=config.num_notes_in_melody,
        random_note_max=config.random_note_max, primer=primer,
        reward_weights=reward_weights,
        terminal_discount=config.terminal_discount, seed=config.seed,
        primer_group_size=self._primer_group_size(),
        token_reading=config.token_reading,
        **melody_environment.task_reward(config, reward_model))
    self._build_value_parts(note_rnn_model)
    variables = (list(self.q_network.trainable_variables) +
                 self._value_variables())
    self.optimizer = tf.keras.optimizers.Adam(config.pg.learning_rate)
    self.optimizer.build(variables)
    self.generator = tf.random.Generator.from_seed(config.seed + 1)
    self.notes_composed = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name="notes_composed")
    self.train_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                  name="train_step")
    self._init_base()
    for name in ("loss", "value_loss", "clip_fraction", "updates",
                 "objective", "kl", "compositions"):
      setattr(self._stats, name, tf.Variable(0.0, trainable=False, name=name))
    parts = dict(policy_network=self.q_network, optimizer=self.optimizer,
                 environment=self.env.trackable, generator=self.generator,
                 notes_composed=self.notes_composed, train_step=self.train_step)
    parts.update(self._value_parts())
    self.checkpoint_parts = parts
    self.checkpoint = tf.train.Checkpoint(**parts)

  # -- what a method adds (none here: RLOO) ----------------------------------
  def _primer_group_size(self):
    """Compositions sharing one primer."""
    return 1

  def _build_value_parts(self, note_rnn_model):
    """Builds networks trained beside the policy (PPO's value network)."""

  def _value_variables(self):
    return []

  def _value_parts(self):
    """{checkpoint name: trackable} of _build_value_parts' networks."""
    return {}

  def _primed_value_state(self, b):
    return ()

  def _advantages(self, batch):
    """-> (per-token advantages [B, T], value targets or None, returns [B])."""
    raise NotImplementedError

  def _value_loss(self, batch, inputs, take, returns):
    """The loss of the networks trained beside the policy (PG-6)."""
    return tf.constant(0.0)

  # -- the compiled loop ----------------------------------------------------------
  def _rollout(self):
    """Composes B whole compositions with the current policy, through
    compose.compose (the tools' one loop and random scheme) with the
    environment as its ``observe``; rollout k draws with
    compose.rollout_seed(seed, k).

    -> dict of [B, T] tensors: inputs (the note each step reads), actions,
    r (r_MT/c), log_p, log_pi_old; and the primed LSTM states of the
    networks (policy_state, value_state).
    """
    cfg = self.config
    b = cfg.pg.num_compositions
    first = self.env.reset()  # new compositions (the primer is drawn here)
    with tf.control_dependencies(tf.nest.flatten(first)):
      policy_state = melody_environment.primed_state(
          self.q_network, self.env.primer, b)
      value_state = self._primed_value_state(b)
    note = first.observation["note"]

    def step(previous, state):  # the prior's logits come from the env
      policy_state, prior_logits = state
      logits, policy_state = self.q_network.step(previous, policy_state)
      return logits, prior_logits, (policy_state, prior_logits)

    def observe(action, state):  # reward r_MT / c (include_log_p=False)
      time_step = self.env.step(action)
      return time_step.reward, (state[0],
                                time_step.observation["reward_logits"])

    rollout = self.notes_composed // self.notes_per_iteration
    out = compose.compose(
        step, note[:, None], cfg.num_notes_in_melody, 1.0,
        compose.rollout_seed(cfg.seed, rollout),
        (policy_state, first.observation["reward_logits"]), observe=observe)
    return {"inputs": tf.concat([note[:, None], out["tokens"][:, :-1]], 1),
            "actions": out["tokens"], "r": out["reward"],
            "log_p": out["log_p"], "log_pi_old": out["log_pi"],
            "policy_state": policy_state, "value_state": value_state}

  def _update(self, batch, advantages, returns, index):
    """One Adam step on the compositions ``index``; returns the losses."""
    cfg = self.config
    take = lambda x: tf.gather(x, index)
    inputs = take(batch["inputs"])
    with tf.GradientTape() as tape:
      logits, _ = self.q_network(inputs, initial_state=tuple(
          take(s) for s in batch["policy_state"]))
      log_pi = tf.gather(tf.nn.log_softmax(logits), take(batch["actions"]),
                         axis=2, batch_dims=2)
      loss, clip_fraction = pg.clipped_surrogate_loss(
          log_pi, take(batch["log_pi_old"]), take(advantages), cfg.pg.clip)
      v_loss = self._value_loss(batch, inputs, take, returns)
      total_loss = loss + v_loss if self._value_variables() else loss
    policy_vars = self.q_network.trainable_variables
    value_vars = self._value_variables()
    grads = tape.gradient(total_loss, policy_vars + value_vars)
    groups = [grads[:len(policy_vars)]]
    if value_vars:
      groups.append(grads[len(policy_vars):])
    if cfg.gradient_clip_norm > 0:
      groups = [tf.clip_by_global_norm(g, cfg.gradient_clip_norm)[0]
                for g in groups]
    grads = [g for group in groups for g in group]
    finite = tf.logical_and(tf.math.is_finite(loss),
                            tf.math.is_finite(v_loss))

    def apply():
      with tf.control_dependencies([self.optimizer.apply_gradients(
          zip(grads, policy_vars + value_vars))]):
        return self.train_step.assign_add(1)

    def record_bad():
      bad = tf.where(tf.math.is_finite(loss), v_loss, loss)
      with tf.control_dependencies([self._record_bad_loss(bad)]):
        return tf.identity(self.train_step)

    done = tf.cond(finite, apply, record_bad)
    with tf.control_dependencies([done]):
      return tf.identity(loss), tf.identity(v_loss), clip_fraction

  def _train(self, batch):
    cfg = self.config
    b = cfg.pg.num_compositions
    size = b // cfg.pg.minibatches
    advantages, returns, total = self._advantages(batch)
    kl = tf.reduce_mean(batch["log_pi_old"] - batch["log_p"])
    stats = self._stats
    ops = [stats.objective.assign_add(tf.reduce_sum(total)),
           stats.kl.assign_add(kl * b),
           stats.compositions.assign_add(float(b))]
    num = cfg.pg.epochs * cfg.pg.minibatches

    def body(i, order):
      order = tf.cond(tf.equal(i % cfg.pg.minibatches, 0),
                      lambda: tf.argsort(self.generator.uniform([b])),
                      lambda: order)
      start = (i % cfg.pg.minibatches) * size
      loss, v_loss, clip_fraction = self._update(
          batch, advantages, returns, order[start:start + size])
      finite = tf.logical_not(stats.nonfinite)
      with tf.control_dependencies([
          stats.loss.assign_add(tf.where(finite, loss, 0.0)),
          stats.value_loss.assign_add(tf.where(finite, v_loss, 0.0)),
          stats.clip_fraction.assign_add(clip_fraction),
          stats.updates.assign_add(1.0)]):
        return i + 1, tf.identity(order)

    with tf.control_dependencies(ops):
      done = tf.while_loop(
          lambda i, _: tf.logical_and(i < num,
                                      tf.logical_not(stats.nonfinite)),
          body, [tf.constant(0), tf.range(b)], parallel_iterations=1)
    with tf.control_dependencies(tf.nest.flatten(done)):
      return tf.constant(True)

  def _iteration(self):
    batch = self._rollout()
    with tf.control_dependencies([self.notes_composed.assign_add(
        self.notes_per_iteration)]):
      return self._train(batch)

  # -- public (tuner_base.TunerBase's surface) -----------------------------
  @property
  def notes_per_iteration(self) -> int:
    return self.config.pg.num_compositions * self.config.num_notes_in_melody

  def read_and_reset_stats(self) -> Dict[str, float]:
    """Means since the last call: env stats (log_p, r_mt, rules per note),
    loss, value_loss (PPO), clip_fraction, kl (per note, log pi - log p of
    the notes composed), objective (PG-1 per composition, as composed)."""
    stats = {k: float(v) for k, v in self.env.read_and_reset_stats().items()}
    s = self._stats
    updates = float(s.updates.numpy())
    compositions = float(s.compositions.numpy())
    if updates:
      stats["loss"] = float(s.loss.numpy()) / updates
      stats["clip_fraction"] = float(s.clip_fraction.numpy()) / updates
      if self._value_variables():
        stats["value_loss"] = float(s.value_loss.numpy()) / updates
    if compositions:
      stats["objective"] = float(s.objective.numpy()) / compositions
      stats["kl"] = float(s.kl.numpy()) / compositions
    stats["updates"] = updates
    for name in ("loss", "value_loss", "clip_fraction", "updates", "objective",
                 "kl", "compositions"):
      getattr(s, name).assign(0.0)
    return stats

  @property
  def num_updates(self) -> int:
    return int(self.train_step.numpy())



class PPOTuner(OnPolicyTuner):
  """PPO: GAE advantages over a value network (PG-3/4), its loss PG-6."""
  ALGORITHM = "ppo"

  def _build_value_parts(self, note_rnn_model):
    self.value_network = tuner_base.copy_network(note_rnn_model,
                                                 "value_network")
    self.value_head = tf.keras.layers.Dense(
        1, kernel_initializer="zeros", name="value_head")
    self.value_head.build([None, note_rnn_model.layer_sizes[-1]])
    # Returns run up to T notes of r_MT / c: the head predicts them in
    # units of T / c, so a unit-sized output spans their range.
    self._value_scale = self.config.num_notes_in_melody / self.config.c

  def _value_variables(self):
    """The value network's LSTM (its copied logits layer is unused) + head."""
    return ([v for layer in self.value_network.lstm_layers
             for v in layer.trainable_variables] +
            self.value_head.trainable_variables)

  def _value_parts(self):
    return dict(value_network=self.value_network, value_head=self.value_head)

  def _primed_value_state(self, b):
    return melody_environment.primed_state(self.value_network,
                                           self.env.primer, b)

  def _values(self, inputs, initial_state):
    """V(s_t) [b, T] of the value network over compositions."""
    features, _ = self.value_network.features(inputs, initial_state)
    return self.value_head(features)[..., 0] * self._value_scale

  def _advantages(self, batch):
    rewards = pg.kl_penalised_rewards(batch["r"], batch["log_p"],
                                      batch["log_pi_old"])          # PG-2
    values = self._values(batch["inputs"], batch["value_state"])
    advantages, returns = pg.gae(rewards, values, gamma=1.0,
                                 lam=self.config.ppo.gae_lambda)     # PG-3/4
    return pg.whiten(advantages), returns, tf.reduce_sum(rewards, axis=1)

  def _value_loss(self, batch, inputs, take, returns):
    values = self._values(inputs, tuple(take(s) for s in batch["value_state"]))
    return pg.value_loss(values, take(returns))                      # PG-6


class RLOOTuner(OnPolicyTuner):
  """RLOO: k compositions per primer, each one's return against the mean of
  the other k - 1 (PG-7); no value network."""
  ALGORITHM = "rloo"

  @classmethod
  def check_config(cls, config: tuning.TuningConfig) -> None:
    k, b = config.rloo.k, config.pg.num_compositions
    if k < 2:
      raise configuration.ConfigError(
          "rloo_k", f"must be >= 2 (a leave-one-out baseline needs another "
          f"sample) (got {k})")
    if b % k:
      raise configuration.ConfigError(
          "pg_num_compositions", f"must be a multiple of rloo_k ({k}) (got "
          f"{b})")

  def _primer_group_size(self):
    return self.config.rloo.k

  def _advantages(self, batch):
    rewards = pg.kl_penalised_rewards(batch["r"], batch["log_p"],
                                      batch["log_pi_old"])          # PG-2
    total = tf.reduce_sum(rewards, axis=1)
    per_composition = pg.leave_one_out_advantages(total,
                                                  self.config.rloo.k)  # PG-7
    advantages = tf.tile(per_composition[:, None],
                         [1, self.config.num_notes_in_melody])
    return pg.whiten(advantages), None, total


# The tuner of each algorithm that tuning.Tuner does not run.
TUNERS = {tuner.ALGORITHM: tuner
          for tuner in (PPOTuner, RLOOTuner, dpo_tuning.DPOTuner)}
