"""Nothing lost under faults.

The default run holds the quick part: the checkpoint fallback, run locks and
atomic writes exercised by real processes killed with SIGKILL, the issue's two
faults with real ``python -m rl_tuner_tf.train`` processes, damaged manifests,
a full disk, mutated MIDI files and broken tuned models.  The whole catalogue
(>= 20 kill -9 trials over every long job, 1,000 mutated MIDI files, ...) runs
with ``RL_TUNER_FAULTS_FULL=1`` or as ``python tests/faults/run_faults.py
--full``, which prints the fault table.
"""
import glob
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fault_harness  # noqa: E402  pylint: disable=g-import-not-at-top

from data_pipeline import atomic_files  # noqa: E402
from data_pipeline import build_dataset  # noqa: E402
from data_pipeline import run_lock  # noqa: E402
from rl_tuner_tf import checkpointing  # noqa: E402
from rl_tuner_tf import melody_policy  # noqa: E402
from rl_tuner_tf import note_rnn  # noqa: E402

REPO = fault_harness.REPO
FULL = os.environ.get("RL_TUNER_FAULTS_FULL", "") not in ("", "0")


def _python(code, *args, **kwargs):
  return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO,
                          env=fault_harness._env(), **kwargs)  # pylint: disable=protected-access


@pytest.fixture(scope="module")
def workdir():
  # World-traversable (the read-only checks run a child as nobody).
  directory = tempfile.mkdtemp(prefix="rl_tuner_faults_", dir="/tmp")
  os.chmod(directory, 0o755)
  yield directory
  shutil.rmtree(directory, ignore_errors=True)


# -- checkpoints ---------------------------------------------------------------
def _three_checkpoints(directory):
  v = tf.Variable(tf.zeros([256]))
  w = tf.Variable(tf.zeros([3]))
  checkpoint = tf.train.Checkpoint(v=v, w=w)
  manager = checkpointing.manager(checkpoint, directory)
  for i in (1, 2, 3):
    v.assign(tf.fill([256], float(i)))
    w.assign(tf.fill([3], float(i)))
    manager.save(checkpoint_number=i)
  v.assign(tf.zeros([256]))
  w.assign(tf.zeros([3]))
  return checkpoint, v, w


def test_keeps_three_checkpoints_and_skips_a_truncated_one(tmp_path):
  directory = str(tmp_path)
  checkpoint, v, w = _three_checkpoints(directory)
  assert [os.path.basename(p) for p in checkpointing.candidates(directory)] == [
      "ckpt-3", "ckpt-2", "ckpt-1"]
  fault_harness.truncate_half(glob.glob(os.path.join(directory,
                                                     "ckpt-3.data-*"))[0])
  messages = []
  restored = checkpointing.restore_latest(
      checkpoint, directory, log=messages.append,
      check=lambda status, _: status.assert_consumed())
  assert restored == os.path.join(directory, "ckpt-2")
  assert f"checkpoint {directory}/ckpt-3 cannot be read" in messages[0]
  # Nothing of the bad checkpoint leaked in: every value is checkpoint 2's.
  np.testing.assert_array_equal(v.numpy(), np.full([256], 2.0))
  np.testing.assert_array_equal(w.numpy(), np.full([3], 2.0))


def test_a_checkpoint_bad_in_one_tensor_leaves_no_partial_restore(tmp_path):
  """ckpt-3's data is intact for `v` but corrupt for `w`: verifying reads
  every tensor before restoring, so `v` does not keep ckpt-3's values."""
  directory = str(tmp_path)
  checkpoint, v, w = _three_checkpoints(directory)
  data = glob.glob(os.path.join(directory, "ckpt-3.data-*"))[0]
  reader = tf.train.load_checkpoint(os.path.join(directory, "ckpt-3"))
  assert reader.get_tensor("w/.ATTRIBUTES/VARIABLE_VALUE").shape == (3,)
  with open(data, "r+b") as f:  # w is 12 bytes: flip the file's last byte
    f.seek(-1, os.SEEK_END)
    last = f.read(1)
    f.seek(-1, os.SEEK_END)
    f.write(bytes([last[0] ^ 0xFF]))
  restored = checkpointing.restore_latest(checkpoint, directory,
                                          log=lambda m: None)
  assert restored.endswith("ckpt-2")
  np.testing.assert_array_equal(v.numpy(), np.full([256], 2.0))
  np.testing.assert_array_equal(w.numpy(), np.full([3], 2.0))


