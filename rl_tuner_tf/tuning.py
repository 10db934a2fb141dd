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
from typing import Any, Callable, Dict, Optional, Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf
from tf_agents.drivers import dynamic_step_driver

from rl_tuner_tf import algorithms
from rl_tuner_tf import configuration
from rl_tuner_tf import melody_environment
from rl_tuner_tf import on_policy_tuning
from rl_tuner_tf import tuner_base
from rl_tuner_tf.agents import exploration
from rl_tuner_tf.agents import replay_buffer
from rl_tuner_tf.agents import rl_tuner_agent
from rl_tuner_tf.rewards import token_reading
from rl_tuner_tf.rewards.music_theory import FIGURE2_R_MT


ConfigError = configuration.ConfigError
_setting = configuration.setting
# The task reward: the rules, a learned reward model's score, or both.
REWARDS = ("r_mt", "rm", "r_mt+rm")


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig(configuration.Values):
  """Q, Psi, G and RL-only (the paper's deep Q-learning, section 3)."""
  learning_rate: float = _setting(
      1e-3, "Adam learning rate for one paper-sized minibatch (Adam's "
      "default, as the original).", check=configuration.positive)
  lr_multiplier: Optional[float] = _setting(
      None, "Learning-rate multiplier for merged updates (default "
      "sqrt(minibatches_per_update)).",
      check=configuration.optional(configuration.positive))
  target_update_rate: float = _setting(
      0.01, "Soft target update eta per paper minibatch.",
      check=configuration.in_range(0, 1, open_low=True))
  minibatch_size: int = _setting(32, "Transitions per paper minibatch.",
                                 check=configuration.positive_int)
  train_every_n_notes: int = _setting(
      5, "One paper minibatch per this many notes.",
      check=configuration.positive_int)
  minibatches_per_update: int = _setting(
      1, "Paper minibatches merged into one gradient update (1 = the "
      "paper's exact schedule).", check=configuration.positive_int)
  replay_capacity: int = _setting(100_000, "Replay memory size in "
                                  "transitions.",
                                  check=configuration.positive_int)
  exploration: str = _setting("egreedy", "Exploration mode.",
                              choices=exploration.MODES)
  exploration_period: Optional[int] = _setting(
      None, "Notes over which epsilon anneals (default num_notes/2).",
      check=configuration.optional(configuration.positive_int))
  epsilon_start: float = _setting(1.0, "Initial epsilon.",
                                  check=configuration.in_range(0, 1))
  epsilon_end: float = _setting(0.1, "Final epsilon.",
                                check=configuration.in_range(0, 1))
  boltzmann_temperature: float = _setting(
      1.0, "Softmax temperature of Boltzmann exploration.",
      check=configuration.positive)
  num_compositions: int = _setting(400, "Compositions composed in parallel.",
                                   check=configuration.positive_int)
  g_updates_prior: bool = _setting(
      False, "G-learning's target trains the Reward RNN (the prior), as the "
      "original code did; the paper's prior is fixed.")
  boltzmann_store_argmax: bool = _setting(
      False, "With --exploration=boltzmann, store the argmax note in replay "
      "while the sampled note is played (the original).")

  def _validate(self):
    if self.boltzmann_store_argmax and self.exploration != "boltzmann":
      raise ConfigError("boltzmann_store_argmax",
                        "needs --exploration=boltzmann")

  def resolved_lr_multiplier(self) -> float:
    if self.lr_multiplier is None:
      return math.sqrt(self.minibatches_per_update)
    return self.lr_multiplier

  def updates_per_iteration(self) -> int:
    return self.num_compositions // (self.train_every_n_notes *
                                     self.minibatches_per_update)

  def update_batch_size(self) -> int:
    return self.minibatch_size * self.minibatches_per_update


@dataclasses.dataclass(frozen=True)
class OnPolicyConfig(configuration.Values):
  """What PPO and RLOO share (on_policy_tuning.py; not from the paper:
  sensible defaults of their literature, PPO and TRL's PPO / RLOO)."""
  PREFIX = "pg_"
  num_compositions: int = _setting(
      250, "ppo/rloo: whole compositions composed per iteration.",
      check=configuration.positive_int)
  learning_rate: float = _setting(3e-4, "ppo/rloo: Adam learning rate.",
                                  check=configuration.positive)
  epochs: int = _setting(4, "ppo/rloo: passes over each batch of "
                         "compositions.", check=configuration.positive_int)
  minibatches: int = _setting(5, "ppo/rloo: minibatches (Adam steps) per "
                              "pass.", check=configuration.positive_int)
  clip: float = _setting(0.2, "ppo/rloo: clip range epsilon of the "
                         "probability ratio (PG-5).",
                         check=configuration.positive)

  def _validate(self):
    if self.num_compositions % self.minibatches:
      raise ConfigError("pg_minibatches", f"must divide pg_num_compositions "
                        f"({self.num_compositions}) (got {self.minibatches})")


