"""The tuning job: learning, determinism, resume after kill -9, NaN, flags."""
import csv
import os
import signal
import subprocess
import sys
import time

from absl import app
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_command
from rl_tuner_tf import note_rnn
from rl_tuner_tf import train
from rl_tuner_tf import tuner_base
from rl_tuner_tf import tuning
from rl_tuner_tf import tuning_job
from rl_tuner_tf.evaluation import generate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _note_rnn_loving_one_note():
  """A Note RNN that plays class 3 (C#3, out of key) most of the time, so its
  melodies are full of excessive repetition and out-of-key notes."""
  tf.random.set_seed(0)
  model = note_rnn.NoteRNN()
  bias = model.logits_layer.bias.numpy()
  bias[3] = 4.0
  model.logits_layer.bias.assign(bias)
  return model


def test_short_tuning_raises_music_theory_reward_and_is_deterministic():
  source = _note_rnn_loving_one_note()
  # 400 notes: 40 compositions x 10, the paper's schedule (one minibatch of
  # 32 every 5 notes), epsilon annealed over the run.
  config = tuning.TuningConfig.of(
      algorithm="q", num_notes=400, num_compositions=40,
      minibatches_per_update=1, exploration_period=400, replay_capacity=1000,
      seed=0)
  weights = []
  for _ in range(2):
    tuner = tuning.Tuner(config, source)
    before = generate.figure2_point("q", tuner.q_network, tuner.reward_rnn,
                                    num_melodies=1000, seed=1)[1]
    assert tuner.run(10) == 10
    assert tuner.num_notes_composed == 400
    assert tuner.num_updates == 8 * 9  # training starts at the 2nd iteration
    after = generate.figure2_point("q", tuner.q_network, tuner.reward_rnn,
                                   num_melodies=1000, seed=1)[1]
    assert before < -4.0  # repetition (-100) and key (-1) penalties
    assert after > before + 3.0, (before, after)
    weights.append([v.numpy() for v in tuner.q_network.variables])
  # Same seed on CPU: identical networks.
  for a, b in zip(*weights):
    np.testing.assert_array_equal(a, b)


def test_config_validation_names_the_setting():
  with pytest.raises(tuning.ConfigError, match="--c"):
    tuning.TuningConfig.of(c=0.0)
  with pytest.raises(tuning.ConfigError, match="--algorithm"):
    tuning.TuningConfig.of(algorithm="sarsa")
  with pytest.raises(tuning.ConfigError, match="--num_compositions"):
    tuning.TuningConfig.of(num_compositions=33)
  with pytest.raises(tuning.ConfigError, match="--num_notes"):
    tuning.TuningConfig.of(num_notes=1010, num_compositions=40,
                           minibatches_per_update=1)
  with pytest.raises(tuning.ConfigError, match="--pg_epochs"):
    tuning.TuningConfig.of(pg_epochs=1.5)
  with pytest.raises(tuning.ConfigError, match="--learning_rate"):
    tuning.TuningConfig.of(learning_rate="fast")
  with pytest.raises(tuning.ConfigError, match="--reward_weights"):
    tuning.TuningConfig.of(reward_weights={"key": float("nan")})
  with pytest.raises(tuning.ConfigError, match="unknown setting.*pg_epoch\\b"):
    tuning.TuningConfig.of(pg_epoch=2)
  assert tuning.TuningConfig.of() == tuning.TuningConfig()


@pytest.mark.parametrize("flag,value", [
    ("c", "-1.0"), ("gamma", "2.0"), ("num_compositions", "33"),
    ("algorithm", "q,sarsa"), ("note_rnn_checkpoint", "/nonexistent"),
    ("reward_weights", "key=2,no_such_rule=1"),
    ("reward_modules", "no_such_module_xyz"), ("config", "/nonexistent.json")])
def test_bad_flag_fails_fast_naming_it(random_checkpoint, flag, value):
  argv = [f"--note_rnn_checkpoint={random_checkpoint}", "--report=false",
          f"--{flag}={value}"]
  started = time.time()
  with pytest.raises(app.UsageError, match=f"--{flag}"):
    run_command(train, argv)
  assert time.time() - started < 10


@pytest.mark.parametrize("argv,flag", [
    (["--primer_corpus", "--primer_melody=14,1"], "primer_corpus"),
    (["--primer_length=8"], "primer_length"),
    (["--primer_tfrecord_dir=/tmp"], "primer_tfrecord_dir"),
    (["--primer_corpus", "--primer_length=0"], "primer_length"),
    (["--primer_corpus", "--primer_tfrecord_dir=/nonexistent"],
     "primer_tfrecord_dir"),
    (["--primer_melody=14,40"], "primer_melody")])
def test_bad_primer_flags_fail_fast_naming_them(random_checkpoint, argv, flag):
  started = time.time()
  with pytest.raises(app.UsageError, match=f"--{flag}"):
    run_command(train, [f"--note_rnn_checkpoint={random_checkpoint}",
                        "--report=false"] + argv)
  assert time.time() - started < 10