def test_no_readable_checkpoint_says_what_to_do(tmp_path):
  directory = str(tmp_path)
  checkpoint, _, _ = _three_checkpoints(directory)
  for data in glob.glob(os.path.join(directory, "*.data-*")):
    fault_harness.truncate_half(data)
  os.remove(os.path.join(directory, "checkpoint"))  # the state file, too
  with pytest.raises(checkpointing.NoReadableCheckpointError) as e:
    checkpointing.restore_latest(checkpoint, directory, log=lambda m: None)
  message = str(e.value)
  assert "none of the 3 checkpoint(s)" in message
  assert f"move or delete {directory}" in message
  assert checkpointing.restore_latest(
      checkpoint, str(tmp_path / "none")) is None


# -- run locks -------------------------------------------------------------------
_HOLD = ("import sys, time\nfrom data_pipeline import run_lock\n"
         "lock = run_lock.acquire(sys.argv[1], command='holder')\n"
         "print('locked', flush=True)\ntime.sleep(600)\n")


def _start_holder(directory):
  process = subprocess.Popen(
      [sys.executable, "-c", _HOLD, directory], cwd=REPO,
      env=fault_harness._env(), stdout=subprocess.PIPE, text=True)  # pylint: disable=protected-access
  assert process.stdout.readline().strip() == "locked"
  return process


def test_second_writer_fails_fast_naming_the_holder(tmp_path):
  directory = str(tmp_path / "run")
  holder = _start_holder(directory)
  try:
    start = time.time()
    with pytest.raises(run_lock.RunLockedError) as e:
      run_lock.acquire(directory)
    assert time.time() - start < 5
    message = str(e.value)
    assert f"pid {holder.pid} on host " in message and "(holder)" in message
    assert os.path.join(directory, ".lock") in message
  finally:
    holder.kill()
    holder.wait()


def test_lock_of_a_killed_holder_is_taken_over(tmp_path):
  directory = str(tmp_path / "run")
  holder = _start_holder(directory)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  messages = []
  with run_lock.hold(directory, log=messages.append) as lock:
    assert lock.took_over["pid"] == holder.pid
    assert f"left by pid {holder.pid}" in messages[0]
    assert run_lock.read_holder(directory)["pid"] == os.getpid()
  assert not os.path.exists(os.path.join(directory, ".lock"))


def test_stale_lock_still_flocked_by_an_orphan_is_taken_over(tmp_path):
  """The holder forked a worker (which inherits the flock) and was killed:
  the recorded pid is dead, so the lock is stale although still flocked."""
  directory = str(tmp_path / "run")
  code = ("import os, sys, time\nfrom data_pipeline import run_lock\n"
          "lock = run_lock.acquire(sys.argv[1])\n"
          "child = os.fork()\n"
          "if child == 0:\n  time.sleep(600)\n  os._exit(0)\n"
          "print(child, flush=True)\ntime.sleep(600)\n")
  holder = _python(code, directory, stdout=subprocess.PIPE, text=True)
  orphan = int(holder.stdout.readline())
  try:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with run_lock.hold(directory) as lock:
      assert lock.took_over["pid"] == holder.pid
  finally:
    os.kill(orphan, signal.SIGKILL)


