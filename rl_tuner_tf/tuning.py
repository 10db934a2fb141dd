"""One RL Tuner run, wired from TF-Agents pieces and compiled into one graph.

  MelodyEnvironment (batched, B compositions)          melody_environment.py
  RLTunerAgent + its collect policy (exploration)      agents/
  replay buffer of 2-step trajectories (TF-Agents')   agents/replay_buffer.py
  DynamicStepDriver: policy -> env -> replay.add_batch (TF-Agents)

``Tuner.run(n)`` runs n iterations inside one ``tf.function``; an iteration
composes one note in each of the B compositions (B notes, via the driver)
and then trains on the paper's share of minibatches for those notes:
B / train_every_n_notes minibatches of minibatch_size transitions
(paper: one minibatch of 32 every 5 notes). They are taken as
B / (train_every_n_notes * minibatches_per_update) updates, each on
minibatches_per_update * minibatch_size transitions: ``minibatches_per_update``
= 1 is the paper's exact schedule (200,000 updates of 32 for 1,000,000
notes), the default; larger values are an opt-in speed setting that merges k
paper minibatches into one update of the same transitions (same 6.4M
transitions per run, k times fewer updates). It approximates the paper's
schedule: a merged update moves the target network by 1 - (1 - eta)^k (exact
for k soft updates in a row) and multiplies the Adam learning rate by
``lr_multiplier`` (default sqrt(k), a heuristic for the larger batch's smaller
gradient noise, not an equivalence); see ``TuningConfig``.

What the original code ran differently from the paper (reference section 9)
is reachable setting by setting, and as a whole with the ``magenta`` preset
(presets.py): ``token_reading``, ``g_updates_prior``,
``boltzmann_store_argmax``, ``figure2_r_mt`` (train.py), c and exploration.

Devices: nothing here names a device. On a GPU machine TensorFlow places the
networks, the environment, the random generators and the XLA update program on
the first GPU. ``run(n)`` is one ``tf.function`` call (one trace), and its
graph holds no Python callback or print op, so nothing returns to Python
per note or per update (checked on the traced graph, with soft device
placement off, in tests/test_tuning_compiled.py). Only TF-Agents'
TFUniformReplayBuffer is pinned to the CPU (its default ``device='cpu:*'``;
its critical-section mutex ops are CPU-only): each iteration copies the B new
transitions to the host and the sampled minibatches back, inside the graph
(976 bytes a transition: at the paper's settings 390 KB out and 5 MB in per
400-note iteration). The buffer is left there: the copies are per iteration,
not per update, and a GPU buffer could not be verified without a GPU. Its
int32 shape arithmetic runs in host memory, as TensorFlow does for int32
on GPUs.

Everything that defines where a run is -- networks, optimizer, environment
(compositions, Reward RNN state, random generator), policy state and random
generators, replay buffer and its sampling generator, counters -- is in
``Tuner.checkpoint``, so a resumed run is bit-identical to an uninterrupted one
(tests/test_replay_buffer.py; the fault suite compares the weights after every
kill).
"""
import dataclasses
import math
from typing import Optional

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf
from tf_agents.drivers import dynamic_step_driver

from rl_tuner_tf import melody_environment
from rl_tuner_tf import melody_policy
from rl_tuner_tf import on_policy_tuning
from rl_tuner_tf import tuner_base
from rl_tuner_tf.agents import exploration
from rl_tuner_tf.agents import replay_buffer
from rl_tuner_tf.agents import rl_tuner_agent
from rl_tuner_tf.agents import targets
from rl_tuner_tf.rewards import token_reading
from rl_tuner_tf.rewards.music_theory import FIGURE2_R_MT


class ConfigError(ValueError):
  """A bad setting; ``name`` is the setting (and the train.py flag)."""

  def __init__(self, name, message):
    super().__init__(f"--{name}: {message}")
    self.name = name