@dataclasses.dataclass(frozen=True)
class PPOConfig(configuration.Values):
  """PPO's own settings."""
  gae_lambda: float = _setting(0.95, "ppo: GAE lambda (PG-4).",
                               check=configuration.in_range(0, 1))


@dataclasses.dataclass(frozen=True)
class RLOOConfig(configuration.Values):
  """RLOO's own settings."""
  PREFIX = "rloo_"
  k: int = _setting(5, "rloo: compositions per primer (leave-one-out "
                    "baseline, PG-7).", check=configuration.positive_int)


@dataclasses.dataclass(frozen=True)
class DPOConfig(configuration.Values):
  """DPO's settings (dpo_tuning.py)."""
  PREFIX = "dpo_"
  preferences: Optional[str] = _setting(
      None, "dpo: the rated pairs it learns from (a preference file, "
      "rl_tuner_tf/preferences.py).")
  beta: float = _setting(0.1, "dpo: beta, the KL weight (DPO-1).",
                         check=configuration.positive)
  learning_rate: float = _setting(1e-3, "dpo: Adam learning rate.",
                                  check=configuration.positive)
  batch_size: int = _setting(125, "dpo: rated pairs per Adam step (125: "
                             "the default 1,000,000 notes are 125 steps of "
                             "2 x 125 x 32 notes).",
                             check=configuration.positive_int)