def test_read_only_directory_is_a_clear_error(workdir):
  directory = os.path.join(workdir, "read_only_lock")
  os.makedirs(directory)
  os.chmod(directory, 0o555)
  try:
    result = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom data_pipeline import run_lock"
         "\ntry:\n  run_lock.acquire(sys.argv[1])\nexcept OSError as e:\n"
         "  print(e)\n  sys.exit(3)\n", directory],
        cwd=REPO, env=fault_harness._env(), capture_output=True, text=True,  # pylint: disable=protected-access
        preexec_fn=fault_harness.read_only_runner(), check=False)
  finally:
    os.chmod(directory, 0o755)
  assert result.returncode == 3, result.stdout + result.stderr
  assert f"cannot create the lock file '{directory}/.lock'" in result.stdout
  assert os.listdir(directory) == []


# -- atomic files ---------------------------------------------------------------------
def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path):
  path = str(tmp_path / "table1.json")
  atomic_files.write_json(path, {"old": True})
  code = ("import sys, time\nfrom data_pipeline import atomic_files\n"
          "with atomic_files.open_atomic(sys.argv[1]) as f:\n"
          "  f.write('{\"new\": ')\n  f.flush()\n  print('half', flush=True)\n"
          "  time.sleep(600)\n")
  writer = _python(code, path, stdout=subprocess.PIPE, text=True)
  assert writer.stdout.readline().strip() == "half"
  writer.send_signal(signal.SIGKILL)
  writer.wait()
  with open(path) as f:
    assert json.load(f) == {"old": True}
  assert len(os.listdir(tmp_path)) == 2  # the file + the dead writer's partial
  atomic_files.write_json(path, {"new": 1})  # the next writer cleans up
  assert os.listdir(tmp_path) == ["table1.json"]


def test_replace_dir_swaps_whole_folders_and_recovers(tmp_path):
  path = str(tmp_path / "model")
  with atomic_files.replace_dir(path) as tmp:
    atomic_files.write_text(os.path.join(tmp, "a"), "1")
  with pytest.raises(RuntimeError):
    with atomic_files.replace_dir(path) as tmp:
      atomic_files.write_text(os.path.join(tmp, "a"), "2")
      raise RuntimeError("killed")
  with open(os.path.join(path, "a")) as f:
    assert f.read() == "1"
  # A writer died between moving the old folder aside and publishing.
  os.rename(path, path + ".old" + atomic_files.PARTIAL_TAG + "999999")
  with atomic_files.replace_dir(path) as tmp:
    assert os.path.isdir(path)  # recovered first
    atomic_files.write_text(os.path.join(tmp, "a"), "3")
  with open(os.path.join(path, "a")) as f:
    assert f.read() == "3"
  assert sorted(os.listdir(tmp_path)) == ["model"]


# -- data pipeline: damaged manifest, full disk, mutated MIDI -----------------------
@pytest.fixture(scope="module")
def real_midi_dir(workdir):
  """A few real folk tunes (music21's miscFolk ABC) as MIDI files."""
  from data_pipeline import abc_to_midi  # pylint: disable=g-import-not-at-top
  from data_pipeline import corpus  # pylint: disable=g-import-not-at-top
  directory = os.path.join(workdir, "real_midi")
  os.makedirs(directory)
  books = corpus.list_tunebooks(collections=("miscFolk",))
  written = 0
  for _, book in books:
    header, tunes = abc_to_midi.split_tunebook(corpus._read_text(book))  # pylint: disable=protected-access
    for i, tune in enumerate(tunes[:40]):
      try:
        abc_to_midi.tune_to_midi_file(tune, os.path.join(
            directory, f"{os.path.basename(book)}_{i}.mid"), header)
        written += 1
      except Exception:  # pylint: disable=broad-except
        pass
  assert written >= 20
  return directory


def _build(midi_dir, output_dir, **kwargs):
  return build_dataset.build_dataset(midi_dir, output_dir, num_workers=1,
                                     progress_every_s=0, log=lambda m: None,
                                     **kwargs)


def test_damaged_manifest_is_rebuilt_identically(real_midi_dir, tmp_path):
  reference = str(tmp_path / "ref")
  _build(real_midi_dir, reference)
  for how in ("truncated", "garbage"):
    output_dir = str(tmp_path / how)
    shutil.copytree(reference, output_dir)
    manifest = os.path.join(output_dir, "manifest.json")
    if how == "truncated":
      fault_harness.truncate_half(manifest)
    else:
      with open(manifest, "wb") as f:
        f.write(os.urandom(200))
    assert _build(real_midi_dir, output_dir)["cached"] is False
    assert fault_harness.files_digest(output_dir, "*.tfrecord") == (
        fault_harness.files_digest(reference, "*.tfrecord"))


