"""Sampling melodies from a model for evaluation (reference section 7).

Each melody is composed like training without exploration: LSTM states zero,
a first observation that is a random note (uniform over classes 0..36 as the
original, whose draw never reaches class 37; ``prime_all_classes`` draws
0..37), then for each of 32 steps the next note is *sampled* from the model's
policy softmax (``melody_policy.policy_logits``: Note RNN softmax(logits),
Q / RL-only softmax(Q) (Eq. 5 sampled), Psi softmax(Psi) (Eq. 12), G
softmax(G + log p) (Eq. 14)). The log p(a|s) of every sampled note under the
Reward RNN (the Note RNN) is recorded with it.

The loop and its randomness are compose.py's, the same as
``sample_note_rnn``'s and the exported SavedModel's: batch i of melodies is
composed with the seed seed + i * 2**32, so a seed gives the same melodies,
and a single batch gives what the other tools give for that seed.
The log pi(a|s) of each note under the sampling policy is recorded too
(``return_log_pi``): the KL-regularised objective needs it (objective.py).
"""
from typing import Mapping, Optional, Tuple, TYPE_CHECKING
import weakref

from data_pipeline import keras_setup  # noqa: F401
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from data_pipeline import encoding
from rl_tuner_tf import compose
from rl_tuner_tf import melody_policy
from rl_tuner_tf.rewards.music_theory import FIGURE2_R_MT

if TYPE_CHECKING:
  from rl_tuner_tf import note_rnn

DEFAULT_BATCH_SIZE = 10000
ORIGINAL_PRIME_CLASSES = encoding.NUM_CLASSES - 1  # 0..36, the original's draw


_SAMPLERS = {}


def _build_sampler(kind, q_network, reward_rnn, num_notes, prime_classes):
  uses_q = kind != "note_rnn"

  def step(previous, state):
    q_state, reward_state = state
    reward_logits, reward_state = reward_rnn.step(previous, reward_state)
    if uses_q:
      action_values, q_state = q_network.step(previous, q_state)
    else:
      action_values = reward_logits
    return (melody_policy.policy_logits(kind, action_values, reward_logits),
            reward_logits, (q_state, reward_state))

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32),
                                tf.TensorSpec([], tf.int64),
                                tf.TensorSpec([None, None], tf.int32)])
  def sample(batch_size, seed, primer):
    """primer [0, 0]: a random note per melody (the paper's protocol)."""
    primer = tf.cond(
        tf.size(primer) > 0,
        lambda: tf.broadcast_to(primer, [batch_size, tf.shape(primer)[1]]),
        lambda: compose.random_primer(batch_size, seed, prime_classes - 1))
    state = (q_network.zero_state(batch_size) if uses_q else (),
             reward_rnn.zero_state(batch_size))
    out = compose.compose(step, primer, num_notes, 1.0, seed, state)
    return out["tokens"], out["log_p"], out["log_pi"]

  return sample


def _sampler(kind, q_network, reward_rnn, num_notes, prime_classes):
  key = (kind, id(q_network), id(reward_rnn), num_notes, prime_classes)
  entry = _SAMPLERS.get(key)
  if entry is not None:
    q_ref, r_ref, fn = entry
    if (q_ref() if q_ref else None) is q_network and r_ref() is reward_rnn:
      return fn
  fn = _build_sampler(kind, q_network, reward_rnn, num_notes, prime_classes)
  _SAMPLERS[key] = (weakref.ref(q_network) if q_network is not None else None,
                    weakref.ref(reward_rnn), fn)
  return fn


