"""TF-Agents policies of the tuned melody models.

A ``MelodyPolicy`` runs the Q / Psi / G network (a NoteRNN) one step on the
previous note from its LSTM state (the policy state), and turns the outputs
into a choice of note with ``melody_policy.policy_logits``:

  q, rl_only : a = argmax_a Q(s, a)                      (Eq. 5)
  psi        : a ~ pi(a|s) = softmax(Psi(s, .))          (Eq. 12)
  g          : a ~ pi(a|s) ∝ p(a|s) exp(G(s, a))         (Eq. 14)

``greedy=True`` always takes the argmax of those logits (what epsilon-greedy
exploration falls back to); ``greedy=False`` samples from their softmax.

Policy state: the network's LSTM state. At a FIRST time step (a new
composition) it is reset to the primed state: zero for a random priming note,
or the state after reading the primer melody's notes before its last one --
the same priming as the environment's Reward RNN.

Policy info: ``q_state``, the LSTM state *before* the step, which the replay
buffer stores so training can rerun the network from it (reference section 3);
subclasses add their own entries (``extra_info``).
Randomness comes from a seeded, checkpointed ``tf.random.Generator``.
"""
from typing import Dict, Sequence, Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.policies import tf_policy
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from rl_tuner_tf import algorithms
from rl_tuner_tf import melody_environment
from rl_tuner_tf import melody_policy

def default_greedy(kind: str) -> bool:
  """Q and RL-only act greedily (Eq. 5); Psi and G sample (Eq. 12 / 14):
  each algorithm's ``greedy`` (algorithms.py)."""
  return algorithms.get(kind).greedy


class MelodyPolicy(tf_policy.TFPolicy):
  """Chooses the next note from the Q / Psi / G network's outputs."""

  def __init__(self, time_step_spec, action_spec, q_network, kind,
               greedy=None, primer=None, seed=0, name=None):
    melody_policy.check_algorithm(kind)
    state_spec = q_network.state_spec()
    info_spec = {"q_state": state_spec}
    info_spec.update(self.extra_info_spec(action_spec))
    super().__init__(
        time_step_spec, action_spec, policy_state_spec=state_spec,
        info_spec=info_spec, clip=False,
        automatic_state_reset=False, name=name)
    self._q_network = q_network
    self._kind = kind
    self._greedy = default_greedy(kind) if greedy is None else bool(greedy)
    self._primer = (None if primer is None
                    else melody_environment.validate_primer(primer))
    self._generator = tf.random.Generator.from_seed(seed)

  @property
  def kind(self) -> str:
    return self._kind

  @property
  def generator(self) -> tf.random.Generator:
    return self._generator

  def _get_initial_state(self, batch_size):
    return melody_environment.primed_state(self._q_network, self._primer,
                                           batch_size)

  def _reset_at_first(self, time_step, policy_state):
    """The primed state where a composition starts, the given state elsewhere."""
    is_first = time_step.is_first()

    def reset():
      initial = self._get_initial_state(tf.shape(is_first)[0])
      return tuple(tf.where(is_first[:, None], i, s)
                   for i, s in zip(initial, policy_state))
    return tf.cond(tf.reduce_any(is_first), reset,
                   lambda: tuple(tf.identity(s) for s in policy_state))

  def logits_and_state(
      self, time_step: ts.TimeStep, policy_state: Sequence[tf.Tensor]
  ) -> Tuple[tf.Tensor, Tuple[tf.Tensor, ...], Tuple[tf.Tensor, ...]]:
    """-> (policy logits [B, 38], state before, state after)."""
    state = self._reset_at_first(time_step, tuple(policy_state))
    observation = time_step.observation
    values, new_state = self._q_network.step(observation["note"], state)
    logits = melody_policy.policy_logits(self._kind, values,
                                         observation["reward_logits"])
    return logits, state, new_state

  def extra_info_spec(self, action_spec: tf.TensorSpec
                      ) -> Dict[str, tf.TensorSpec]:
    """Specs of the entries ``extra_info`` adds to the policy info."""
    del action_spec
    return {}

  def extra_info(self, logits: tf.Tensor) -> Dict[str, tf.Tensor]:
    """More policy info from this step's logits (see extra_info_spec)."""
    del logits
    return {}

  def _select(self, logits, time_step):
    del time_step
    if self._greedy:
      return tf.argmax(logits, axis=-1, output_type=tf.int32)
    return sample_from_logits(self._generator, logits)

  def _action(self, time_step, policy_state, seed=None):
    del seed  # randomness comes from self._generator
    logits, state, new_state = self.logits_and_state(time_step, policy_state)
    action = self._select(logits, time_step)
    return policy_step.PolicyStep(action, new_state,
                                  {"q_state": state, **self.extra_info(logits)})

  def _distribution(self, time_step, policy_state):
    logits, state, new_state = self.logits_and_state(time_step, policy_state)
    if self._greedy:
      dist = tfp.distributions.Deterministic(
          tf.argmax(logits, axis=-1, output_type=tf.int32))
    else:
      dist = tfp.distributions.Categorical(logits=logits, dtype=tf.int32)
    return policy_step.PolicyStep(dist, new_state,
                                  {"q_state": state, **self.extra_info(logits)})


def sample_from_logits(generator: tf.random.Generator,
                       logits: tf.Tensor) -> tf.Tensor:
  """One sample per row of softmax(logits), from a tf.random.Generator."""
  seeds = generator.make_seeds(1)[:, 0]
  return tf.random.stateless_categorical(
      logits, 1, seed=seeds, dtype=tf.int32)[:, 0]
