"""The main job's console: its own progress only, unless --verbose."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What TensorFlow, CUDA probing and gym print when nobody filters them.
NOISE = re.compile(r"absl::InitializeLog|cudart_stub|cpu_feature_guard|cuInit|"
                   r"cuda_platform|Gym has been unmaintained|deprecat|"
                   r"^[IWE]\d{4} ", re.MULTILINE | re.IGNORECASE)


def _train(checkpoint, output_dir, *extra):
  env = dict(os.environ)
  for name in ("TF_CPP_MIN_LOG_LEVEL", "RL_TUNER_TF_VERBOSE"):
    env.pop(name, None)
  env["PYTHONPATH"] = REPO
  command = [sys.executable, "-m", "rl_tuner_tf.train", "--algorithm=q",
             f"--note_rnn_checkpoint={checkpoint}", f"--output_dir={output_dir}",
             "--num_notes=80", "--num_compositions=40",
             "--minibatches_per_update=1", "--replay_capacity=80",
             "--figure2_melodies=4", "--report=false", *extra]
  return subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600)


def test_main_job_prints_its_progress_not_library_noise(random_checkpoint,
                                                         tmp_path):
  quiet = _train(random_checkpoint, tmp_path / "quiet")
  assert quiet.returncode == 0, quiet.stderr[-3000:]
  assert "[q] done" in quiet.stdout
  assert not NOISE.search(quiet.stderr), quiet.stderr[-3000:]
  assert not NOISE.search(quiet.stdout), quiet.stdout[-3000:]


def test_verbose_keeps_the_library_lines(random_checkpoint, tmp_path):
  loud = _train(random_checkpoint, tmp_path / "loud", "--verbose")
  assert loud.returncode == 0, loud.stderr[-3000:]
  assert "[q] done" in loud.stdout
  assert "Gym has been unmaintained" in loud.stderr
  assert "absl::InitializeLog" in loud.stderr
