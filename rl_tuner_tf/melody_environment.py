"""The melody-composition environment of RL Tuner, batched and in the graph.

A TF-Agents ``TFEnvironment`` that composes ``batch_size`` melodies at once,
all in lockstep (reference section 3). An episode is one composition of
``num_notes_in_melody`` (32) sixteenth-note steps:

  reset  -> prime: composition empty, beat 0, leap state cleared; the first
            observation is a random note (uniform over classes
            0..random_note_max, 36 as in the original) with the Reward RNN's
            LSTM state zero, or the last note of a primer melody with the
            Reward RNN's state after the notes before it. With a pool of
            primers (the original's 'random_midi' mode: prefixes of training
            melodies, ``corpus_primers``) each composition draws its own
            primer from the pool, in the graph, with the seeded generator.
  step(a)-> the reward for appending note ``a`` (Eq. 3), the composition
            grows by one note, and the observation becomes ``a``.
  After the 32nd note the time step is LAST; the next ``step`` primes a new
  composition (TF-Agents' automatic reset) and ignores its action.

Observation (dict):
  note          [] int32   the previous note (what the networks read next)
  reward_logits [38] f32   the frozen Reward RNN's logits at this state, so a
                           policy can form p(a|s) (G's Eq. 14) and the G
                           target can use log p(a'|s') (Eq. 13).
  reward_state  (h, c)     only with ``expose_reward_state``: the Reward RNN's
                           LSTM state that produced reward_logits (before it
                           read ``note``), so a G update can rerun the prior
                           and train it (the original code's G; reference 9).

The rules read the action through ``token_reading`` (rewards/
token_reading.py): "paper" (our encoding's meaning) or "magenta" (the original
code's swapped 0/1); the composition state they keep is in that reading.

Reward (Eq. 3):  r = log p(a|s) + r_MT(a, s) / c, log p the Reward RNN's
log-softmax at the action. With ``include_log_p=False`` (G-learning and the
RL-only baseline) r = r_MT / c: G brings log p in through its target instead.

LAST steps carry discount 1: the original stores no terminal flag, so its
targets bootstrap through the end of a composition; ``terminal_discount``
changes that.

The environment owns the frozen Reward RNN and its LSTM state, and the
rewards' ``CompositionState``. Per-rule rewards, log p and r_MT are summed
into ``stats`` variables on every step (``read_and_reset_stats`` gives their
means), so training can log them without leaving the graph.
"""
from __future__ import annotations

import collections
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

from data_pipeline import keras_setup  # noqa: F401
import numpy as np
import tensorflow as tf
from tf_agents.environments import tf_environment
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from data_pipeline import dataset
from data_pipeline import encoding
from rl_tuner_tf import note_rnn
from rl_tuner_tf import rewards
from rl_tuner_tf.rewards import token_reading as reading_lib

NUM_NOTES_IN_MELODY = 32
DEFAULT_RANDOM_NOTE_MAX = 36  # the original's draw: classes 0..36 (37 never)


def observation_spec(
    num_classes: int = encoding.NUM_CLASSES,
    reward_state_spec: Optional[Tuple[tf.TensorSpec, ...]] = None
) -> Dict[str, Union[tf.TensorSpec, Tuple[tf.TensorSpec, ...]]]:
  spec = collections.OrderedDict(
      note=tensor_spec.BoundedTensorSpec([], tf.int32, 0, num_classes - 1,
                                         name="note"),
      reward_logits=tensor_spec.TensorSpec([num_classes], tf.float32,
                                           name="reward_logits"))
  if reward_state_spec is not None:
    spec["reward_state"] = reward_state_spec
  return spec


def action_spec(num_classes: int = encoding.NUM_CLASSES
                ) -> tensor_spec.BoundedTensorSpec:
  return tensor_spec.BoundedTensorSpec([], tf.int32, 0, num_classes - 1,
                                       name="note")


def validate_primer(primer: Union[np.ndarray, Sequence[int], PrimerPool]
                    ) -> Union[np.ndarray, PrimerPool]:
  """-> int32 numpy [P] primer tokens (a PrimerPool passes), or a ValueError."""
  if isinstance(primer, PrimerPool):
    return primer
  primer = np.asarray(primer)
  if primer.ndim != 1 or primer.size == 0:
    raise ValueError(f"primer must be a non-empty 1-D token sequence, got "
                     f"shape {primer.shape}")
  if not np.issubdtype(primer.dtype, np.integer):
    raise ValueError(f"primer tokens must be integers, got {primer.dtype}")
  if primer.min() < 0 or primer.max() >= encoding.NUM_CLASSES:
    raise ValueError(f"primer tokens must be in [0, {encoding.NUM_CLASSES - 1}]"
                     f", got {primer.min()}..{primer.max()}")
  return primer.astype(np.int32)