def test_full_disk_fails_cleanly_then_the_rerun_completes(real_midi_dir,
                                                          tmp_path):
  reference = str(tmp_path / "ref")
  _build(real_midi_dir, reference)
  assert os.path.getsize(glob.glob(os.path.join(
      reference, "train-*.tfrecord"))[0]) > 6000
  output_dir = str(tmp_path / "out")
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (4000, hard))  # "disk full"
  try:
    with pytest.raises(Exception) as e:
      _build(real_midi_dir, output_dir)
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
  assert "File too large" in str(e.value) or "EFBIG" in str(e.value)
  assert not os.path.exists(os.path.join(output_dir, "manifest.json"))
  assert not glob.glob(os.path.join(output_dir, "*.tfrecord"))
  _build(real_midi_dir, output_dir)
  assert fault_harness.files_digest(output_dir, "*.tfrecord") == (
      fault_harness.files_digest(reference, "*.tfrecord"))
  assert not glob.glob(os.path.join(output_dir, "*partial*"))


def test_mutated_midi_files_are_parsed_or_skipped_with_a_reason(real_midi_dir,
                                                                 tmp_path):
  sources = sorted(glob.glob(os.path.join(real_midi_dir, "*.mid")))
  midi_dir = tmp_path / "mutated"
  midi_dir.mkdir()
  rng = random.Random(0)
  count = 100
  for i in range(count):
    with open(sources[i % len(sources)], "rb") as f:
      data = fault_harness.mutate(bytearray(f.read()), rng)
    (midi_dir / f"m{i:03d}.mid").write_bytes(bytes(data))
  manifest = _build(str(midi_dir), str(tmp_path / "out"), file_timeout_s=10)
  assert manifest["files_used"] + manifest["files_skipped"] == count
  assert all(s["reason"] for s in manifest["skipped"])
  assert manifest["files_used"] > 0 and manifest["files_skipped"] > 0


def test_a_parse_slower_than_the_timeout_is_skipped(monkeypatch, tmp_path):
  from data_pipeline import convert  # pylint: disable=g-import-not-at-top
  path = tmp_path / "slow.mid"
  path.write_bytes(b"MThd")

  def hang(*args, **kwargs):
    del args, kwargs
    time.sleep(30)
  monkeypatch.setattr(convert, "midi_file_to_melodies", hang)
  start = time.time()
  melodies, reason, detail, _ = convert.process_midi_file(str(path),
                                                          timeout_s=0.5)
  assert time.time() - start < 5
  assert (melodies, reason) == ([], "parse timeout")
  assert "0.5 s" in detail


# -- broken tuned models ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tuned_model(workdir):
  tf.random.set_seed(0)
  directory = os.path.join(workdir, "tuned")
  melody_policy.save_tuned(directory, "q", note_rnn.NoteRNN((8,)),
                           note_rnn.NoteRNN((8,)))
  assert sorted(os.listdir(workdir)).count("tuned") == 1
  assert not glob.glob(os.path.join(workdir, "*partial*"))
  return directory


@pytest.mark.parametrize("damage", [
    "tuned.json missing", "tuned.json garbage", "wrong algorithm",
    "q_network config missing", "reward_rnn weights truncated",
    "q_network index missing"])