@dataclasses.dataclass
class TuningConfig:
  """Hyperparameters. Defaults are the paper's; the original code's values,
  where they differ, are noted (reference section 3-5)."""
  algorithm: str = "q"                # q | psi | g | rl_only | ppo | rloo
  num_notes: int = 1_000_000          # notes composed (training steps)
  c: float = 0.5                      # Eq. 3; original reward_scaler 0.1 = c 10
  gamma: float = 0.5                  # original library default 0.95
  learning_rate: float = 1e-3         # Adam's default, as the original
  lr_multiplier: Optional[float] = None  # None: sqrt(minibatches_per_update)
  target_update_rate: float = 0.01    # eta, per paper minibatch
  minibatch_size: int = 32
  train_every_n_notes: int = 5
  minibatches_per_update: int = 1     # k paper minibatches per update; 1 = exact
  replay_capacity: int = 100_000      # transitions (notes)
  gradient_clip_norm: float = 5.0
  exploration: str = "egreedy"        # egreedy | boltzmann
  exploration_period: Optional[int] = None  # None: num_notes / 2 (500,000)
  epsilon_start: float = 1.0
  epsilon_end: float = 0.1
  boltzmann_temperature: float = 1.0
  num_compositions: int = 400         # B, composed in parallel
  num_notes_in_melody: int = 32
  random_note_max: int = 36           # original's 0..36 draw; 37 = all classes
  terminal_discount: float = 1.0      # original: bootstraps through the end
  seed: int = 0
  # The original code's differences from the paper (reference section 9):
  token_reading: str = "paper"        # rules read 0/1 as the paper; "magenta": swapped
  g_updates_prior: bool = False       # G's target trains the Reward RNN (original)
  boltzmann_store_argmax: bool = False  # Boltzmann: replay stores the argmax (original)
  figure2_r_mt: str = "mean"          # Figure 2's r_MT: "mean" per note; "last_note" (original)
  # On-policy tuners (ppo, rloo; on_policy_tuning.py), not from the paper:
  # sensible defaults of their own literature (PPO, TRL's PPO / RLOO).
  pg_num_compositions: int = 250      # B whole compositions per iteration
  pg_learning_rate: float = 3e-4      # Adam
  pg_epochs: int = 4                  # passes over each batch
  pg_minibatches: int = 5             # Adam steps per pass
  pg_clip: float = 0.2                # PPO's epsilon (PG-5), also RLOO's
  gae_lambda: float = 0.95            # PPO's GAE lambda (PG-4)
  rloo_k: int = 5                     # RLOO compositions per primer (PG-7)

  @property
  def on_policy(self):
    return self.algorithm in melody_policy.ON_POLICY_ALGORITHMS

  def notes_per_iteration(self):
    """Notes one ``run`` iteration composes (train.py's period unit)."""
    if self.on_policy:
      return self.pg_num_compositions * self.num_notes_in_melody
    return self.num_compositions

  def schedule(self):
    """One line: what an iteration does (train.py prints it)."""
    if self.on_policy:
      return (f"{self.pg_num_compositions} whole compositions "
              f"({self.notes_per_iteration()} notes) per iteration, then "
              f"{self.pg_epochs} epochs x {self.pg_minibatches} minibatches")
    return (f"{self.num_compositions} compositions in parallel, "
            f"{self.updates_per_iteration()} updates of "
            f"{self.update_batch_size()} transitions per "
            f"{self.num_compositions} notes")

  def resolved_exploration_period(self):
    if self.exploration_period is None:
      return max(1, self.num_notes // 2)
    return self.exploration_period

  def resolved_lr_multiplier(self):
    if self.lr_multiplier is None:
      return math.sqrt(self.minibatches_per_update)
    return self.lr_multiplier

  def updates_per_iteration(self):
    return self.num_compositions // (self.train_every_n_notes *
                                     self.minibatches_per_update)

  def update_batch_size(self):
    return self.minibatch_size * self.minibatches_per_update

  def validate(self):
    """Raises ConfigError naming the first bad setting."""
    def check(ok, name, message):
      if not ok:
        raise ConfigError(name, f"{message} (got {getattr(self, name)!r})")
    check(self.algorithm in targets.ALGORITHMS, "algorithm",
          f"must be one of {', '.join(targets.ALGORITHMS)}")
    check(self.exploration in exploration.MODES, "exploration",
          f"must be one of {', '.join(exploration.MODES)}")
    check(self.token_reading in token_reading.READINGS, "token_reading",
          f"must be one of {', '.join(token_reading.READINGS)}")
    check(self.figure2_r_mt in FIGURE2_R_MT, "figure2_r_mt",
          f"must be one of {', '.join(FIGURE2_R_MT)}")
    check(not self.boltzmann_store_argmax or self.exploration == "boltzmann",
          "boltzmann_store_argmax", "needs --exploration=boltzmann")
    for name in ("num_notes", "minibatch_size", "train_every_n_notes",
                 "minibatches_per_update", "replay_capacity",
                 "num_compositions", "num_notes_in_melody"):
      value = getattr(self, name)
      check(isinstance(value, int) and value > 0, name,
            "must be a positive integer")
    for name in ("pg_num_compositions", "pg_epochs", "pg_minibatches",
                 "rloo_k"):
      value = getattr(self, name)
      check(isinstance(value, int) and value > 0, name,
            "must be a positive integer")
    for name in ("c", "learning_rate", "boltzmann_temperature",
                 "pg_learning_rate", "pg_clip"):
      value = getattr(self, name)
      check(math.isfinite(value) and value > 0, name, "must be > 0")
    check(0.0 <= self.gamma <= 1.0, "gamma", "must be in [0, 1]")
    check(0.0 < self.target_update_rate <= 1.0, "target_update_rate",
          "must be in (0, 1]")
    check(self.gradient_clip_norm >= 0, "gradient_clip_norm", "must be >= 0")
    check(0.0 <= self.epsilon_start <= 1.0, "epsilon_start", "must be in [0, 1]")
    check(0.0 <= self.epsilon_end <= 1.0, "epsilon_end", "must be in [0, 1]")
    check(self.exploration_period is None or self.exploration_period > 0,
          "exploration_period", "must be > 0")
    check(self.lr_multiplier is None or self.lr_multiplier > 0,
          "lr_multiplier", "must be > 0")
    check(0 <= self.random_note_max <= 37, "random_note_max",
          "must be in [0, 37]")
    check(0.0 <= self.terminal_discount <= 1.0, "terminal_discount",
          "must be in [0, 1]")
    check(0.0 <= self.gae_lambda <= 1.0, "gae_lambda", "must be in [0, 1]")
    if self.on_policy:
      self._validate_on_policy(check)
      return
    check(self.num_compositions % (self.train_every_n_notes *
                                   self.minibatches_per_update) == 0,
          "num_compositions",
          f"must be a multiple of train_every_n_notes * minibatches_per_update"
          f" = {self.train_every_n_notes * self.minibatches_per_update}, so "
          "that every note's share of training is taken")
    check(self.num_notes % self.num_compositions == 0, "num_notes",
          f"must be a multiple of num_compositions ({self.num_compositions})")
    check(self.replay_capacity >= 2 * self.num_compositions, "replay_capacity",
          f"must hold at least two notes per composition "
          f"({2 * self.num_compositions})")

  def _validate_on_policy(self, check):
    b = self.pg_num_compositions
    check(b % self.pg_minibatches == 0, "pg_minibatches",
          f"must divide pg_num_compositions ({b})")
    if self.algorithm == "rloo":
      check(self.rloo_k >= 2, "rloo_k", "must be >= 2 (a leave-one-out "
            "baseline needs another sample)")
      check(b % self.rloo_k == 0, "pg_num_compositions",
            f"must be a multiple of rloo_k ({self.rloo_k})")
    check(self.num_notes % self.notes_per_iteration() == 0, "num_notes",
          f"must be a multiple of pg_num_compositions x num_notes_in_melody "
          f"({self.notes_per_iteration()}): an iteration composes whole "
          "compositions")