def test_primer_pool_primes_the_q_network_like_the_reward_rnn():
  pool = np.array([[14, 1, 16, 1], [3, 5, 7, 9], [20, 0, 22, 25]], np.int32)
  config = tuning.TuningConfig.of(
      algorithm="q", num_notes=400, num_compositions=40, num_notes_in_melody=2,
      minibatches_per_update=1, replay_capacity=1000, seed=0)
  tuner = tuning.Tuner(config, _note_rnn_loving_one_note(), primer=pool)
  # Iteration 1 acts on the first compositions' FIRST step; iteration 3
  # primes the second ones and acts on their FIRST step inside the driver's
  # loop (replay items 2, the boundary, and 3), after updates.
  for iterations, item in ((1, 0), (1, None), (1, 3)):
    snapshot = tuner_base.copy_network(tuner.q_network, "snapshot")
    tuner.run(iterations)
    if item is None:
      continue
    replay = tuner.replay_buffer.gather_all()
    assert np.all(replay.step_type[:, item].numpy() == 0)  # FIRST
    chosen = pool[tuner.env.primer.index.numpy()]
    assert len({tuple(r) for r in chosen}) > 1
    np.testing.assert_array_equal(replay.observation["note"][:, item],
                                  chosen[:, -1])
    _, want = snapshot(tf.constant(chosen[:, :-1]))
    for got, w in zip(replay.policy_info["q_state"], want):
      np.testing.assert_allclose(got[:, item], w, atol=1e-5)


def test_nonfinite_loss_stops_with_a_clear_message(random_checkpoint,
                                                   tmp_path):
  # c so small that r_MT / c overflows float32: the first loss is inf.
  config = tuning.TuningConfig.of(c=1e-39, num_notes=400, num_compositions=40)
  run = tuning_job.RunConfig(note_rnn_checkpoint=random_checkpoint,
                             figure2_melodies=10)
  run_dir = str(tmp_path / "q")
  with pytest.raises(tuning_job.NonFiniteLossError, match="loss became") as e:
    tuning_job.tune(config, run, run_dir, log=lambda _: None)
  # The first iteration only collects (no loss yet) and is checkpointed at
  # note 40; the second one's first loss is inf: no later checkpoint, no model.
  message = str(e.value)
  assert "near note 80" in message
  kept = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
  assert kept.endswith("ckpt-40")
  assert f"last good checkpoint is kept: {kept}" in message
  assert not os.path.exists(os.path.join(run_dir, "model"))


def _train_command(checkpoint, output_dir):
  return [sys.executable, "-m", "rl_tuner_tf.train", "--algorithm=q",
          f"--note_rnn_checkpoint={checkpoint}", f"--output_dir={output_dir}",
          "--num_notes=4000", "--num_compositions=40",
          "--minibatches_per_update=1", "--checkpoint_every_notes=400",
          "--log_every_notes=400", "--figure2_every_notes=2000",
          "--figure2_melodies=10", "--replay_capacity=2000", "--report=false",
          "--seed=3"]


def test_killed_run_resumes_where_its_checkpoint_is(random_checkpoint,
                                                     tmp_path):
  output_dir = str(tmp_path / "run")
  command = _train_command(random_checkpoint, output_dir)
  env = dict(os.environ, PYTHONPATH=REPO)
  checkpoints = os.path.join(output_dir, "q", "checkpoints")
  first = subprocess.Popen(command, cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  try:
    deadline = time.time() + 240
    while time.time() < deadline:
      if os.path.exists(os.path.join(checkpoints, "checkpoint")):
        break
      assert first.poll() is None, first.stdout.read().decode()[-2000:]
      time.sleep(0.2)
    else:
      pytest.fail("no checkpoint was written")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
  finally:
    if first.poll() is None:
      first.kill()
  assert first.returncode == -signal.SIGKILL
  second = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
  output = second.stdout + second.stderr
  assert second.returncode == 0, output[-3000:]
  resumed = [l for l in output.splitlines() if "resuming from" in l]
  assert resumed, output[-3000:]
  resumed_at = int(resumed[0].rsplit("at note", 1)[1].replace(",", ""))
  assert 0 < resumed_at < 4000
  assert "done: 4,000 notes" in output
  # The resumed session composed only what was left.
  progress = [l for l in output.splitlines() if "] notes " in l]
  first_logged = int(progress[0].split("notes ")[1].split("/")[0].replace(",", ""))
  assert first_logged == resumed_at + 400
  with open(os.path.join(output_dir, "q", "figure2.csv")) as f:
    steps = [int(r["step"]) for r in csv.DictReader(f)]
  assert steps == [0, 2000, 4000]
  assert os.path.exists(os.path.join(output_dir, "q", "model", "tuned.json"))
  assert not os.path.exists(checkpoints)  # removed once model/ is saved