def test_broken_tuned_model_is_a_clear_error_for_evaluate_and_export(
    tuned_model, tmp_path, damage):
  from export import exporter  # pylint: disable=g-import-not-at-top
  from rl_tuner_tf.evaluation import pipeline  # pylint: disable=g-import-not-at-top
  model = str(tmp_path / "model")
  shutil.copytree(tuned_model, model)
  if damage == "tuned.json missing":
    os.remove(os.path.join(model, "tuned.json"))
  elif damage == "tuned.json garbage":
    with open(os.path.join(model, "tuned.json"), "w") as f:
      f.write("{not json")
  elif damage == "wrong algorithm":
    with open(os.path.join(model, "tuned.json"), "w") as f:
      f.write('{"algorithm": "zz"}')
  elif damage == "q_network config missing":
    os.remove(os.path.join(model, "q_network", "config.json"))
  elif damage == "reward_rnn weights truncated":
    fault_harness.truncate_half(
        glob.glob(os.path.join(model, "reward_rnn", "*.data-*"))[0])
  else:
    os.remove(glob.glob(os.path.join(model, "q_network", "*.index"))[0])
  with pytest.raises((pipeline.ConfigError, FileNotFoundError)) as e:
    pipeline.load_models(None, [model])
  assert model in str(e.value)
  base = str(tmp_path / "exports")
  with pytest.raises((ValueError, FileNotFoundError)) as e:  # UsageError in the CLI
    exporter.export_all(base, tuned_model_dir=model,
                        export_tfagents_policy=False)
  assert model in str(e.value)
  assert not os.path.exists(base) or not os.listdir(base)


# -- the two faults, with real training processes ---------------------------
@pytest.fixture(scope="module")
def faults(workdir):
  return fault_harness.Faults(os.path.join(workdir, "suite"), full=FULL,
                              seed=0, log=print)


@pytest.fixture(scope="module")
def small_note_rnn(faults):
  return faults.note_rnn_dir()


def test_two_trainings_on_one_output_dir(faults, small_note_rnn):
  """Issue fault 2: the second `python -m rl_tuner_tf.train` fails fast naming
  the first; the first completes, exactly as an uninterrupted run."""
  del small_note_rnn
  [trial] = faults.fault_two_writers_tuning()
  assert trial.survived, trial.detail


def test_truncated_latest_tuning_checkpoint_resumes_from_the_previous(faults):
  """Issue fault 1: the rerun reports the bad checkpoint by path, resumes
  from the previous one and completes."""
  faults._ref["tuning"] = faults.path("two_writers")  # its finished run  # pylint: disable=protected-access
  [trial] = faults.fault_truncated_tuning_checkpoint()
  assert trial.survived, trial.detail
  [trial] = faults.fault_all_tuning_checkpoints_damaged()
  assert trial.survived, trial.detail


# -- everything else: RL_TUNER_FAULTS_FULL=1 --------------------------------------------
@pytest.mark.skipif(not FULL, reason="the full fault suite takes about 15 "
                    "minutes on 2 cores, as long as the rest of the tests: set "
                    "RL_TUNER_FAULTS_FULL=1 (or run tests/faults/run_faults.py "
                    "--full)")
def test_full_fault_suite(workdir):
  suite = fault_harness.Faults(os.path.join(workdir, "full"), full=True,
                               seed=0, log=print)
  trials = []
  for fault in suite.all_faults():
    trials += fault()
  print(fault_harness.table(trials))
  kills = [t for t in trials if t.fault.startswith("kill -9")]
  assert len(kills) >= 20
  # Every job was killed both before and after its first checkpoint or
  # published file.
  for job in {t.fault for t in kills}:
    assert {t.landed for t in kills if t.fault == job} == {"before", "after"}, job
  lost = [f"{t.fault}: {t.detail}" for t in trials if not t.survived]
  assert not lost, "\n".join(lost)


def test_a_checkpoint_of_other_objects_is_a_clear_error(tmp_path):
  directory = str(tmp_path)
  other = tf.train.Checkpoint(x=tf.Variable([1.0, 2.0]))
  checkpointing.manager(other, directory).save()
  mine = tf.train.Checkpoint(y=tf.Variable(0))
  with pytest.raises(checkpointing.IncompatibleCheckpointError,
                     match=r"ckpt-1 does not match this job's objects.*\n"
                           r"To start this run over, move or delete"):
    checkpointing.restore_latest(
        mine, directory, log=lambda m: None,
        check=lambda status, _: status.assert_consumed())
