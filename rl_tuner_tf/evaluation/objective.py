"""One yardstick for every model: the KL-regularised objective (PG-1).

  J = E_pi[ sum_t r_MT(s_t, a_t)/c + log p(a_t|s_t) - log pi(a_t|s_t) ]
    = E_pi[ sum_t r_MT/c ] - KL(pi || p)    over one composition of T notes

p the Note RNN, pi the model's policy as the evaluation samples it
(melody_policy.policy_logits: Note RNN p itself, so its KL is 0; Q and RL-only
softmax(Q); Psi softmax(Psi); G softmax(log p + G); PPO / RLOO softmax of the
policy logits). Psi-, G-learning, PPO and RLOO all maximise J (Psi and G its
gamma-discounted version); Q-learning and RL-only do not, but J scores them on
the same scale. It is estimated on the melodies the evaluation sampled: one
J_i per melody, their mean, and a 95 % normal confidence interval
mean ± 1.96 sd / sqrt(N) (melodies are independent samples).
"""
import math
from typing import Dict, Mapping, Optional

from data_pipeline import keras_setup  # noqa: F401
import numpy as np
import numpy.typing as npt

from rl_tuner_tf.rewards import replay

DEFAULT_C = 0.5  # the paper's c, when a model does not record its own
Z_95 = 1.959963984540054


def per_melody_r_mt(melodies: npt.ArrayLike,
                    weights: Optional[Mapping[str, float]] = None,
                    chunk_size: int = 20000, token_reading: str = "paper"
                    ) -> np.ndarray:
  """sum_t r_MT of each melody [N, T] -> float64 [N] (replayed in chunks)."""
  tokens = replay.check_melodies(melodies).numpy()
  return np.concatenate([
      replay.replay_melodies(tokens[i:i + chunk_size], weights,
                             token_reading).total.numpy()
      .astype(np.float64).sum(axis=1)
      for i in range(0, len(tokens), chunk_size)])


def kl_objective(melodies: npt.ArrayLike, log_p: npt.ArrayLike,
                 log_pi: npt.ArrayLike, c: float,
                 weights: Optional[Mapping[str, float]] = None,
                 token_reading: str = "paper") -> Dict[str, float]:
  """The estimate of J with its 95 % confidence interval -> dict.

  melodies [N, T] tokens, log_p / log_pi [N, T] each note's log-probability
  under the Note RNN / the policy that sampled it; c the Eq. 3 scale;
  token_reading: how the rules read tokens 0/1 (rewards/token_reading.py).
  """
  if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
    raise ValueError(f"c must be a finite number > 0, got {c!r}")
  log_p = np.asarray(log_p, np.float64)
  log_pi = np.asarray(log_pi, np.float64)
  melodies = np.asarray(melodies)
  if log_p.shape != melodies.shape or log_pi.shape != melodies.shape:
    raise ValueError(f"log_p {log_p.shape} and log_pi {log_pi.shape} must "
                     f"have the melodies' shape {melodies.shape}")
  r_mt = per_melody_r_mt(melodies, weights, token_reading=token_reading)
  kl = (log_pi - log_p).sum(axis=1)        # per-melody sample of KL(pi || p)
  values = r_mt / c - kl                   # J_i
  n = len(values)
  mean = float(values.mean())
  std = float(values.std(ddof=1)) if n > 1 else float("nan")
  half = Z_95 * std / math.sqrt(n) if n > 1 else float("nan")
  return {"c": float(c), "mean": mean, "ci95_low": mean - half,
          "ci95_high": mean + half, "ci95_half_width": half, "std": std,
          "num_melodies": int(n),
          "mean_sum_r_mt_over_c": float((r_mt / c).mean()),
          "mean_kl": float(kl.mean())}


def format_objective(result: Optional[Mapping[str, float]]) -> str:
  """'mean ± half-width' (the 95 % CI), for tables."""
  if not result:
    return "n/a"
  return f"{result['mean']:.1f} ± {result['ci95_half_width']:.1f}"