class PrimerPool:
  """Primers [N, K]; each composition is primed with one row of them.

  ``index`` [B] is the row each current composition was primed with: the
  environment draws it at every priming and the policies read it, so the
  Q-network is primed with the same melody as the Reward RNN.
  """

  def __init__(self, prefixes, batch_size):
    prefixes = np.asarray(prefixes)
    if prefixes.ndim != 2 or 0 in prefixes.shape:
      raise ValueError(f"a primer pool must be a non-empty [N, K] array of "
                       f"tokens, got shape {prefixes.shape}")
    validate_primer(prefixes.reshape(-1))
    self.size, self.length = prefixes.shape
    self.prefixes = tf.constant(prefixes, tf.int32)
    self.index = tf.Variable(tf.zeros([batch_size], tf.int32),
                             trainable=False, name="primer_index")

  def current(self) -> tf.Tensor:
    """[B, K] the primer of each current composition."""
    return tf.gather(self.prefixes, self.index)


def corpus_primers(tfrecord_dir: str, length: int, pool_size: int,
                   split: str = "train") -> np.ndarray:
  """-> int32 [N, length]: the first ``length`` tokens of up to ``pool_size``
  melodies of ``split``, spread evenly over those at least that long."""
  if length < 1 or pool_size < 1:
    raise ValueError(f"length and pool_size must be >= 1, got {length}, "
                     f"{pool_size}")
  ds = dataset.melody_dataset(tfrecord_dir, split)
  ds = ds.filter(lambda tokens: tf.size(tokens) >= length)
  ds = ds.map(lambda long_enough: long_enough[:length])
  batches = [b.numpy() for b in ds.batch(4096)]
  if not batches:
    raise ValueError(f"no {split} melody in {tfrecord_dir} has {length} "
                     f"steps or more")
  prefixes = np.concatenate(batches)
  keep = np.unique(np.linspace(0, len(prefixes) - 1, pool_size).astype(int))
  return prefixes[keep].astype(np.int32)


def primed_state(network: note_rnn.NoteRNN,
                 primer: Optional[Union[np.ndarray, PrimerPool]],
                 batch_size: Union[int, tf.Tensor]) -> Tuple[tf.Tensor, ...]:
  """LSTM state of ``network`` after reading primer[:-1] (zero if P == 1).

  The environment (Reward RNN) and the policies (Q-network) share this, so
  both networks start a composition from the same primer (a PrimerPool: each
  composition's current one).
  """
  state = network.zero_state(batch_size)
  if primer is None:
    return state
  if isinstance(primer, PrimerPool):
    prefix = primer.current()[:, :-1]
  else:
    prefix = tf.tile(tf.constant(primer[None, :-1], tf.int32), [batch_size, 1])
  if prefix.shape[1] == 0:
    return state
  _, state = network(prefix, initial_state=state)
  return state


def task_reward(config: Any,
                reward_model: Optional[Callable[[tf.Tensor], tf.Tensor]]
                ) -> Dict[str, Any]:
  """MelodyEnvironment's task-reward arguments for a TuningConfig: whether
  r_MT is in the reward, and the reward model of r_RM with its weight."""
  parts = config.reward.split("+")
  return dict(include_r_mt="r_mt" in parts,
              sequence_reward=reward_model if "rm" in parts else None,
              sequence_reward_weight=config.reward_model_weight)