def generate_melodies(kind: str, q_network: Optional["note_rnn.NoteRNN"],
                      reward_rnn: "note_rnn.NoteRNN", num_melodies: int,
                      seed: int, num_notes: int = 32,
                      batch_size: int = DEFAULT_BATCH_SIZE,
                      prime_all_classes: bool = False,
                      return_log_pi: bool = False,
                      primer: Optional[npt.ArrayLike] = None
                      ) -> Tuple[np.ndarray, ...]:
  """Samples melodies from a model's policy.

  kind: "note_rnn", "q", "psi", "g" or "rl_only".
  q_network: the trained Q / Psi / G network (a NoteRNN; ignored and may be
    None for "note_rnn"). reward_rnn: the frozen Note RNN.
  Returns (tokens np.int32 [N, num_notes], log_p np.float32 [N, num_notes]):
  the notes and their log p(a|s) under reward_rnn; with return_log_pi also
  log pi(a|s) [N, num_notes] under the policy they were sampled from.
  primer: None (a random note per melody), or tokens [P] (every melody) or
  [N, P]; its last token is the first one the model reads.
  """
  melody_policy.check_model_kind(kind)
  if kind != "note_rnn" and q_network is None:
    raise ValueError(f"model kind {kind!r} needs a q_network")
  for name, value in (("num_melodies", num_melodies), ("num_notes", num_notes),
                      ("batch_size", batch_size)):
    if int(value) < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")
  prime_classes = (encoding.NUM_CLASSES if prime_all_classes
                   else ORIGINAL_PRIME_CLASSES)
  fn = _sampler(kind, q_network if kind != "note_rnn" else None, reward_rnn,
                int(num_notes), prime_classes)
  primer = (np.zeros([0, 0], np.int32) if primer is None else
            np.asarray(primer, np.int32).reshape(
                [-1, np.shape(primer)[-1]]))
  if primer.size and (primer.min() < 0 or primer.max() >= encoding.NUM_CLASSES):
    raise ValueError(f"primer tokens must be classes 0..{encoding.NUM_CLASSES - 1}")
  if primer.shape[0] > 1 and primer.shape[0] != int(num_melodies):
    raise ValueError(f"a primer per melody needs {num_melodies} rows, got "
                     f"{primer.shape[0]}")
  tokens, log_ps, log_pis = [], [], []
  for i, start in enumerate(range(0, int(num_melodies), int(batch_size))):
    n = min(int(batch_size), int(num_melodies) - start)
    # Batch i composes with the seed seed + i * 2**32 (compose.py's scheme):
    # a single batch is what the SavedModel and sample_note_rnn write.
    t, lp, lpi = fn(tf.constant(n, tf.int32),
                    tf.constant(int(seed) + (i << 32), tf.int64),
                    tf.constant(primer[start:start + n] if primer.shape[0] > 1
                                else primer, tf.int32))
    tokens.append(t.numpy())
    log_ps.append(lp.numpy())
    log_pis.append(lpi.numpy())
  out = (np.concatenate(tokens).astype(np.int32),
         np.concatenate(log_ps).astype(np.float32))
  if return_log_pi:
    out += (np.concatenate(log_pis).astype(np.float32),)
  return out


def figure2_point(kind: str, q_network: Optional["note_rnn.NoteRNN"],
                  reward_rnn: "note_rnn.NoteRNN", num_melodies: int = 100,
                  seed: int = 0, num_notes: int = 32,
                  weights: Optional[Mapping[str, float]] = None,
                  token_reading: str = "paper", r_mt: str = "mean"
                  ) -> Tuple[float, float]:
  """(mean log p(a|s), mean r_MT) of freshly sampled melodies -- one point of
  Figure 2 (the reference's 100 melodies). r_mt: "mean" per note (the
  reference), or "last_note": each melody's last note only (the original's
  evaluation)."""
  if r_mt not in FIGURE2_R_MT:
    raise ValueError(f"r_mt must be one of {FIGURE2_R_MT}, got {r_mt!r}")
  from rl_tuner_tf.evaluation import table1  # pylint: disable=g-import-not-at-top
  tokens, log_p = generate_melodies(kind, q_network, reward_rnn, num_melodies,
                                    seed, num_notes=num_notes)
  return (float(log_p.mean()),
          table1.mean_music_theory_reward(
              tokens, weights=weights, token_reading=token_reading,
              last_note_only=r_mt == "last_note"))
