"""The tuning algorithms, registered by name: each one's reward, target and
policy, in one place (paper section 3; reference section 4).

  name     reward r (the environment's)  target y (off-policy)                 policy pi(a|s)
  q        log p(a|s) + r_MT/c  (Eq. 3)   r + g max_a' Q-(s',a')      (Eq. 4)   argmax Q (Eq. 5); sampled: softmax Q
  psi      log p(a|s) + r_MT/c  (Eq. 3)   r + g logsumexp Psi-(s',.)  (Eq. 11)  softmax Psi                  (Eq. 12)
  g        r_MT/c                          r + g logsumexp (log p + G-) (Eq. 13)  p(a|s) exp G  = softmax(log p + G) (Eq. 14)
  rl_only  r_MT/c                          as q                        (Eq. 4)   as q
  ppo      r_MT/c - KL to the prior (PG-1) none (on-policy, PG-2..PG-5)          softmax of the policy network
  rloo     as ppo                          none (on-policy, PG-6, PG-7)          as ppo
  dpo      none: rated pairs (DPO-1)       none (dpo_tuning.py)                  as ppo

An ``Algorithm`` names its tuner kind (off-policy: tuning.Tuner with replay
and ``target``; on-policy: on_policy_tuning's PPOTuner and RLOOTuner), whether Eq. 3's log p is in its reward, how its network's outputs
become the policy, and whether it acts greedily. ``register`` adds one: the
tuner, the evaluation, the export and the TF-Agents policies all look
algorithms up here, so a new off-policy algorithm needs no library edit
(tests/test_library.py registers one).
"""
import collections
import dataclasses
from typing import Callable, Optional, Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf.agents import targets

# (next-state values of the target network, next-state prior logits) ->
# bootstrapped target, given (reward, discount, gamma): targets.py's form.
Target = Callable[..., tf.Tensor]
# (the trained network's outputs, the prior's logits) -> policy logits [B, 38]
PolicyLogits = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Algorithm:
  """One tuning algorithm.

  on_policy: tuned by a tuner class of its own (on_policy_tuning.TUNERS:
    PPO and RLOO on their own whole compositions, DPO on rated pairs; no
    replay); else by tuning.Tuner with ``target``.
  log_p_in_reward: the environment's reward includes log p(a|s) (Eq. 3).
  policy_logits: its policy from its network's outputs and the prior's
    logits.
  greedy: it acts by the argmax of policy_logits (Eq. 5) unless asked to
    sample; the others sample.
  target: off-policy: y(reward, discount, gamma, next_values,
    next_prior_logits), the regression target of the taken action's value.
  target_reads_prior: the target uses the prior's next-state logits (G):
    the only kind whose target can train the prior (--g_updates_prior).
  """
  name: str
  on_policy: bool
  log_p_in_reward: bool
  policy_logits: PolicyLogits
  greedy: bool = False
  target: Optional[Target] = None
  target_reads_prior: bool = False

  def __post_init__(self):
    if not self.name or not isinstance(self.name, str):
      raise ValueError(f"an algorithm needs a name, got {self.name!r}")
    if self.on_policy == (self.target is not None):
      raise ValueError(f"algorithm {self.name!r}: an off-policy algorithm "
                       "needs a target, an on-policy one has none")


_REGISTRY = collections.OrderedDict()
NOTE_RNN = "note_rnn"  # the untuned model's kind: the prior alone


def register(algorithm: Algorithm) -> Algorithm:
  """Adds ``algorithm``; its name must be new."""
  if algorithm.name in _REGISTRY or algorithm.name == NOTE_RNN:
    raise ValueError(f"an algorithm named {algorithm.name!r} is already "
                     "registered")
  _REGISTRY[algorithm.name] = algorithm
  return algorithm


def unregister(name: str) -> None:
  if name not in _REGISTRY:
    raise KeyError(f"no algorithm named {name!r}")
  del _REGISTRY[name]


def names() -> Tuple[str, ...]:
  """Registered algorithms, in registration order."""
  return tuple(_REGISTRY)


def get(name: str) -> Algorithm:
  """The algorithm called ``name``; ValueError naming the known ones."""
  try:
    return _REGISTRY[name]
  except (KeyError, TypeError):
    raise ValueError(f"unknown algorithm {name!r}; expected one of "
                     f"{', '.join(_REGISTRY)}") from None


def model_kinds() -> Tuple[str, ...]:
  """What a saved model can be: the Note RNN or a tuned algorithm's."""
  return (NOTE_RNN,) + names()


def _values(values, reward_logits):
  del reward_logits
  return values


def _prior_plus_values(values, reward_logits):
  """Eq. 14: log pi = log p(a|s) + G(s, a) (up to a constant)."""
  return tf.nn.log_softmax(reward_logits, axis=-1) + values


def _q_target(reward, discount, gamma, next_values, next_prior_logits):
  del next_prior_logits
  return targets.q_target(reward, discount, gamma, next_values)


def _psi_target(reward, discount, gamma, next_values, next_prior_logits):
  del next_prior_logits
  return targets.psi_target(reward, discount, gamma, next_values)


def _g_target(reward, discount, gamma, next_values, next_prior_logits):
  if next_prior_logits is None:
    raise ValueError("the G-learning target needs next_reward_logits")
  return targets.g_target(reward, discount, gamma, next_values,
                          next_prior_logits)


for _algorithm in (
    Algorithm("q", on_policy=False, log_p_in_reward=True,
              policy_logits=_values, greedy=True, target=_q_target),
    Algorithm("psi", on_policy=False, log_p_in_reward=True,
              policy_logits=_values, target=_psi_target),
    Algorithm("g", on_policy=False, log_p_in_reward=False,
              policy_logits=_prior_plus_values, target=_g_target,
              target_reads_prior=True),
    Algorithm("rl_only", on_policy=False, log_p_in_reward=False,
              policy_logits=_values, greedy=True, target=_q_target),
    Algorithm("ppo", on_policy=True, log_p_in_reward=False,
              policy_logits=_values),
    Algorithm("rloo", on_policy=True, log_p_in_reward=False,
              policy_logits=_values),
    Algorithm("dpo", on_policy=True, log_p_in_reward=False,
              policy_logits=_values)):
  register(_algorithm)
