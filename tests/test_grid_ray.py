"""Grids on Ray (rl_tuner_tf/grid_ray.py): a 2-run grid (c = 0.5, 2) on local
Ray with parallel_runs=2 gives the same networks as the runs one by one, a run killed
mid-way is retried and resumes from its checkpoint, and
``python -m rl_tuner_tf.train --parallel_runs=2`` end to end, and the same
command attached to a one-node cluster started with ``ray start --head``
(and, without the cluster's token, refused with a clear error).

Needs Ray (the test and cluster extras install it): skipped without it, a
failure in CI (CI set), which installs the test extra.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

from rl_tuner_tf import grid
from rl_tuner_tf import melody_policy

try:
  import ray  # noqa: F401  pylint: disable=unused-import
except ImportError:
  if os.environ.get("CI"):
    raise  # .ci/run installs the test extra, which has Ray
  pytest.skip('Ray is not installed (pip install -e ".[test]" or ".[cluster]")',
              allow_module_level=True)
from rl_tuner_tf import grid_ray  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num_notes=400", "--num_compositions=40", "--replay_capacity=1000",
        "--exploration_period=400", "--figure2_melodies=10",
        "--figure2_every_notes=200", "--checkpoint_every_notes=40"]


def _specs(checkpoint, out):
  return grid.expand(["q"], [0.5, 2.0], [0.5], [0], out,
                     flags=TINY + [f"--note_rnn_checkpoint={checkpoint}"])


@pytest.fixture(scope="module")
def one_by_one(random_checkpoint, tmp_path_factory):
  """The same grid, its runs one by one as child processes."""
  specs = _specs(random_checkpoint, str(tmp_path_factory.mktemp("one_by_one")))
  env = dict(os.environ, PYTHONPATH=REPO, TF_USE_LEGACY_KERAS="1")
  for spec in specs:
    assert grid.run_subprocess(spec, log=lambda _: None, env=env,
                               stdout=subprocess.DEVNULL) == 0
  return specs


def _weights(spec):
  _, network, _, _ = melody_policy.load_tuned(
      os.path.join(spec.run_dir, "model"))
  return network.get_weights()


def _assert_same_networks(a, b):
  for x, y in zip(_weights(a), _weights(b)):
    np.testing.assert_array_equal(x, y)


def _train_pids(output_dir):
  """Process ids of the train commands writing to ``output_dir``."""
  pids = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().decode(errors="replace").split("\0")
    except OSError:
      continue
    if "rl_tuner_tf.train" in argv and f"--output_dir={output_dir}" in argv:
      pids.append(int(pid))
  return pids


def _kill_once_checkpointed(spec, killed, timeout=300):
  """kill -9 the train process of ``spec`` once its first checkpoint exists."""
  marker = os.path.join(spec.run_dir, "checkpoints", "checkpoint")
  deadline = time.time() + timeout
  while time.time() < deadline and not spec.is_done():
    if os.path.exists(marker):
      for pid in _train_pids(spec.output_dir):
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
      if killed:
        return
    time.sleep(0.02)


def test_grid_on_local_ray_matches_one_by_one_and_survives_kill_9(
    random_checkpoint, one_by_one, tmp_path):
  specs = _specs(random_checkpoint, str(tmp_path / "ray"))
  victim = specs[1]
  killed = []
  killer = threading.Thread(target=_kill_once_checkpointed,
                            args=(victim, killed), daemon=True)
  killer.start()
  messages = []
  results = grid_ray.run_on_ray(specs, parallel_runs=2, log=messages.append)
  killer.join(10)
  assert [s for s, _ in results] == specs
  assert [code for _, code in results] == [0, 0], messages
  assert killed, "the run finished before its train process could be killed"
  with open(grid_ray.log_path(victim)) as f:
    log = f.read()
  assert f"exit code -{int(signal.SIGKILL)}" in log
  assert "resuming from" in log and "done: 400 notes" in log, log[-3000:]
  for ray_spec, ref in zip(specs, one_by_one):
    assert ray_spec.is_done()
    _assert_same_networks(ray_spec, ref)

  # Done runs are skipped (no Ray started at all).
  again = []
  assert [c for _, c in grid_ray.run_on_ray(specs, log=again.append)] == [0] * 2
  assert all("already done" in m for m in again) and len(again) == 2


def test_train_command_with_parallel_runs(random_checkpoint, one_by_one,
                                          tmp_path):
  out = str(tmp_path / "grid")
  command = [sys.executable, "-m", "rl_tuner_tf.train", "--algorithm=q",
             "--c=0.5,2", f"--output_dir={out}",
             f"--note_rnn_checkpoint={random_checkpoint}", "--report=false",
             "--parallel_runs=2"] + TINY
  env = dict(os.environ, PYTHONPATH=REPO)
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600)
  output = done.stdout + done.stderr
  assert done.returncode == 0, output[-3000:]
  assert "local Ray (2 at once)" in output and "Tuning done: 2 run(s)" in output
  specs = _specs(random_checkpoint, out)
  for spec, ref in zip(specs, one_by_one):
    assert spec.is_done(), output[-3000:]
    _assert_same_networks(spec, ref)


def test_train_command_on_a_ray_cluster_started_with_ray_start(
    random_checkpoint, one_by_one):
  """README's cluster commands on one node: `ray start --head`, then the
  train command attached with --ray_address=auto; same networks as one by
  one. Attaching by IP:port without the cluster's token is a clear error."""
  ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
  temp_dir = tempfile.mkdtemp(prefix="ray_")  # short: Ray's socket paths
  out = os.path.join(temp_dir, "grid")
  port = _free_port()
  env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
  env["PYTHONPATH"] = REPO
  started = subprocess.run(
      [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2",
       "--include-dashboard=false", "--disable-usage-stats",
       f"--temp-dir={temp_dir}"],
      env=env, capture_output=True, text=True, timeout=180)
  assert started.returncode == 0, started.stdout + started.stderr
  command = [sys.executable, "-m", "rl_tuner_tf.train", "--algorithm=q",
             "--c=0.5,2", f"--output_dir={out}",
             f"--note_rnn_checkpoint={random_checkpoint}", "--report=false"]
  command += TINY
  try:
    if "Token authentication is enabled" in started.stdout + started.stderr:
      refused = subprocess.run(command + [f"--ray_address=127.0.0.1:{port}"],
                               cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=300)
      assert refused.returncode == 2, refused.stderr[-3000:]
      assert "refused this driver's authentication token" in refused.stderr
    done = subprocess.run(command + ["--ray_address=auto"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  finally:
    subprocess.run([ray_cli, "stop", "--force"], capture_output=True,
                   timeout=120)
  output = done.stdout + done.stderr
  assert done.returncode == 0, output[-3000:]
  assert ("the Ray cluster at auto" in output
          and "Tuning done: 2 run(s)" in output), output[-3000:]
  for spec, ref in zip(_specs(random_checkpoint, out), one_by_one):
    assert spec.is_done(), output[-3000:]
    _assert_same_networks(spec, ref)
  shutil.rmtree(temp_dir, ignore_errors=True)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_a_failing_run_is_reported_not_retried(random_checkpoint, tmp_path):
  # A setting the run rejects: exit code 1, tried once, the others still run.
  bad = grid.RunSpec("q", 0.5, 0.5, 0, str(tmp_path / "bad"),
                     ("--num_notes=-5",
                      f"--note_rnn_checkpoint={random_checkpoint}"))
  messages = []
  (spec, code), = grid_ray.run_on_ray([bad], parallel_runs=1,
                                      log=messages.append)
  assert spec == bad and code == 1, messages
  with open(grid_ray.log_path(bad)) as f:
    log = f.read()
  assert log.count("started on") == 1 and "--num_notes" in log
