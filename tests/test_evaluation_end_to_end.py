"""The evaluation job end to end on tiny random models: in process through
``evaluation.pipeline`` and once through ``python -m rl_tuner_tf.evaluate``
(a subprocess: its absl flags must not meet other entry points' flags)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn
from rl_tuner_tf.evaluation import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A fake training run: a Note RNN checkpoint and tuned q / rl_only."""
  root = tmp_path_factory.mktemp("eval")
  tf.random.set_seed(0)
  reward_rnn = note_rnn.NoteRNN()
  note_rnn.save(reward_rnn, str(root / "note_rnn"))
  for algorithm in ("q", "rl_only"):
    melody_policy.save_tuned(str(root / "run" / algorithm / "model"),
                             algorithm, note_rnn.NoteRNN(), reward_rnn)
  with open(root / "run" / "q" / "figure2.csv", "w") as f:
    f.write("step,mean_log_p,mean_r_mt\n0,-3.6,-2.0\n500,-3.1,-1.0\n")
  return root


def test_pipeline_run_dir(run_dir):
  config = pipeline.EvaluationConfig(
      note_rnn_checkpoint=str(run_dir / "note_rnn"),
      run_dir=str(run_dir / "run"), num_melodies=12, batch_size=5,
      num_samples=1, beyond_rules=False)  # test_evaluation_beyond_rules.py
  results, output_dir, report_path = pipeline.run(config, log=lambda _: None)
  assert list(results) == ["note_rnn", "q", "rl_only"]
  assert output_dir == str(run_dir / "run" / "evaluation")
  for model in results:
    melodies = np.load(os.path.join(output_dir, model, "melodies.npy"))
    assert melodies.shape == (12, 32) and melodies.dtype == np.int32
    with open(os.path.join(output_dir, model, "table1.json")) as f:
      stats = json.load(f)
    assert stats["num_melodies"] == 12 and stats["kind"] == model
    assert stats["mean_log_p"] < 0
    assert os.path.exists(os.path.join(output_dir, model, "samples",
                                       f"{model}_0.wav"))
  table = open(os.path.join(output_dir, "table1.md")).read()
  assert "note_rnn (paper)" in table and "rl_only (ours)" in table
  assert report_path == str(run_dir / "run" / "report.html")
  page = open(report_path).read()
  assert "<audio" in page and "figure2_mean_log_p" in page


def test_rerun_reuses_only_what_is_unchanged(run_dir, tmp_path):
  """A second evaluation with the same files and settings samples nothing
  again; a model whose files changed, or a new setting, or force, does."""
  out = str(tmp_path / "out")
  shutil.copytree(run_dir / "run", tmp_path / "run")
  kwargs = dict(note_rnn_checkpoint=str(run_dir / "note_rnn"),
                run_dir=str(tmp_path / "run"), output_dir=out,
                num_melodies=10, batch_size=5, num_samples=0,
                beyond_rules=False)

  def evaluate(**extra):
    messages = []
    config = pipeline.EvaluationConfig(**{**kwargs, **extra})
    results = pipeline.run(config, log=messages.append)[0]
    reused = {m.split(":")[0] for m in messages if "results reused" in m}
    return results, reused

  first, reused = evaluate()
  assert reused == set()
  table_q = open(os.path.join(out, "q", "table1.json")).read()
  again, reused = evaluate()
  assert reused == {"note_rnn", "q", "rl_only"}
  assert open(os.path.join(out, "q", "table1.json")).read() == table_q
  for model in first:  # the same numbers, read back (NaN stays NaN)
    for name in ("mean_log_p", "kl_objective", "notes_not_in_key"):
      np.testing.assert_equal(again[model].get(name), first[model].get(name))
  assert open(os.path.join(out, "table1.md")).read()

  # New weights for rl_only: only it is sampled again.
  model_dir = str(tmp_path / "run" / "rl_only" / "model")
  algorithm, q_network, reward_rnn, _ = melody_policy.load_tuned(model_dir)
  q_network.set_weights([w + 0.01 for w in q_network.get_weights()])
  melody_policy.save_tuned(model_dir, algorithm, q_network, reward_rnn)
  _, reused = evaluate()
  assert reused == {"note_rnn", "q"}
  _, reused = evaluate(num_melodies=12)  # another setting: everything
  assert reused == set()
  _, reused = evaluate(num_melodies=12, force=True)
  assert reused == set()
  _, reused = evaluate(num_melodies=12)
  assert reused == {"note_rnn", "q", "rl_only"}


def test_bad_settings_fail_fast_naming_the_flag(tmp_path):
  with pytest.raises(pipeline.ConfigError, match="--num_melodies"):
    pipeline.EvaluationConfig(num_melodies=0)
  with pytest.raises(pipeline.ConfigError, match="--note_rnn_checkpoint"):
    pipeline.run(pipeline.EvaluationConfig(
        note_rnn_checkpoint=str(tmp_path / "nope")))
  with pytest.raises(pipeline.ConfigError, match="--tuned_model_dirs"):
    pipeline.run(pipeline.EvaluationConfig(
        note_rnn_checkpoint="", tuned_model_dirs=[str(tmp_path)]))
  with pytest.raises(pipeline.ConfigError, match="--run_dir"):
    pipeline.run(pipeline.EvaluationConfig(run_dir=str(tmp_path / "missing")))
  assert not os.listdir(tmp_path)  # nothing written


def test_command_line(run_dir, tmp_path):
  out = tmp_path / "out"
  command = [sys.executable, "-m", "rl_tuner_tf.evaluate",
             f"--note_rnn_checkpoint={run_dir / 'note_rnn'}",
             f"--tuned_model_dirs={run_dir / 'run' / 'q' / 'model'}",
             f"--output_dir={out}", "--num_melodies=6", "--num_samples=0",
             "--beyond_rules=false"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "Report:" in done.stdout
  assert sorted(os.listdir(out)) == ["note_rnn", "q", "report.html", "table1.md"]