class MelodyEnvironment(tf_environment.TFEnvironment):
  """Batched in-graph melody environment (see the module docstring)."""

  def __init__(self, reward_rnn, batch_size, c=0.5, include_log_p=True,
               num_notes_in_melody=NUM_NOTES_IN_MELODY,
               random_note_max=DEFAULT_RANDOM_NOTE_MAX, primer=None,
               reward_weights=None, terminal_discount=1.0, seed=0,
               token_reading="paper", expose_reward_state=False,
               primer_group_size=1, include_r_mt=True, sequence_reward=None,
               sequence_reward_weight=1.0, name="melody_environment"):
    """Args:
      reward_rnn: a NoteRNN, used frozen (the caller passes a copy).
      batch_size: compositions composed in parallel.
      c: the paper's c in Eq. 3 (reward_scaler = 1 / c in the original).
      include_log_p: True for Q / Psi (Eq. 3), False for G and RL-only.
      random_note_max: the random priming note is uniform over 0..this.
      primer: optional 1-D tokens, which prime every composition instead,
        or [N, K] tokens (a PrimerPool is made of them; see ``primer``),
        one row of which primes each composition.
      reward_weights: {rule: weight} for r_MT (rewards.resolve_weights).
      token_reading: how the rules read tokens 0/1 ("paper" or "magenta").
      expose_reward_state: add the Reward RNN's state to the observation.
      primer_group_size: k > 1 primes compositions in consecutive groups of
        k with the same random note / pool primer (RLOO's k samples per
        primer); batch_size must be a multiple of k.
      include_r_mt: r_MT is in the reward (False: a reward model's alone;
        r_MT and each rule are still measured).
      sequence_reward: tokens [B, T] -> [B], a score of whole compositions
        (a learned reward model, r_RM), added at each composition's last
        note, times sequence_reward_weight, over c like r_MT.
    """
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not c > 0:
      raise ValueError(f"c must be > 0, got {c}")
    if num_notes_in_melody < 1:
      raise ValueError(f"num_notes_in_melody must be >= 1, got "
                       f"{num_notes_in_melody}")
    if not 0 <= random_note_max < encoding.NUM_CLASSES:
      raise ValueError(f"random_note_max must be in [0, "
                       f"{encoding.NUM_CLASSES - 1}], got {random_note_max}")
    if primer_group_size < 1 or batch_size % primer_group_size:
      raise ValueError(f"primer_group_size must be >= 1 and divide batch_size"
                       f" {batch_size}, got {primer_group_size}")
    self._group = int(primer_group_size)
    reading_lib.check_reading(token_reading)
    self._token_reading = token_reading
    self._expose_reward_state = bool(expose_reward_state)
    time_step_spec = ts.time_step_spec(observation_spec(
        reward_state_spec=(reward_rnn.state_spec() if expose_reward_state
                           else None)))
    super().__init__(time_step_spec, action_spec(), batch_size)
    self._reward_rnn = reward_rnn
    self._c = float(c)
    self._include_log_p = bool(include_log_p)
    self._num_notes = int(num_notes_in_melody)
    self._random_note_max = int(random_note_max)
    if primer is not None and np.ndim(primer) == 2:
      self._primer = PrimerPool(primer, batch_size)
    else:
      self._primer = None if primer is None else validate_primer(primer)
    self._weights = rewards.resolve_weights(reward_weights)
    self._include_r_mt = bool(include_r_mt)
    self._sequence_reward = sequence_reward
    self._sequence_reward_weight = float(sequence_reward_weight)
    self._terminal_discount = float(terminal_discount)
    self.rule_names = tuple(self._weights)
    self._module = tf.Module(name=name)  # holds the trackable state
    m = self._module
    b = batch_size
    with tf.name_scope(name):
      m.generator = tf.random.Generator.from_seed(seed)
      if isinstance(self._primer, PrimerPool):
        m.primer_index = self._primer.index
      m.step_type = tf.Variable(ts.StepType.LAST, dtype=tf.int32,
                                trainable=False, name="step_type")
      m.note = tf.Variable(tf.zeros([b], tf.int32), trainable=False,
                           name="note")
      m.reward_logits = tf.Variable(
          tf.zeros([b, encoding.NUM_CLASSES]), trainable=False,
          name="reward_logits")
      m.reward_rnn_state = [
          tf.Variable(s, trainable=False, name=f"reward_rnn_state_{i}")
          for i, s in enumerate(reward_rnn.zero_state(b))]
      if self._expose_reward_state:  # the state reward_logits came from
        m.reward_rnn_state_in = [
            tf.Variable(s, trainable=False, name=f"reward_rnn_state_in_{i}")
            for i, s in enumerate(reward_rnn.zero_state(b))]
      state = rewards.initial_state(b, self._num_notes)
      m.composition = [tf.Variable(v, trainable=False, name=f"composition_{f}")
                       for f, v in zip(state._fields, state)]
      m.last_reward = tf.Variable(tf.zeros([b]), trainable=False,
                                  name="last_reward")
      # Sums of per-note quantities since the last read_and_reset_stats().
      stat_names = ("log_p", "r_mt") + self.rule_names + (
          ("r_rm",) if sequence_reward is not None else ())
      m.stat_sums = {k: tf.Variable(0.0, trainable=False, name=f"sum_{k}")
                     for k in stat_names}
      m.stat_count = tf.Variable(0.0, trainable=False, name="stat_count")
    self._initialized = tf.Variable(False, trainable=False)
    m.initialized = self._initialized

  # -- trackable state, for checkpoints ---------------------------------------
  @property
  def trackable(self) -> tf.Module:
    """A tf.Module with every variable of the environment (for tf.train.Checkpoint)."""
    return self._module

  @property
  def c(self) -> float:
    return self._c

  @property
  def num_notes_in_melody(self) -> int:
    return self._num_notes

  @property
  def include_log_p(self) -> bool:
    return self._include_log_p

  @property
  def token_reading(self) -> str:
    return self._token_reading

  @property
  def primer(self) -> Optional[Union[np.ndarray, PrimerPool]]:
    """None, the primer tokens, or the PrimerPool (give it to the policies)."""
    return self._primer

  @property
  def random_note_max(self) -> int:
    return self._random_note_max

  # -- helpers ------------------------------------------------------------------
  def _composition_state(self):
    return rewards.CompositionState(*[v.value() for v in self._module.composition])

  def _assign_composition(self, state):
    return [v.assign(x) for v, x in zip(self._module.composition, state)]

  def _time_step(self, step_type, reward, discount):
    m = self._module
    b = self.batch_size
    observation = collections.OrderedDict(
        note=m.note.value(), reward_logits=m.reward_logits.value())
    if self._expose_reward_state:
      observation["reward_state"] = tuple(
          v.value() for v in m.reward_rnn_state_in)
    return ts.TimeStep(
        step_type=tf.fill([b], step_type),
        reward=reward,
        discount=tf.fill([b], tf.cast(discount, tf.float32)),
        observation=observation)

  def _assign_reward_rnn_state(self, state_in, state_out):
    """The Reward RNN read a note from state_in and is now in state_out."""
    m = self._module
    ops = [v.assign(s) for v, s in zip(m.reward_rnn_state, state_out)]
    if self._expose_reward_state:
      ops += [v.assign(s) for v, s in zip(m.reward_rnn_state_in, state_in)]
    return ops

  def _prime(self):
    """Start new compositions; returns the FIRST time step."""
    m = self._module
    b = self.batch_size
    ops = []
    draws = b // self._group

    def grouped(x):  # each draw primes k consecutive compositions
      return x if self._group == 1 else tf.repeat(x, self._group)

    if self._primer is None:
      note = grouped(m.generator.uniform(
          [draws], 0, self._random_note_max + 1, tf.int32))
    elif isinstance(self._primer, PrimerPool):
      index = grouped(m.generator.uniform([draws], 0, self._primer.size,
                                          tf.int32))
      note = tf.gather(self._primer.prefixes, index)[:, -1]
      ops.append(self._primer.index.assign(index))
    else:
      note = tf.fill([b], tf.constant(self._primer[-1], tf.int32))
    with tf.control_dependencies(ops):  # primed_state reads the new index
      state = primed_state(self._reward_rnn, self._primer, b)
    # Run the Reward RNN on the priming note now: its logits at this state
    # go into the observation, its new state waits for the next note.
    logits, new_state = self._reward_rnn.step(note, state)
    ops += [m.note.assign(note), m.reward_logits.assign(logits),
            m.step_type.assign(ts.StepType.FIRST),
            m.last_reward.assign(tf.zeros([b])),
            self._initialized.assign(True)]
    ops += self._assign_reward_rnn_state(state, new_state)
    ops += self._assign_composition(rewards.initial_state(b, self._num_notes))
    with tf.control_dependencies(ops):
      return self._time_step(ts.StepType.FIRST, tf.zeros([b]), 1.0)

  # -- TFEnvironment -------------------------------------------------------------
  def _current_time_step(self):
    def existing():
      m = self._module
      step_type = m.step_type.value()
      discount = tf.where(tf.equal(step_type, ts.StepType.LAST),
                          self._terminal_discount, 1.0)
      return self._time_step(step_type, m.last_reward.value(), discount)
    return tf.cond(self._initialized, existing, self._prime)

  def _reset(self):
    return self._prime()

  def _step(self, action):
    action = tf.convert_to_tensor(action, tf.int32)
    return tf.cond(
        tf.logical_or(
            tf.logical_not(self._initialized),
            tf.equal(self._module.step_type, ts.StepType.LAST)),
        self._prime, lambda: self._compose(action))

  def _compose(self, action):
    """Appends ``action`` to every composition; returns the new time step."""
    m = self._module
    # Eq. 3, first term: log p(a|s) = Reward-RNN logit of a - logsumexp(logits).
    log_p_all = tf.nn.log_softmax(m.reward_logits, axis=-1)
    log_p = tf.gather(log_p_all, action, axis=1, batch_dims=1)
    r_mt, per_rule, new_state = rewards.music_theory_reward(
        self._composition_state(),
        reading_lib.rule_view(action, self._token_reading), self._weights)
    done = tf.greater_equal(new_state.beat, self._num_notes)
    # The composition state holds the rules' view of the tokens; the reward
    # model reads them in the encoding it was trained on (the swap of the
    # magenta reading is its own inverse).
    r_rm = self._r_rm(
        reading_lib.rule_view(new_state.notes, self._token_reading), done)
    # Eq. 3: r = log p(a|s) + r_MT(a, s) / c   (G / RL-only: r_MT / c alone);
    # with a reward model, + w r_RM / c at a composition's last note.
    task = (r_mt if self._include_r_mt else tf.zeros_like(r_mt)) + r_rm
    reward = task / self._c
    if self._include_log_p:
      reward = log_p + reward
    rnn_state_in = tuple(v.value() for v in m.reward_rnn_state)
    logits, rnn_state = self._reward_rnn.step(action, rnn_state_in)
    step_type = tf.where(done, ts.StepType.LAST, ts.StepType.MID)
    discount = tf.where(done, self._terminal_discount, 1.0)
    ops = [m.note.assign(action), m.reward_logits.assign(logits),
           m.step_type.assign(step_type), m.last_reward.assign(reward)]
    ops += self._assign_reward_rnn_state(rnn_state_in, rnn_state)
    ops += self._assign_composition(new_state)
    ops += [m.stat_sums["log_p"].assign_add(tf.reduce_sum(log_p)),
            m.stat_sums["r_mt"].assign_add(tf.reduce_sum(r_mt)),
            m.stat_count.assign_add(float(self.batch_size))]
    ops += [m.stat_sums[k].assign_add(tf.reduce_sum(v))
            for k, v in per_rule.items() if k in m.stat_sums]
    if "r_rm" in m.stat_sums:
      ops.append(m.stat_sums["r_rm"].assign_add(tf.reduce_sum(r_rm)))
    with tf.control_dependencies(ops):
      return self._time_step(step_type, tf.identity(reward), discount)

  def _r_rm(self, notes: tf.Tensor, done: tf.Tensor) -> tf.Tensor:
    """[B]: w r_RM(notes) when the compositions end (``done``: they advance
    in lockstep, so the reward model runs only at their last note), else 0."""
    zeros = tf.zeros([self.batch_size], tf.float32)
    if self._sequence_reward is None:
      return zeros
    r_rm = tf.cond(done, lambda: self._sequence_reward_weight * tf.cast(
        self._sequence_reward(notes), tf.float32), lambda: zeros)
    r_rm.set_shape([self.batch_size])
    return r_rm

  # -- logging -------------------------------------------------------------------
  def read_and_reset_stats(self) -> Dict[str, tf.Tensor]:
    """{name: mean per note since the last call} (log_p, r_mt, each rule)."""
    m = self._module
    count = tf.maximum(m.stat_count.value(), 1.0)
    means = {k: v.value() / count for k, v in m.stat_sums.items()}
    means["notes"] = m.stat_count.value()
    with tf.control_dependencies(list(means.values())):
      resets = [v.assign(0.0) for v in m.stat_sums.values()]
      resets.append(m.stat_count.assign(0.0))
    with tf.control_dependencies(resets):
      return {k: tf.identity(v) for k, v in means.items()}

  def composition(self) -> tf.Tensor:
    """[B, num_notes] the compositions so far as the rules read them (entries
    >= beat unused)."""
    fields = rewards.CompositionState._fields
    return self._module.composition[fields.index("notes")].value()
