"""The KL-regularised objective (evaluation/objective.py) and the c each
model is scored with (evaluation/pipeline.py)."""
import json
import math
import os

import numpy as np
import pytest

from rl_tuner_tf.evaluation import objective
from rl_tuner_tf.evaluation import pipeline
from rl_tuner_tf.evaluation import table1
from rl_tuner_tf.rewards import replay


def test_objective_against_hand_computed_values():
  rng = np.random.default_rng(0)
  melodies = rng.integers(0, 38, size=(50, 32)).astype(np.int32)
  log_p = -rng.uniform(0.1, 3.0, size=(50, 32))
  log_pi = -rng.uniform(0.1, 3.0, size=(50, 32))
  r_mt = replay.replay_melodies(melodies).total.numpy().sum(axis=1)
  want = r_mt / 0.25 + (log_p - log_pi).sum(axis=1)
  got = objective.kl_objective(melodies, log_p, log_pi, c=0.25)
  assert got["c"] == 0.25 and got["num_melodies"] == 50
  assert got["mean"] == pytest.approx(want.mean(), rel=1e-5)
  half = 1.959964 * want.std(ddof=1) / math.sqrt(50)
  assert got["ci95_half_width"] == pytest.approx(half, rel=1e-4)
  assert got["ci95_low"] == pytest.approx(want.mean() - half, rel=1e-4)
  assert got["mean_kl"] == pytest.approx((log_pi - log_p).sum(1).mean())
  # pi = p: no KL, the objective is the mean of sum r_MT / c.
  same = objective.kl_objective(melodies, log_p, log_p, c=0.5)
  assert same["mean_kl"] == 0.0
  assert same["mean"] == pytest.approx((r_mt / 0.5).mean(), rel=1e-5)
  with pytest.raises(ValueError, match="c must be"):
    objective.kl_objective(melodies, log_p, log_pi, c=0.0)
  with pytest.raises(ValueError, match="shape"):
    objective.kl_objective(melodies, log_p[:, :3], log_pi, c=0.5)


def _tuned_dir(path, c):
  os.makedirs(path)
  config = {"algorithm": "ppo"}
  if c is not None:
    config["config"] = {"c": c}
  with open(os.path.join(path, "tuned.json"), "w") as f:
    json.dump(config, f)
  return str(path)


def test_each_model_is_scored_at_its_runs_c(tmp_path):
  a = _tuned_dir(tmp_path / "a", 2.0)
  b = _tuned_dir(tmp_path / "b", 2.0)
  old = _tuned_dir(tmp_path / "old", None)  # no config recorded
  # The Note RNN (first) takes the c its run's tuned models share.
  assert pipeline.objective_cs("ckpt", [a, b]) == [2.0, 2.0, 2.0]
  assert pipeline.objective_cs(None, [a, old]) == [2.0, 0.5]
  other = _tuned_dir(tmp_path / "other", 10.0)
  assert pipeline.objective_cs("ckpt", [a, other]) == [0.5, 2.0, 10.0]
  assert pipeline.objective_cs("ckpt", [a], objective_c=1.0) == [1.0, 1.0]
  with pytest.raises(pipeline.ConfigError, match="--objective_c"):
    pipeline.EvaluationConfig(tuned_model_dirs=[a], objective_c=-1.0)


def test_markdown_table_shows_the_objective_and_its_c():
  stats = {"num_melodies": 10, "kl_objective": {
      "c": 0.5, "mean": 12.34, "ci95_half_width": 0.56}}
  text = table1.markdown_table({"ppo": stats, "note_rnn": {"num_melodies": 10}})
  assert ("| KL-regularised objective (95 % CI) | n/a | n/a | 12.3 ± 0.6 |"
          in text)  # Note RNN: ours (none given), paper; then PPO
  assert "c: ppo 0.5" in text