def make_tuner(config, note_rnn_model, primer=None, reward_weights=None):
  """The tuner of ``config.algorithm``: Tuner (q, psi, g, rl_only) or
  on_policy_tuning.OnPolicyTuner (ppo, rloo); the same public surface."""
  config.validate()
  if config.on_policy:
    return on_policy_tuning.OnPolicyTuner(config, note_rnn_model, primer,
                                          reward_weights)
  return Tuner(config, note_rnn_model, primer, reward_weights)


class Tuner(tuner_base.TunerBase):
  """Environment, agent, replay buffer and driver of one run (off-policy)."""

  def __init__(self, config, note_rnn_model, primer=None,
               reward_weights=None, jit_compile=True):
    """primer: None (a random note), 1-D tokens (one primer melody) or
    [N, K] tokens (each composition primed with a random row, e.g.
    melody_environment.corpus_primers); the policies get the environment's
    primer, so both networks are primed alike.

    jit_compile: compile each iteration's gradient updates with XLA (one
    program for all of them; see _update_loop). False runs the same updates
    op by op, as before; the two differ only by floating-point rounding
    (measured in benchmarks/bench_compute_bound.py)."""
    config.validate()
    self.config = config
    tf.random.set_seed(config.seed)  # Keras' initializers, if any run
    b = config.num_compositions
    self.q_network = tuner_base.copy_network(
        note_rnn_model, "q_network")
    self.target_q_network = tuner_base.copy_network(
        note_rnn_model, "target_q_network")
    self.reward_rnn = tuner_base.copy_network(
        note_rnn_model, "reward_rnn")
    self.reward_rnn.trainable = False
    # The original's G trains the prior through its target (reference 9).
    trains_prior = config.g_updates_prior and config.algorithm == "g"
    self.env = melody_environment.MelodyEnvironment(
        self.reward_rnn, b, c=config.c,
        include_log_p=targets.includes_log_p_in_reward(config.algorithm),
        num_notes_in_melody=config.num_notes_in_melody,
        random_note_max=config.random_note_max, primer=primer,
        reward_weights=reward_weights,
        terminal_discount=config.terminal_discount, seed=config.seed,
        token_reading=config.token_reading, expose_reward_state=trains_prior)
    self.notes_composed = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name="notes_composed")
    self.epsilon = exploration.LinearEpsilon(
        self.notes_composed, config.epsilon_start, config.epsilon_end,
        config.resolved_exploration_period())
    self.optimizer = tf.keras.optimizers.Adam(
        config.learning_rate * config.resolved_lr_multiplier())
    self.agent = rl_tuner_agent.RLTunerAgent(
        self.env.time_step_spec(), self.env.action_spec(), self.q_network,
        self.target_q_network, config.algorithm, self.optimizer,
        gamma=config.gamma, target_update_rate=config.target_update_rate,
        target_updates_per_train=config.minibatches_per_update,
        gradient_clip_norm=config.gradient_clip_norm,
        exploration_mode=config.exploration, epsilon=self.epsilon,
        boltzmann_temperature=config.boltzmann_temperature,
        random_note_max=config.random_note_max, primer=self.env.primer,
        seed=config.seed,
        train_step_counter=tf.Variable(0, dtype=tf.int64, trainable=False,
                                       name="train_step"),
        prior_network=self.reward_rnn if trains_prior else None)
    self.optimizer.build(self.agent.trained_variables)
    self.agent.initialize()
    # Capacity counts notes; each composition also leaves one boundary item.
    per_row = config.replay_capacity / b
    per_row *= (config.num_notes_in_melody + 1) / config.num_notes_in_melody
    self.replay_buffer = replay_buffer.SeededUniformReplayBuffer(
        self.agent.collect_data_spec, batch_size=b,
        max_length=int(math.ceil(per_row)))
    # Replay sampling's own stream, saved with the run (a resumed run draws
    # the minibatches the uninterrupted run would).
    self.replay_generator = tf.random.Generator.from_seed(
        config.seed).split(1)[0]
    self.driver = dynamic_step_driver.DynamicStepDriver(
        self.env, self.agent.collect_policy,
        observers=[self._add_to_replay], num_steps=b)
    state = self.agent.collect_policy.get_initial_state(b)
    self._policy_state = tf.Module(name="collect_policy_state")
    self._policy_state.values = [
        tf.Variable(s, trainable=False, name=f"policy_state_{i}")
        for i, s in enumerate(state)]
    # Training statistics since the last read_and_reset_train_stats().
    self._init_base()
    self._stats.loss_sum = tf.Variable(0.0, trainable=False)
    self._stats.loss_count = tf.Variable(0.0, trainable=False)
    self._stats.value_sum = tf.Variable(0.0, trainable=False)
    # What a checkpoint holds, by name (train.py checks a restore against it).
    self.checkpoint_parts = dict(
        q_network=self.q_network, target_q_network=self.target_q_network,
        reward_rnn=self.reward_rnn,
        optimizer=self.optimizer, environment=self.env.trackable,
        replay_buffer=self.replay_buffer,
        replay_generator=self.replay_generator,
        collect_generator=self.agent.collect_policy.generator,
        greedy_generator=self.agent.policy.generator,
        policy_state=self._policy_state, notes_composed=self.notes_composed,
        train_step=self.agent.train_step_counter)
    self.checkpoint = tf.train.Checkpoint(**self.checkpoint_parts)
    self._build_sample_stash()
    self.jit_compile = bool(jit_compile)
    self._update_loop_fn = tf.function(self._update_loop, autograph=False,
                                       jit_compile=self.jit_compile)

  def _add_to_replay(self, trajectory):
    """The replay observer: stores the trajectory; with
    boltzmann_store_argmax, with the policy's argmax as its action while the
    environment played the sampled note (the original's Boltzmann mode)."""
    if self.config.boltzmann_store_argmax:
      trajectory = trajectory.replace(
          action=trajectory.policy_info["greedy_action"])
    return self.replay_buffer.add_batch(trajectory)

  # -- the compiled loop ----------------------------------------------------------
  def _build_sample_stash(self):
    """Variables holding one iteration's sampled minibatches, [U, batch, 2, ...]."""
    cfg = self.config
    outer = [cfg.updates_per_iteration(), cfg.update_batch_size(), 2]
    self._stash = tf.Module(name="sample_stash")
    self._stash.values = tf.nest.map_structure(
        lambda spec: tf.Variable(tf.zeros(outer + spec.shape.as_list(),
                                          spec.dtype), trainable=False),
        self.agent.collect_data_spec)

  def _sample_minibatches(self):
    """Draws this iteration's U minibatches of 2-step items into the stash.

    One draw from the checkpointed replay generator for all U (the buffer
    does not change while training), outside XLA, so the compiled and the
    op-by-op updates train on the same items.
    """
    cfg = self.config
    items = self.replay_buffer.sample_steps(
        self.replay_generator,
        [cfg.updates_per_iteration(), cfg.update_batch_size()], num_steps=2)
    writes = [v.assign(t) for v, t in zip(
        tf.nest.flatten(self._stash.values), tf.nest.flatten(items))]
    with tf.control_dependencies(writes):
      return tf.constant(0)

  def _update_loop(self):
    """updates_per_iteration gradient updates on the stashed minibatches.

    One XLA program when jit_compile (the default): Q-network forward and
    backward, target network, clipping, Adam and the soft target update of
    all U updates fused, with no per-op dispatch.
    """
    cfg = self.config

    def body(i):
      experience = tf.nest.map_structure(lambda v: v[i], self._stash.values)
      loss_info = self.agent.train(experience)
      loss = loss_info.loss
      finite = tf.math.is_finite(loss)
      with tf.control_dependencies([
          self._stats.loss_sum.assign_add(tf.where(finite, loss, 0.0)),
          self._stats.value_sum.assign_add(
              tf.where(finite, loss_info.extra["mean_value"], 0.0)),
          self._stats.loss_count.assign_add(1.0),
          tf.cond(finite, lambda: tf.constant(True),
                  lambda: self._record_bad_loss(loss))]):
        return i + 1

    return tf.while_loop(lambda i: i < cfg.updates_per_iteration(), body,
                         [tf.constant(0)], parallel_iterations=1)[0]

  def _train_updates(self):
    """updates_per_iteration gradient updates: sample, then the compiled updates."""
    sampled = self._sample_minibatches()
    with tf.control_dependencies([sampled]):
      done = self._update_loop_fn()
    with tf.control_dependencies([done]):
      return tf.constant(True)

  def _iteration(self):
    b = self.config.num_compositions
    time_step = self.env.current_time_step()
    state = tuple(v.value() for v in self._policy_state.values)
    _, state = self.driver.run(time_step, state)
    ops = [v.assign(s) for v, s in zip(self._policy_state.values, state)]
    ops.append(self.notes_composed.assign_add(b))
    with tf.control_dependencies(ops):
      # Two items per composition are needed for a 2-step sample.
      ready = self.replay_buffer.num_frames() >= 2 * b
      return tf.cond(ready, self._train_updates, lambda: tf.constant(False))

  # -- public ---------------------------------------------------------------------
  @property
  def notes_per_iteration(self):
    return self.config.num_compositions

  def read_and_reset_stats(self):
    """Means since the last call: env stats, loss, Q(s,a), epsilon."""
    stats = {k: float(v) for k, v in self.env.read_and_reset_stats().items()}
    count = float(self._stats.loss_count.numpy())
    if count:
      stats["loss"] = float(self._stats.loss_sum.numpy()) / count
      stats["mean_q_value"] = float(self._stats.value_sum.numpy()) / count
    stats["updates"] = count
    self._stats.loss_sum.assign(0.0)
    self._stats.value_sum.assign(0.0)
    self._stats.loss_count.assign(0.0)
    if self.config.exploration == "egreedy":
      stats["epsilon"] = float(self.epsilon())
    return stats

  @property
  def num_updates(self):
    return int(self.agent.train_step_counter.numpy())