@dataclasses.dataclass(frozen=True)
class TuningConfig(configuration.Values):
  """One tuning run. Defaults are the paper's; the original code's values,
  where they differ, are noted (reference sections 3-5 and 9). Each leaf is a
  setting of ``python -m rl_tuner_tf.train`` and a key of config.json."""
  algorithm: str = _setting("q", "The algorithm: q, psi, g, rl_only "
                            "(off-policy, the paper's), ppo, rloo "
                            "(on-policy), or one registered in "
                            "rl_tuner_tf/algorithms.py.",
                            check=lambda name: None if name in
                            algorithms.names() else "must be one of " +
                            ", ".join(algorithms.names()))
  num_notes: int = _setting(1_000_000, "Notes composed (training steps).",
                            check=configuration.positive_int)
  c: float = _setting(0.5, "Eq. 3's c: r = log p(a|s) + r_MT/c (the "
                      "original's reward_scaler 0.1 is c = 10).",
                      check=configuration.positive)
  gamma: float = _setting(0.5, "Discount (paper and original script 0.5; "
                          "the original library default 0.95).",
                          check=configuration.in_range(0, 1))
  num_notes_in_melody: int = _setting(32, "Steps per composition.",
                                      check=configuration.positive_int)
  random_note_max: int = _setting(
      36, "Random priming note drawn from 0..this (36 as the original; 37 "
      "for every class).", check=configuration.in_range(0, 37))
  terminal_discount: float = _setting(
      1.0, "Discount at a composition's last note (1: bootstrap through it, "
      "as the original).", check=configuration.in_range(0, 1))
  seed: int = _setting(0, "Random seed (one run).")
  token_reading: str = _setting(
      "paper", "How the rules read tokens 0/1: paper (0 note-off, 1 "
      "no-event, as the Note RNN was trained) or magenta (the original "
      "code's swapped reading).", choices=token_reading.READINGS)
  figure2_r_mt: str = _setting(
      "mean", "Figure 2's r_MT: mean per note, or each melody's last note "
      "(the original's evaluation).", choices=FIGURE2_R_MT)
  gradient_clip_norm: float = _setting(
      5.0, "Each gradient is clipped to this norm (0: off); every "
      "algorithm.", check=configuration.non_negative)
  reward_weights: Dict[str, float] = _setting(
      default_factory=dict, help="Weights of r_MT's rules as rule=weight,... "
      "(1 for a rule not named; rules: rewards.rule_names(), those of "
      "--reward_modules included).")
  reward_modules: Tuple[str, ...] = _setting(
      default_factory=tuple, help="Python modules (dotted names or .py "
      "files) whose import registers reward rules (rewards.register_reward);"
      " r_MT sums them with the built-in rules.")
  reward: str = _setting(
      "r_mt", "What the task reward is: r_mt (the music-theory rules), rm "
      "(a learned reward model's score of each whole composition, r_RM, at "
      "its last note) or r_mt+rm (both); over c, beside the same KL to the "
      "Note RNN.", choices=REWARDS)
  reward_model_dir: Optional[str] = _setting(
      None, "The reward model of --reward=rm or r_mt+rm (the model/ folder "
      "python -m rl_tuner_tf.train_reward_model writes).")
  reward_model_weight: float = _setting(
      1.0, "Weight of r_RM in the task reward.", check=configuration.positive)
  off_policy: OffPolicyConfig = _setting(default_factory=OffPolicyConfig)
  pg: OnPolicyConfig = _setting(default_factory=OnPolicyConfig)
  ppo: PPOConfig = _setting(default_factory=PPOConfig)
  rloo: RLOOConfig = _setting(default_factory=RLOOConfig)
  dpo: DPOConfig = _setting(default_factory=DPOConfig)

  @classmethod
  def of(cls, **settings: Any) -> "TuningConfig":
    """TuningConfig.of(algorithm="ppo", pg_epochs=2): from flat settings."""
    return cls.from_settings(settings)

  @property
  def is_on_policy(self) -> bool:
    return algorithms.get(self.algorithm).on_policy

  def own_tuner(self) -> Optional[type]:
    """The tuner class of an algorithm not run by ``Tuner`` (PPO, RLOO,
    DPO: on_policy_tuning.TUNERS), else None."""
    if not self.is_on_policy:
      return None
    return on_policy_tuning.TUNERS.get(self.algorithm)

  def notes_per_iteration(self) -> int:
    """Notes one ``run`` iteration composes or reads (the runner's unit)."""
    if self.own_tuner() is not None:
      return self.own_tuner().iteration_notes(self)
    if self.is_on_policy:
      return self.pg.num_compositions * self.num_notes_in_melody
    return self.off_policy.num_compositions

  def schedule(self) -> str:
    """One line: what an iteration does (the runner prints it)."""
    if self.own_tuner() is not None:
      return self.own_tuner().schedule(self)
    off = self.off_policy
    return (f"{off.num_compositions} compositions in parallel, "
            f"{off.updates_per_iteration()} updates of "
            f"{off.update_batch_size()} transitions per "
            f"{off.num_compositions} notes")

  def resolved_exploration_period(self) -> int:
    if self.off_policy.exploration_period is None:
      return max(1, self.num_notes // 2)
    return self.off_policy.exploration_period

  @property
  def uses_reward_model(self) -> bool:
    return "rm" in self.reward.split("+")

  def _validate(self):
    if self.uses_reward_model and not self.reward_model_dir:
      raise ConfigError("reward_model_dir", f"is needed by --reward="
                        f"{self.reward} (a trained reward model's model/)")
    if self.reward_model_dir and not self.uses_reward_model:
      raise ConfigError("reward_model_dir", "is only used with --reward=rm "
                        "or r_mt+rm")
    for rule, weight in self.reward_weights.items():
      if not math.isfinite(weight):
        raise ConfigError("reward_weights",
                          f"{rule}'s weight must be finite (got {weight})")
    if self.is_on_policy:
      if self.own_tuner() is not None:
        self.own_tuner().check_config(self)
      if self.num_notes % self.notes_per_iteration():
        raise ConfigError(
            "num_notes", f"must be a multiple of the notes an iteration "
            f"composes or reads ({self.notes_per_iteration()}: "
            f"{self.schedule()}; got {self.num_notes})")
      return
    off = self.off_policy
    per = off.train_every_n_notes * off.minibatches_per_update
    if off.num_compositions % per:
      raise ConfigError(
          "num_compositions", "must be a multiple of train_every_n_notes * "
          f"minibatches_per_update = {per}, so that every note's share of "
          f"training is taken (got {off.num_compositions})")
    if self.num_notes % off.num_compositions:
      raise ConfigError("num_notes", f"must be a multiple of num_compositions"
                        f" ({off.num_compositions}) (got {self.num_notes})")
    if off.replay_capacity < 2 * off.num_compositions:
      raise ConfigError("replay_capacity", "must hold at least two notes per"
                        f" composition ({2 * off.num_compositions}) (got "
                        f"{off.replay_capacity})")


def make_tuner(config: "TuningConfig", note_rnn_model: tf.keras.Model,
               primer: Any = None,
               reward_weights: Optional[Dict[str, float]] = None,
               reward_model: Optional[Callable[[tf.Tensor], tf.Tensor]] = None
               ) -> tuner_base.TunerBase:
  """The tuner of ``config.algorithm``: Tuner (every off-policy algorithm)
  or the method's own (on_policy_tuning.TUNERS: PPOTuner, RLOOTuner,
  DPOTuner);
  the same public surface. reward_model: tokens [B, T] -> r_RM [B], for
  config.reward rm / r_mt+rm (reward_model.load_model)."""
  if config.uses_reward_model and reward_model is None:
    raise ConfigError("reward_model_dir", f"--reward={config.reward} needs "
                      "the reward model itself (reward_model.load_model)")
  if config.is_on_policy:
    tuner = on_policy_tuning.TUNERS.get(config.algorithm)
    if tuner is None:
      raise ConfigError("algorithm", f"no on-policy tuner runs "
                        f"{config.algorithm!r} (on_policy_tuning.TUNERS: "
                        f"{', '.join(on_policy_tuning.TUNERS)})")
    return tuner(config, note_rnn_model, primer, reward_weights,
                 reward_model=reward_model)
  return Tuner(config, note_rnn_model, primer, reward_weights,
               reward_model=reward_model)


class Tuner(tuner_base.TunerBase):
  """Environment, agent, replay buffer and driver of one run (off-policy)."""

  def __init__(self, config, note_rnn_model, primer=None,
               reward_weights=None, jit_compile=True, reward_model=None):
    """primer: None (a random note), 1-D tokens (one primer melody) or
    [N, K] tokens (each composition primed with a random row, e.g.
    melody_environment.corpus_primers); the policies get the environment's
    primer, so both networks are primed alike.

    jit_compile: compile each iteration's gradient updates with XLA (one
    program for all of them; see _update_loop). False runs the same updates
    op by op, as before; the two differ only by floating-point rounding
    (measured in benchmarks/bench_compute_bound.py)."""
    off = config.off_policy  # this tuner's own settings
    self.config = config
    tf.random.set_seed(config.seed)  # Keras' initializers, if any run
    b = off.num_compositions
    self.q_network = tuner_base.copy_network(
        note_rnn_model, "q_network")
    self.target_q_network = tuner_base.copy_network(
        note_rnn_model, "target_q_network")
    self.reward_rnn = tuner_base.copy_network(
        note_rnn_model, "reward_rnn")
    self.reward_rnn.trainable = False
    # The original's G trains the prior through its target (reference 9).
    spec = algorithms.get(config.algorithm)
    trains_prior = off.g_updates_prior and spec.target_reads_prior
    self.env = melody_environment.MelodyEnvironment(
        self.reward_rnn, b, c=config.c,
        include_log_p=spec.log_p_in_reward,
        num_notes_in_melody=config.num_notes_in_melody,
        random_note_max=config.random_note_max, primer=primer,
        reward_weights=reward_weights,
        terminal_discount=config.terminal_discount, seed=config.seed,
        token_reading=config.token_reading, expose_reward_state=trains_prior,
        **melody_environment.task_reward(config, reward_model))
    self.notes_composed = tf.Variable(0, dtype=tf.int64, trainable=False,
                                      name="notes_composed")
    self.epsilon = exploration.LinearEpsilon(
        self.notes_composed, off.epsilon_start, off.epsilon_end,
        config.resolved_exploration_period())
    self.optimizer = tf.keras.optimizers.Adam(
        off.learning_rate * off.resolved_lr_multiplier())
    self.agent = rl_tuner_agent.RLTunerAgent(
        self.env.time_step_spec(), self.env.action_spec(), self.q_network,
        self.target_q_network, config.algorithm, self.optimizer,
        gamma=config.gamma, target_update_rate=off.target_update_rate,
        target_updates_per_train=off.minibatches_per_update,
        gradient_clip_norm=config.gradient_clip_norm,
        exploration_mode=off.exploration, epsilon=self.epsilon,
        boltzmann_temperature=off.boltzmann_temperature,
        random_note_max=config.random_note_max, primer=self.env.primer,
        seed=config.seed,
        train_step_counter=tf.Variable(0, dtype=tf.int64, trainable=False,
                                       name="train_step"),
        prior_network=self.reward_rnn if trains_prior else None)
    self.optimizer.build(self.agent.trained_variables)
    self.agent.initialize()
    # Capacity counts notes; each composition also leaves one boundary item.
    per_row = off.replay_capacity / b
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
    if self.config.off_policy.boltzmann_store_argmax:
      trajectory = trajectory.replace(
          action=trajectory.policy_info["greedy_action"])
    return self.replay_buffer.add_batch(trajectory)

  # -- the compiled loop ----------------------------------------------------------
  def _build_sample_stash(self):
    """Variables holding one iteration's sampled minibatches, [U, batch, 2, ...]."""
    cfg = self.config.off_policy
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
    cfg = self.config.off_policy
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
    cfg = self.config.off_policy

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
    b = self.config.off_policy.num_compositions
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
  def notes_per_iteration(self) -> int:
    return self.config.off_policy.num_compositions

  def read_and_reset_stats(self) -> Dict[str, float]:
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
    if self.config.off_policy.exploration == "egreedy":
      stats["epsilon"] = float(self.epsilon())
    return stats

  @property
  def num_updates(self) -> int:
    return int(self.agent.train_step_counter.numpy())
