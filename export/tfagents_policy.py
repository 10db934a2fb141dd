"""The tuned melody model as a TF-Agents ``TFPolicy``, and its PolicySaver export.

Observation: the previous note, an int32 class in [0, 38) (reference section
3: "state = previous note + LSTM state of the Q-network + LSTM state of the
Reward RNN"). Policy state: ``{"q_network": (h_0, c_0, ...), "reward_rnn":
(h_0, c_0, ...)}`` (a bare Note RNN has only ``"reward_rnn"``). Action: the
next note, drawn from softmax(policy_logits / temperature) — Eq. 5 (sampled),
12 or 14 via ``melody_policy.policy_logits`` — or, wrapped in TF-Agents'
``GreedyPolicy``, its argmax.

TF-Agents resets the policy state to zeros on ``time_step.is_first()``
(``automatic_state_reset``), so an episode starts like the RL Tuner's
composition: zero LSTM state, a first observation that is the primer note.
"""
from typing import Any, Mapping, Optional, Tuple, TYPE_CHECKING

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.policies import greedy_policy
from tf_agents.policies import policy_saver
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from data_pipeline.encoding import NUM_CLASSES
from export import versioning
from rl_tuner_tf import melody_policy

if TYPE_CHECKING:
  from rl_tuner_tf import note_rnn


def observation_spec() -> tensor_spec.BoundedTensorSpec:
  return tensor_spec.BoundedTensorSpec(
      [], tf.int32, minimum=0, maximum=NUM_CLASSES - 1, name="previous_note")


def action_spec() -> tensor_spec.BoundedTensorSpec:
  return tensor_spec.BoundedTensorSpec(
      [], tf.int32, minimum=0, maximum=NUM_CLASSES - 1, name="note")


class _Networks:
  """A plain (not tf.Module-tracked) holder of the Keras networks."""

  def __init__(self, q_network, reward_rnn):
    self.q_network = q_network
    self.reward_rnn = reward_rnn


class MelodyPolicy(tf_policy.TFPolicy):
  """Q / Psi / G network step + Reward RNN step -> distribution over notes."""

  def __init__(self, kind: str, reward_rnn: "note_rnn.NoteRNN",
               q_network: Optional["note_rnn.NoteRNN"] = None,
               temperature: float = 1.0, name: str = "melody_policy") -> None:
    melody_policy.check_model_kind(kind)
    if (kind == "note_rnn") != (q_network is None):
      raise ValueError("kind 'note_rnn' takes no q_network; tuned kinds need one")
    if not temperature > 0:
      raise ValueError(f"temperature must be > 0 (use GreedyPolicy for argmax), "
                       f"got {temperature}")
    self._kind = kind
    # Networks held outside tf.Module tracking, their variables tracked: the
    # PolicySaver export then stores the variables without Keras' own saved
    # call graphs (several times faster to write).
    self._nets = _Networks(q_network, reward_rnn)
    self._network_variables = [
        v for net in (q_network, reward_rnn) if net is not None
        for v in net.variables]
    self._temperature = float(temperature)
    state_spec = {"reward_rnn": reward_rnn.state_spec()}
    if q_network is not None:
      state_spec["q_network"] = q_network.state_spec()
    super().__init__(
        ts.time_step_spec(observation_spec()), action_spec(),
        policy_state_spec=state_spec, name=name)

  @property
  def kind(self) -> str:
    return self._kind

  def _variables(self):
    return list(self._network_variables)

  def _distribution(self, time_step, policy_state):
    previous_note = time_step.observation
    reward_logits, reward_state = self._nets.reward_rnn.step(
        previous_note, policy_state["reward_rnn"])
    new_state = {"reward_rnn": tuple(reward_state)}
    if self._nets.q_network is None:
      action_values = reward_logits
    else:
      action_values, q_state = self._nets.q_network.step(
          previous_note, policy_state["q_network"])
      new_state["q_network"] = tuple(q_state)
    logits = melody_policy.policy_logits(self._kind, action_values, reward_logits)
    distribution = tfp.distributions.Categorical(
        logits=logits / self._temperature, dtype=tf.int32)
    return policy_step.PolicyStep(distribution, new_state, ())


def build_policy(kind: str, reward_rnn: "note_rnn.NoteRNN",
                 q_network: Optional["note_rnn.NoteRNN"] = None,
                 greedy: bool = False, temperature: float = 1.0
                 ) -> tf_policy.TFPolicy:
  policy = MelodyPolicy(kind, reward_rnn, q_network, temperature=temperature)
  return greedy_policy.GreedyPolicy(policy) if greedy else policy


def save_policy(policy: tf_policy.TFPolicy, base_path: str,
                metadata: Optional[Mapping[str, Any]] = None
                ) -> Tuple[int, str]:
  """PolicySaver export as a new version under ``base_path`` -> (version, path)."""
  saver = policy_saver.PolicySaver(
      policy, batch_size=None,
      metadata={k: tf.Variable(v) for k, v in (metadata or {}).items()})
  return versioning.save_new_version(base_path, saver.save)
