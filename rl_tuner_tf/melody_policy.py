"""How each model turns network outputs into a distribution over the next note,
and the on-disk layout of a tuned melody model.

Policies (paper section 3 / reference section 4; each algorithm's in
algorithms.py):
  note_rnn : softmax(reward logits)                 -- the Note RNN alone
  q, rl_only: greedy argmax_a Q(s, a)     (Eq. 5);  sampled as softmax(Q)
  psi      : pi(a|s) = softmax(Psi(s, .)) (Eq. 12)
  g        : pi(a|s) ∝ p(a|s) exp(G(s, a)) (Eq. 14) = softmax(log p + G)
  ppo, rloo: pi(a|s) = softmax(policy logits) -- on-policy KL-regularised
             tuners (agents/policy_gradient.py); their "q_network" on disk
             is the policy network

A tuned model on disk (``save_tuned`` / ``load_tuned``):
  <model_dir>/tuned.json        {"algorithm": ..., plus provenance}
  <model_dir>/q_network/        note_rnn.save() of the trained Q/Psi/G network
  <model_dir>/reward_rnn/       note_rnn.save() of the frozen Reward RNN
"""
import json
import os
from typing import Any, Dict, Optional, Tuple

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from data_pipeline import atomic_files

from rl_tuner_tf import algorithms
from rl_tuner_tf import note_rnn

TUNED_CONFIG = "tuned.json"


def check_model_kind(kind: str) -> None:
  """Raises ValueError unless ``kind`` is the Note RNN or a registered
  algorithm (algorithms.model_kinds())."""
  if kind not in algorithms.model_kinds():
    raise ValueError(f"unknown model kind {kind!r}; expected one of "
                     f"{', '.join(algorithms.model_kinds())}")


def check_algorithm(algorithm: str) -> None:
  """Raises ValueError unless ``algorithm`` is registered (a tuned kind)."""
  algorithms.get(algorithm)


def policy_logits(kind: str, action_values: Optional[tf.Tensor],
                  reward_logits: tf.Tensor) -> tf.Tensor:
  """Unnormalised log-probabilities of the sampling policy, [B, 38].

  kind: "note_rnn" or a registered algorithm (its ``policy_logits``).
  action_values: the Q/Psi/G network's outputs (ignored for note_rnn).
  reward_logits: the Reward RNN's (Note RNN's) logits.
  """
  if kind == algorithms.NOTE_RNN:
    return reward_logits
  return algorithms.get(kind).policy_logits(action_values, reward_logits)


def greedy_actions(kind: str, action_values: Optional[tf.Tensor],
                   reward_logits: tf.Tensor) -> tf.Tensor:
  return tf.argmax(policy_logits(kind, action_values, reward_logits), axis=-1,
                   output_type=tf.int32)


def save_tuned(model_dir: str, algorithm: str, q_network: tf.keras.Model,
               reward_rnn: tf.keras.Model,
               extra: Optional[Dict[str, Any]] = None) -> None:
  """Writes the model into a hidden sibling folder, then renames it to
  ``model_dir``: a reader sees the whole model or none."""
  check_algorithm(algorithm)
  config = {"algorithm": algorithm}
  config.update(extra or {})
  with atomic_files.replace_dir(model_dir) as tmp:
    note_rnn.save(q_network, os.path.join(tmp, "q_network"))
    note_rnn.save(reward_rnn, os.path.join(tmp, "reward_rnn"))
    with open(os.path.join(tmp, TUNED_CONFIG), "w") as f:
      json.dump(config, f, indent=2)


def load_tuned(model_dir: str
               ) -> Tuple[str, tf.keras.Model, tf.keras.Model, Dict[str, Any]]:
  """-> (algorithm, q_network, reward_rnn, config)."""
  path = os.path.join(model_dir, TUNED_CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{model_dir!r} is not a tuned melody model ({TUNED_CONFIG} missing)")
  try:
    with open(path) as f:
      config = json.load(f)
    check_algorithm(config.get("algorithm") if isinstance(config, dict)
                    else None)
  except (OSError, ValueError) as e:
    raise note_rnn.UnreadableCheckpointError(
        f"{model_dir!r} is a damaged tuned melody model: {path} cannot be "
        f"used ({e}); tune it again (rerun the training command).") from None
  q_network = note_rnn.load(os.path.join(model_dir, "q_network"))
  reward_rnn = note_rnn.load(os.path.join(model_dir, "reward_rnn"))
  return config["algorithm"], q_network, reward_rnn, config
