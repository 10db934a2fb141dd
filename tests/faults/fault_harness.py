"""Fault injection for every long job: the trials behind tests/faults/.

Each fault runs real commands (``python -m ...``) in subprocesses at tiny
sizes, injects the fault -- kill -9 at a random moment, a damaged checkpoint
or manifest, a full disk (RLIMIT_FSIZE), a read-only output folder, mutated
MIDI files, a broken tuned model -- then checks that nothing was lost: the
same command run again completes with valid outputs (identical to an
uninterrupted run where the job is deterministic), or the fault is reported
by a clear message (no traceback) and leaves nothing corrupt behind.

    python tests/faults/run_faults.py [--full] [--seed=N]

prints a table fault / trials / survived / lost.  ``Faults(workdir, full)``
is shared by the pytest file and the script; each ``fault_*`` method returns
a list of Trial results.
"""
import contextlib
import dataclasses
import glob
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable

TINY_COLLECTION = "miscFolk"  # 2 ABC books, the smallest music21 collection


@dataclasses.dataclass
class Trial:
  fault: str
  survived: bool
  detail: str = ""
  # kill -9 trials: "before" / "after" the job's first checkpoint or
  # published file, as found on disk once the job was dead.
  landed: str = ""


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  env["CUDA_VISIBLE_DEVICES"] = ""
  env["PYTHONUNBUFFERED"] = "1"  # each output line as it is printed, as on a terminal
  return env


def run(command, timeout=900, preexec_fn=None):
  """Runs a command to completion -> (returncode, output)."""
  result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec_fn,
                          check=False)
  return result.returncode, result.stdout + result.stderr


class _Job:
  """A command in its own session, its merged output read as it comes."""

  def __init__(self, command):
    self.start = time.time()
    self.process = subprocess.Popen(
        command, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True)
    self.lines = []
    self.first_line = threading.Event()
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.process.stdout:
      self.lines.append(line.decode(errors="replace"))
      self.first_line.set()
    self.first_line.set()  # no output at all: stop waiting

  def wait_first_line(self, timeout=900):
    """-> seconds from the start to the job's first output line (None if
    it ended without one)."""
    self.first_line.wait(timeout)
    return time.time() - self.start if self.lines else None

  def running(self):
    return self.process.poll() is None

  def wait_until(self, predicate, poll_s=0.02):
    """Polls predicate while the job runs -> seconds from the start when it
    first held, or None if the job ended first."""
    while self.running():
      if predicate():
        return time.time() - self.start
      time.sleep(poll_s)
    return None

  def kill(self):
    with contextlib.suppress(ProcessLookupError, PermissionError):
      os.killpg(self.process.pid, signal.SIGKILL)

  def finish(self, timeout=900):
    """Waits for the end (killing what is left of the session) -> output."""
    try:
      self.process.wait(timeout)
    finally:
      self.kill()
    self._reader.join(60)
    return "".join(self.lines)


@dataclasses.dataclass
class Timing:
  """One uninterrupted run: seconds from its start to its first output
  line, to its first checkpoint / published file, and to its end."""
  first_line: float
  durable: float
  end: float


def time_job(command, durable):
  """Runs command uninterrupted, watching its output and durable() -> Timing."""
  job = _Job(command)
  first = job.wait_first_line()
  seen = job.wait_until(durable)
  output = job.finish()
  end = time.time() - job.start
  assert job.process.returncode == 0, tail(output, 3000)
  assert first is not None, "the job printed nothing"
  if seen is None:
    seen = end if durable() else None
  assert seen is not None, "no checkpoint or published file was seen"
  return Timing(first, seen, end)


def run_and_kill(command, stratum, timing, durable, rng):
  """kill -9s the whole job (the process and any workers it started) at a
  random moment of its work: after its first output line, in the stratum
  "before" (uniform over the reference's time from the first line to the
  first checkpoint / published file) or "after" (once durable() holds,
  uniform over the reference's remaining time).

  -> (killed, landed, kill_at): landed is "before" / "after" as found on
  disk with the job dead; killed is False when the job ended first.
  """
  job = _Job(command)
  started = job.wait_first_line()
  if started is None or not job.running():
    job.finish()
    return False, "", 0.0
  if stratum == "before":
    delay = rng.uniform(0.05, 0.95) * max(timing.durable - timing.first_line,
                                          0.0)
    origin = started
  else:
    origin = job.wait_until(durable)
    if origin is None:
      job.finish()
      return False, "", 0.0
    delay = rng.uniform(0.05, 0.95) * max(timing.end - timing.durable, 0.0)
  deadline = job.start + origin + delay
  while job.running() and time.time() < deadline:
    time.sleep(min(0.01, max(deadline - time.time(), 0.0)))
  kill_at = time.time() - job.start
  killed = job.running()
  job.kill()
  job.finish()
  landed = "after" if durable() else "before"
  return killed, landed, kill_at


def clean_error(returncode, output, must_name=None):
  """A failure told clearly: non-zero exit, no traceback, names a path."""
  problems = []
  if returncode == 0:
    problems.append("exit code 0")
  if "Traceback (most recent call last)" in output:
    problems.append("a traceback")
  if must_name and must_name not in output:
    problems.append(f"no mention of {must_name}")
  return problems


def tail(text, n=800):
  return text[-n:].replace("\n", " | ")


def files_digest(directory, pattern):
  """{relative name: bytes} of the files matching pattern."""
  out = {}
  for path in sorted(glob.glob(os.path.join(directory, pattern))):
    with open(path, "rb") as f:
      out[os.path.basename(path)] = f.read()
  return out


def truncate_half(path):
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(size // 2)


def latest_checkpoint_data(directory):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  latest = tf.train.latest_checkpoint(directory)
  return latest, glob.glob(latest + ".data-*")[0]


def limit_file_size(max_bytes):
  """preexec_fn: a 'full disk' -- writes beyond max_bytes fail (EFBIG)."""
  def apply():
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
  return apply


def read_only_runner():
  """preexec_fn making a chmod 0555 folder really read-only for the child.

  Root ignores permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
  CAP_FOWNER): as root, those capabilities are dropped from the child's
  bounding set, which removes them at its exec (Linux prctl).
  """
  if os.geteuid() != 0:
    return None

  def apply():
    import ctypes  # pylint: disable=g-import-not-at-top
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2, 3):  # DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER
      if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
  return apply


class Faults:
  """The fault catalogue. ``full`` selects the complete trial counts."""

  def __init__(self, workdir, full=False, seed=0, log=print):
    self.work = os.path.abspath(workdir)
    self.full = full
    self.rng = random.Random(seed)
    self.log = log
    self._ref = {}
    os.makedirs(self.work, exist_ok=True)
    os.chmod(self.work, 0o755)

  def path(self, *parts):
    return os.path.join(self.work, *parts)

  def fresh(self, *parts):
    path = self.path(*parts)
    if os.path.exists(path):
      shutil.rmtree(path)
    return path

  # -- commands at tiny sizes -------------------------------------------------
  def corpus_command(self, root):
    return [PY, "-m", "data_pipeline.build_corpus", f"--root={root}",
            f"--collections={TINY_COLLECTION}", "--num_workers=2"]

  def dataset_command(self, output_dir, midi_dir=None):
    return [PY, "-m", "data_pipeline.build_dataset",
            f"--midi_dir={midi_dir or self.midi_dir()}",
            f"--output_dir={output_dir}", "--num_workers=2",
            "--melodies_per_shard=40"]  # several shards (185 melodies)

  def note_rnn_command(self, run_dir, num_steps=60):
    return [PY, "-m", "rl_tuner_tf.train_note_rnn",
            f"--tfrecord_dir={self.tfrecord_dir()}", f"--run_dir={run_dir}",
            "--layer_sizes=16", "--batch_size=8", f"--num_steps={num_steps}",
            "--checkpoint_every=10", "--eval_every=30", "--log_every=10",
            "--window_length=16", "--num_masked_steps=2",
            "--eval_batch_size=64"]

  def tune_command(self, output_dir):
    return [PY, "-m", "rl_tuner_tf.train", "--algorithm=q",
            f"--note_rnn_checkpoint={self.note_rnn_dir()}",
            f"--output_dir={output_dir}", "--num_notes=800",
            "--num_compositions=40", "--minibatches_per_update=1",
            "--checkpoint_every_notes=200", "--log_every_notes=200",
            "--figure2_every_notes=400", "--figure2_melodies=10",
            "--replay_capacity=800", "--report=false", "--seed=3",
            "--keep_checkpoints"]  # the damaged-checkpoint faults read them

  def evaluate_command(self, output_dir, tuned_model_dir=None):
    return [PY, "-m", "rl_tuner_tf.evaluate",
            f"--tuned_model_dirs={tuned_model_dir or self.tuned_model_dir()}",
            f"--note_rnn_checkpoint={self.note_rnn_dir()}",
            f"--output_dir={output_dir}", "--num_melodies=300",
            "--batch_size=100", "--num_samples=1",
            f"--reference_tfrecord_dir={self.tfrecord_dir()}"]

  def export_command(self, model_base_path, tuned_model_dir=None,
                     tfagents_policy=False):
    """tfagents_policy: also the TF-Agents policy, published after the
    SavedModel (a kill can land between the two)."""
    return [PY, "-m", "export.saved_model",
            f"--tuned_model_dir={tuned_model_dir or self.tuned_model_dir()}",
            f"--model_base_path={model_base_path}",
            f"--export_tfagents_policy={str(tfagents_policy).lower()}"]

  def reward_model_command(self, output_dir):
    return [PY, "-m", "rl_tuner_tf.train_reward_model",
            f"--preferences={self.preference_file()}",
            f"--note_rnn_checkpoint={self.note_rnn_dir()}",
            f"--output_dir={output_dir}", "--num_steps=60",
            "--batch_size=16", "--checkpoint_every=10", "--log_every=10"]

  def dpo_command(self, output_dir):
    """DPO on the preference file: 40 steps of 16 pairs of 32 notes."""
    return [PY, "-m", "rl_tuner_tf.train", "--algorithm=dpo",
            f"--dpo_preferences={self.preference_file()}",
            "--dpo_batch_size=16", f"--num_notes={40 * 2 * 16 * 32}",
            f"--note_rnn_checkpoint={self.note_rnn_dir()}",
            f"--output_dir={output_dir}",
            f"--checkpoint_every_notes={8 * 2 * 16 * 32}",
            f"--log_every_notes={8 * 2 * 16 * 32}",
            f"--figure2_every_notes={20 * 2 * 16 * 32}",
            "--figure2_melodies=10", "--report=false", "--seed=3",
            "--keep_checkpoints"]

  def rlhf_command(self, output_dir):
    """RLOO on r_MT + the reference reward model's r_RM: 16 iterations of
    10 compositions of 32 notes."""
    return [PY, "-m", "rl_tuner_tf.train", "--algorithm=rloo",
            "--reward=r_mt+rm",
            f"--reward_model_dir={os.path.join(self.reward_model_run(), 'model')}",
            "--pg_num_compositions=10", "--rloo_k=5", "--pg_minibatches=2",
            "--pg_epochs=1", f"--num_notes={16 * 10 * 32}",
            f"--note_rnn_checkpoint={self.note_rnn_dir()}",
            f"--output_dir={output_dir}",
            f"--checkpoint_every_notes={4 * 10 * 32}",
            f"--log_every_notes={4 * 10 * 32}",
            f"--figure2_every_notes={8 * 10 * 32}",
            "--figure2_melodies=10", "--report=false", "--seed=3",
            "--keep_checkpoints"]

  # -- references (uninterrupted runs, built once) ------------------------------
  def _reference(self, name, build):
    if name not in self._ref:
      start = time.time()
      self._ref[name] = build()
      self._ref[name + "_seconds"] = time.time() - start
    return self._ref[name]

  def _command_reference(self, name, command):
    """The folder ref_<name> written by command(folder), run once without
    a fault (it must succeed): what the fault trials compare with."""
    def build():
      output_dir = self.fresh(f"ref_{name}")
      code, out = run(command(output_dir))
      assert code == 0, tail(out, 3000)
      return output_dir
    return self._reference(name, build)

  def corpus_root(self):
    return self._command_reference("corpus", self.corpus_command)

  def midi_dir(self):
    return os.path.join(self.corpus_root(), "corpus_midi")

  def tfrecord_dir(self):
    return os.path.join(self.corpus_root(), "corpus_tfrecords")

  def note_rnn_dir(self):
    """A small random Note RNN (16 units) for tuning, evaluation, export."""
    def build():
      directory = self.fresh("ref_note_rnn16")
      code, out = run([PY, "-c", (
          "import tensorflow as tf\n"
          "from rl_tuner_tf import note_rnn\n"
          "tf.random.set_seed(0)\n"
          f"note_rnn.save(note_rnn.NoteRNN((16,)), {directory!r})\n")])
      assert code == 0, tail(out, 3000)
      return directory
    return self._reference("note_rnn16", build)

  def preference_file(self):
    """400 pairs of random 32-note melodies rated by 8 simulated listeners
    who prefer higher melodies."""
    def build():
      import numpy as np  # pylint: disable=g-import-not-at-top
      from rl_tuner_tf import preferences  # pylint: disable=g-import-not-at-top
      rng = np.random.default_rng(0)
      a, b = (rng.integers(2, 38, size=(400, 32)) for _ in range(2))
      rating = preferences.simulate_ratings(
          a, b, preferences.register_utility, 0.5, 1.0, seed=0)
      pairs = preferences.PreferencePairs(
          a, b, rating, np.array([f"p{i % 8}" for i in range(400)]),
          provenance={"simulated": "register"})
      path = os.path.join(self.fresh("ref_preferences"), "pairs.npz")
      preferences.save(pairs, path)
      return path
    return self._reference("preferences", build)

  def reward_model_run(self):
    return self._command_reference("reward_model", self.reward_model_command)

  def tuning_run(self):
    return self._command_reference("tuning", self.tune_command)

  def tuned_model_dir(self):
    return os.path.join(self.tuning_run(), "q", "model")

  def note_rnn_run(self):
    return self._command_reference("note_rnn_run", self.note_rnn_command)

  def evaluation(self):
    return self._command_reference("evaluation", self.evaluate_command)

  # -- validity checks ---------------------------------------------------------
  def check_dataset(self, output_dir, reference):
    """[] when output_dir holds the reference's shards byte for byte."""
    problems = []
    try:
      with open(os.path.join(output_dir, "manifest.json")) as f:
        manifest = json.load(f)
      with open(os.path.join(reference, "manifest.json")) as f:
        expected = json.load(f)
    except (OSError, ValueError) as e:
      return [f"manifest: {e}"]
    for key in ("melodies", "steps", "files_used", "files_skipped"):
      if manifest.get(key) != expected.get(key):
        problems.append(f"{key} {manifest.get(key)} != {expected.get(key)}")
    got = files_digest(output_dir, "*.tfrecord")
    want = files_digest(reference, "*.tfrecord")
    if got != want:
      problems.append(f"shards differ: {sorted(got)} vs {sorted(want)}")
    if glob.glob(os.path.join(output_dir, "*.partial*")):
      problems.append("partial files left")
    return problems

  def check_tuning(self, output_dir):
    """A valid tuned model, Figure 2 at every point, and the weights of the
    uninterrupted run: tuning is deterministic across resumes (the replay
    generator is in the checkpoint)."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    from rl_tuner_tf import melody_policy  # pylint: disable=g-import-not-at-top
    problems = []
    try:
      _, q, _, config = melody_policy.load_tuned(
          os.path.join(output_dir, "q", "model"))
    except Exception as e:  # pylint: disable=broad-except
      return [f"tuned model unreadable: {type(e).__name__}: {e}"]
    if config.get("notes_composed") != 800:
      problems.append(f"notes_composed {config.get('notes_composed')}")
    with open(os.path.join(output_dir, "q", "figure2.csv")) as f:
      steps = [line.split(",")[0] for line in f.read().split()[1:]]
    if steps != ["0", "400", "800"]:
      problems.append(f"figure2 steps {steps}")
    _, ref_q, _, _ = melody_policy.load_tuned(self.tuned_model_dir())
    same = all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(q.variables, ref_q.variables))
    if not same:
      problems.append("weights differ from the uninterrupted run")
    return problems

  def check_reward_model(self, output_dir):
    """The trained reward model scores like the uninterrupted run's
    (batches drawn from (seed, step), the optimizer in the checkpoint)."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    from rl_tuner_tf import preferences  # pylint: disable=g-import-not-at-top
    from rl_tuner_tf import reward_model  # pylint: disable=g-import-not-at-top
    try:
      got = reward_model.load(os.path.join(output_dir, "model"))
      with open(os.path.join(output_dir, "metrics.json")) as f:
        steps = json.load(f)["steps"]
    except Exception as e:  # pylint: disable=broad-except
      return [f"reward model unreadable: {type(e).__name__}: {e}"]
    problems = [] if steps == 60 else [f"steps {steps} != 60"]
    want = reward_model.load(os.path.join(self.reward_model_run(), "model"))
    tokens = preferences.load(self.preference_file()).tokens_a[:64]
    if not np.array_equal(got(tokens), want(tokens)):
      problems.append("scores differ from the uninterrupted run")
    return problems

  def check_tuned_like(self, output_dir, reference, algorithm):
    """The run's tuned model has the uninterrupted run's notes and weights."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    from rl_tuner_tf import melody_policy  # pylint: disable=g-import-not-at-top
    try:
      _, got, _, config = melody_policy.load_tuned(
          os.path.join(output_dir, algorithm, "model"))
    except Exception as e:  # pylint: disable=broad-except
      return [f"tuned model unreadable: {type(e).__name__}: {e}"]
    _, want, _, want_config = melody_policy.load_tuned(
        os.path.join(reference, algorithm, "model"))
    problems = []
    if config.get("notes_composed") != want_config.get("notes_composed"):
      problems.append(f"notes_composed {config.get('notes_composed')}")
    if not all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(got.variables, want.variables)):
      problems.append("weights differ from the uninterrupted run")
    return problems

  def check_note_rnn(self, run_dir, num_steps=60):
    from rl_tuner_tf import note_rnn  # pylint: disable=g-import-not-at-top
    problems = []
    for sub in ("export", "latest_export"):
      directory = os.path.join(run_dir, sub)
      try:
        note_rnn.load(directory)
        with open(os.path.join(directory, "provenance.json")) as f:
          steps = json.load(f)["steps"]
      except Exception as e:  # pylint: disable=broad-except
        problems.append(f"{sub}: {type(e).__name__}: {e}")
        continue
      if steps != num_steps:
        problems.append(f"{sub}: steps {steps} != {num_steps}")
    return problems

  def check_evaluation(self, output_dir):
    import numpy as np  # pylint: disable=g-import-not-at-top
    problems = []
    reference = self.evaluation()
    for model in ("note_rnn", "q"):
      try:
        got = np.load(os.path.join(output_dir, model, "melodies.npy"))
        with open(os.path.join(output_dir, model, "table1.json")) as f:
          table = json.load(f)
      except Exception as e:  # pylint: disable=broad-except
        problems.append(f"{model}: {type(e).__name__}: {e}")
        continue
      want = np.load(os.path.join(reference, model, "melodies.npy"))
      if not np.array_equal(got, want):
        problems.append(f"{model}: melodies differ from the uninterrupted run")
      with open(os.path.join(reference, model, "table1.json")) as f:
        ref_table = json.load(f)
      drop = ("generation_seconds", "statistics_seconds")
      if ({k: v for k, v in table.items() if k not in drop} !=
          {k: v for k, v in ref_table.items() if k not in drop}):
        problems.append(f"{model}: table1.json differs")
    if not os.path.exists(os.path.join(output_dir, "table1.md")):
      problems.append("no table1.md")
    return problems

  def check_export(self, model_base_path):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from export import versioning  # pylint: disable=g-import-not-at-top
    problems = []
    versions = versioning.existing_versions(model_base_path)
    if not versions:
      return ["no version"]
    for version in versions:
      directory = os.path.join(model_base_path, str(version))
      for name in ("saved_model.pb", "export_info.json", "variables"):
        if not os.path.exists(os.path.join(directory, name)):
          problems.append(f"version {version} lacks {name}")
    leftovers = [n for n in os.listdir(model_base_path)
                 if n.startswith(".tmp-export-")]
    if leftovers:
      problems.append(f"temporary folders left: {leftovers}")
    if not problems:
      loaded = tf.saved_model.load(
          os.path.join(model_base_path, str(versions[-1])))
      if "generate_random_primer" not in loaded.signatures and not list(
          loaded.signatures):
        problems.append("newest version has no signature")
    return problems

  # -- kill -9 at random moments -------------------------------------------------
  def _kill_trials(self, fault, count, prepare, command, check, durable):
    """count trials: kill the job at a random moment of its work (after its
    first output line; alternately before and after its first checkpoint or
    published file, ``durable(target)``), rerun the same command, check its
    outputs.  One uninterrupted run first times the job on this machine."""
    timing = time_job(command(prepare("timing")),
                      lambda: durable(prepare.last))
    self.log(f"  {fault}: first line at {timing.first_line:.1f}s, first "
             f"checkpoint / published file at {timing.durable:.1f}s, end at "
             f"{timing.end:.1f}s")
    trials = []
    for i in range(count):
      stratum = ("before", "after")[i % 2]
      for _ in range(4):  # a run that finished before its kill is redone
        target = prepare(i)
        killed, landed, kill_at = run_and_kill(
            command(target), stratum, timing, lambda: durable(target),
            self.rng)
        if killed:
          break
      code, out = run(command(target))
      problems = [] if code == 0 else [f"rerun exit {code}: {tail(out)}"]
      if not problems:
        problems = check(target)
      if not killed:  # not a kill trial at all: counted as not survived
        problems.append("never killed: every run finished first")
      moment = (f"kill -9 at {kill_at:.1f}s, {landed} the first checkpoint "
                f"/ published file" if killed else "had finished")
      trials.append(Trial(fault, not problems,
                          moment + ("; " + "; ".join(problems)
                                    if problems else ""),
                          landed if killed else ""))
      self.log(f"  {fault} #{i + 1}: {trials[-1].detail} -> "
               f"{'survived' if not problems else 'LOST'}")
    return trials

  def n(self, quick, full):
    return full if self.full else quick

  def _fresh_in(self, name):
    """prepare(i) for _kill_trials: a fresh folder; .last is the latest."""
    def prepare(i):
      prepare.last = self.fresh(name, str(i))
      return prepare.last
    return prepare

  def fault_kill_corpus_build(self):
    reference = self.corpus_root()
    return self._kill_trials(
        "kill -9: corpus build", self.n(2, 4), self._fresh_in("kill_corpus"),
        self.corpus_command,
        lambda root: self.check_dataset(
            os.path.join(root, "corpus_tfrecords"),
            os.path.join(reference, "corpus_tfrecords")),
        # the ABC -> MIDI stage published (its manifest is written last)
        lambda root: os.path.exists(
            os.path.join(root, "corpus_midi_manifest.json")))

  def _dataset_reference(self):
    return self._command_reference("dataset", self.dataset_command)

  def fault_kill_dataset_build(self):
    reference = self._dataset_reference()
    return self._kill_trials(
        "kill -9: dataset build", self.n(2, 4),
        self._fresh_in("kill_dataset"), self.dataset_command,
        lambda out: self.check_dataset(out, reference),
        lambda out: bool(glob.glob(os.path.join(out, "*.tfrecord"))))

  def fault_kill_note_rnn_training(self):
    return self._kill_trials(
        "kill -9: Note RNN training", self.n(2, 4),
        self._fresh_in("kill_note_rnn"), self.note_rnn_command,
        self.check_note_rnn,
        lambda run_dir: os.path.exists(os.path.join(run_dir, "ckpt",
                                                    "checkpoint")))

  def fault_kill_tuning(self):
    self.tuning_run()
    return self._kill_trials(
        "kill -9: tuning", self.n(2, 4), self._fresh_in("kill_tuning"),
        self.tune_command, self.check_tuning,
        lambda out: os.path.exists(os.path.join(out, "q", "checkpoints",
                                                "checkpoint")))

  def fault_kill_evaluation(self):
    self.evaluation()
    return self._kill_trials(
        "kill -9: evaluation", self.n(2, 4),
        self._fresh_in("kill_evaluation"), self.evaluate_command,
        self.check_evaluation,
        lambda out: bool(glob.glob(os.path.join(out, "*", "table1.json"))))

  def fault_kill_export(self):
    self.tuned_model_dir()
    return self._kill_trials(
        "kill -9: export", self.n(2, 4), self._fresh_in("kill_export"),
        lambda base: self.export_command(base, tfagents_policy=True),
        self.check_export,
        lambda base: bool(glob.glob(os.path.join(base, "*",
                                                 "saved_model.pb"))))

  def fault_kill_reward_model_training(self):
    self.reward_model_run()
    return self._kill_trials(
        "kill -9: reward model training", self.n(2, 4),
        self._fresh_in("kill_reward_model"), self.reward_model_command,
        self.check_reward_model,
        lambda out: os.path.exists(os.path.join(out, "checkpoints",
                                                "checkpoint")))

  def fault_kill_dpo_tuning(self):
    reference = self._command_reference("dpo", self.dpo_command)
    return self._kill_trials(
        "kill -9: DPO tuning", self.n(2, 4), self._fresh_in("kill_dpo"),
        self.dpo_command,
        lambda out: self.check_tuned_like(out, reference, "dpo"),
        lambda out: os.path.exists(os.path.join(out, "dpo", "checkpoints",
                                                "checkpoint")))

  def fault_kill_rlhf_tuning(self):
    reference = self._command_reference("rlhf", self.rlhf_command)
    return self._kill_trials(
        "kill -9: RLHF tuning (RLOO, r_MT + r_RM)", self.n(2, 4),
        self._fresh_in("kill_rlhf"), self.rlhf_command,
        lambda out: self.check_tuned_like(out, reference, "rloo"),
        lambda out: os.path.exists(os.path.join(out, "rloo", "checkpoints",
                                                "checkpoint")))

  # -- damaged checkpoints -------------------------------------------------------
  def fault_truncated_tuning_checkpoint(self):
    """The issue's first fault: the latest checkpoint's data file cut in
    half; the rerun skips it, resumes from the previous one, and ends with
    the uninterrupted run's exact model."""
    run_dir = self.fresh("bad_ckpt_tuning")
    shutil.copytree(self.tuning_run(), run_dir)
    shutil.rmtree(os.path.join(run_dir, "q", "model"))
    latest, data = latest_checkpoint_data(os.path.join(run_dir, "q",
                                                       "checkpoints"))
    truncate_half(data)
    code, out = run(self.tune_command(run_dir))
    problems = [] if code == 0 else [f"exit {code}: {tail(out)}"]
    if f"checkpoint {latest} cannot be read" not in out:
      problems.append("the bad checkpoint was not reported by path")
    if "resuming from" not in out or f"resuming from {latest} " in out:
      problems.append("did not resume from the previous checkpoint")
    if not problems:
      problems = self.check_tuning(run_dir)
    return [Trial("damaged checkpoint: tuning (truncated .data)",
                  not problems, "; ".join(problems))]

  def fault_all_tuning_checkpoints_damaged(self):
    run_dir = self.fresh("all_bad_ckpt_tuning")
    shutil.copytree(self.tuning_run(), run_dir)
    shutil.rmtree(os.path.join(run_dir, "q", "model"))
    ckpt_dir = os.path.join(run_dir, "q", "checkpoints")
    for data in glob.glob(os.path.join(ckpt_dir, "*.data-*")):
      truncate_half(data)
    code, out = run(self.tune_command(run_dir))
    problems = clean_error(code, out, must_name=ckpt_dir)
    if "none of the 3 checkpoint(s)" not in out:
      problems.append("no 'none readable' message")
    return [Trial("damaged checkpoints: all of tuning's", not problems,
                  "; ".join(problems) or tail(out.strip().splitlines()[-1]
                                              if out.strip() else "", 200))]

  def fault_truncated_note_rnn_checkpoint(self):
    run_dir = self.fresh("bad_ckpt_note_rnn")
    shutil.copytree(self.note_rnn_run(), run_dir)
    for sub in ("export", "latest_export"):
      shutil.rmtree(os.path.join(run_dir, sub))
    latest, data = latest_checkpoint_data(os.path.join(run_dir, "ckpt"))
    truncate_half(data)
    code, out = run(self.note_rnn_command(run_dir))
    problems = [] if code == 0 else [f"exit {code}: {tail(out)}"]
    if f"checkpoint {latest} cannot be read" not in out:
      problems.append("the bad checkpoint was not reported by path")
    if not problems:
      problems = self.check_note_rnn(run_dir)
    return [Trial("damaged checkpoint: Note RNN (truncated .data)",
                  not problems, "; ".join(problems))]

  def fault_damaged_manifests(self):
    """Truncated / garbage manifests: the next build rebuilds identically."""
    trials = []
    reference = self._dataset_reference()
    for how in ("truncated", "garbage"):
      output_dir = self.fresh("bad_manifest", how)
      shutil.copytree(reference, output_dir)
      manifest = os.path.join(output_dir, "manifest.json")
      if how == "truncated":
        truncate_half(manifest)
      else:
        with open(manifest, "wb") as f:
          f.write(os.urandom(300))
      code, out = run(self.dataset_command(output_dir))
      problems = [] if code == 0 else [f"exit {code}: {tail(out)}"]
      if not problems:
        problems = self.check_dataset(output_dir, reference)
      trials.append(Trial(f"damaged manifest: dataset ({how})", not problems,
                          "; ".join(problems)))
    root = self.fresh("bad_corpus_manifest")
    shutil.copytree(self.corpus_root(), root)
    truncate_half(os.path.join(root, "corpus_midi_manifest.json"))
    code, out = run(self.corpus_command(root))
    problems = [] if code == 0 else [f"exit {code}: {tail(out)}"]
    if not problems:
      problems = self.check_dataset(
          os.path.join(root, "corpus_tfrecords"),
          os.path.join(self.corpus_root(), "corpus_tfrecords"))
    trials.append(Trial("damaged manifest: corpus (truncated)", not problems,
                        "; ".join(problems)))
    return trials

  # -- one writer per run directory ----------------------------------------------
  def fault_two_writers_tuning(self):
    """The issue's second fault: two trainings on one --output_dir."""
    output_dir = self.fresh("two_writers")
    first = subprocess.Popen(self.tune_command(output_dir), cwd=REPO,
                             env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    problems = []
    try:
      lock = os.path.join(output_dir, "q", ".lock")
      deadline = time.time() + 300
      while not os.path.exists(lock) and time.time() < deadline:
        if first.poll() is not None:
          break
        time.sleep(0.2)
      # The first is frozen while it holds the lock, so that on a loaded
      # machine it cannot finish before the second one gets to the lock.
      os.kill(first.pid, signal.SIGSTOP)
      started = time.time()
      try:
        code, out = run(self.tune_command(output_dir), timeout=600)
      finally:
        os.kill(first.pid, signal.SIGCONT)
      seconds = time.time() - started
      problems += clean_error(code, out, must_name=f"pid {first.pid}")
      if "is in use by" not in out:
        problems.append(f"no 'in use' message: {tail(out, 300)}")
      first_out = first.communicate(timeout=900)[0].decode(errors="replace")
      if first.returncode != 0:
        problems.append(f"first run failed: {tail(first_out)}")
      elif not problems:  # (the full suite also compares with a reference)
        problems = self.check_tuning(output_dir)
      detail = out.strip().splitlines()[-1] if out.strip() else ""
    finally:
      with contextlib.suppress(ProcessLookupError):
        os.killpg(first.pid, signal.SIGKILL)
    return [Trial("two writers: tuning on one --output_dir", not problems,
                  "; ".join(problems) or
                  f"second failed in {seconds:.0f}s: " + tail(detail, 200))]

  def fault_stale_lock_takeover(self):
    """A run killed while holding its lock: the next one takes it over."""
    output_dir = self.fresh("stale_lock")
    cmd = self.tune_command(output_dir)
    process = subprocess.Popen(cmd, cwd=REPO, env=_env(),
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               start_new_session=True)
    lock = os.path.join(output_dir, "q", ".lock")
    deadline = time.time() + 300
    while not os.path.exists(lock) and time.time() < deadline:
      time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    problems = [] if os.path.exists(lock) else ["no lock file was left"]
    code, out = run(cmd)
    if code != 0:
      problems.append(f"exit {code}: {tail(out)}")
    if f"left by pid {process.pid}" not in out:
      problems.append("the stale lock was not reported as taken over")
    if not problems:
      problems = self.check_tuning(output_dir)
    return [Trial("stale lock (holder killed): taken over", not problems,
                  "; ".join(problems))]

  # -- full disk, read-only folder -----------------------------------------------
  def fault_full_disk(self):
    """RLIMIT_FSIZE: writes fail with EFBIG mid-job. A clear error, then the
    same command without the limit completes with valid outputs."""
    trials = []
    cases = [("tuning", self.tune_command, 20_000,
              lambda d: self.check_tuning(d)),
             ("dataset build", self.dataset_command, 2_000,
              lambda d: self.check_dataset(d, self._dataset_reference()))]
    if self.full:
      cases.append(("Note RNN training", self.note_rnn_command, 2_000,
                    self.check_note_rnn))
    for name, command, limit, check in cases:
      target = self.fresh("full_disk", name.replace(" ", "_"))
      code, out = run(command(target), preexec_fn=limit_file_size(limit))
      problems = clean_error(code, out)
      if not any(s in out for s in ("File too large", "EFBIG", "Errno 27")):
        problems.append(f"no 'File too large' in: {tail(out, 300)}")
      code, out = run(command(target))
      if code != 0:
        problems.append(f"rerun exit {code}: {tail(out)}")
      else:
        problems += check(target)
      trials.append(Trial(f"full disk (ulimit -f): {name}", not problems,
                          "; ".join(problems)))
    return trials

  def fault_read_only_output(self):
    trials = []
    cases = [("tuning", self.tune_command, "q"),
             ("dataset build", self.dataset_command, None),
             ("export", self.export_command, None)]
    if self.full:
      cases += [("Note RNN training", self.note_rnn_command, None),
                ("evaluation", self.evaluate_command, None)]
    for name, command, sub in cases:
      target = self.fresh("read_only", name.replace(" ", "_"))
      os.makedirs(os.path.join(target, sub) if sub else target)
      for d in (target, os.path.join(target, sub) if sub else target):
        os.chmod(d, 0o555)
      try:
        code, out = run(command(target), preexec_fn=read_only_runner())
      finally:
        for d in (target, os.path.join(target, sub) if sub else target):
          os.chmod(d, 0o755)
      problems = clean_error(code, out, must_name=target)
      left = [os.path.relpath(os.path.join(r, f), target)
              for r, _, fs in os.walk(target) for f in fs]
      if left:
        problems.append(f"files left: {left}")
      trials.append(Trial(f"read-only output folder: {name}", not problems,
                          "; ".join(problems) or
                          tail(out.strip().splitlines()[-1], 200)))
    return trials

  # -- mutated MIDI files -----------------------------------------------------------
  def fault_mutated_midi(self):
    """N mutated copies of real MIDI files through the data pipeline: each
    parsed or skipped with a reason; no crash, no hang (per-file timeout)."""
    count = self.n(150, 1000)
    sources = sorted(glob.glob(os.path.join(self.midi_dir(), "*", "*.mid")))
    midi_dir = self.fresh("mutated_midi")
    os.makedirs(midi_dir)
    rng = random.Random(self.rng.random())
    for i in range(count):
      with open(sources[i % len(sources)], "rb") as f:
        data = bytearray(f.read())
      data = mutate(data, rng)
      with open(os.path.join(midi_dir, f"m{i:04d}.mid"), "wb") as f:
        f.write(data)
    output_dir = self.fresh("mutated_out")
    start = time.time()
    code, out = run(self.dataset_command(output_dir, midi_dir)
                    + ["--file_timeout_s=10"], timeout=1800)
    seconds = time.time() - start
    problems = []
    if "Traceback" in out:
      problems.append(f"a traceback: {tail(out)}")
    manifest = {}
    if code == 0:
      with open(os.path.join(output_dir, "manifest.json")) as f:
        manifest = json.load(f)
    elif "No usable melody" not in out:
      problems.append(f"exit {code}: {tail(out)}")
    if manifest:
      if manifest["files_used"] + manifest["files_skipped"] != count:
        problems.append("files lost from the manifest")
      if any(not s.get("reason") for s in manifest["skipped"]):
        problems.append("a skip without a reason")
    detail = (f"{count} files in {seconds:.0f}s: "
              f"{manifest.get('files_used')} parsed, skipped "
              f"{manifest.get('skip_reasons')}")
    return [Trial(f"mutated MIDI x{count}", not problems,
                  "; ".join(problems) or detail)]

  # -- broken tuned models ------------------------------------------------------------
  def fault_broken_tuned_model(self):
    """evaluate and export given a tuned model with a missing or wrong file:
    a clear error naming the folder, no traceback."""
    damages = {
        "tuned.json missing": lambda d: os.remove(os.path.join(d, "tuned.json")),
        "tuned.json garbage": lambda d: open(  # pylint: disable=consider-using-with
            os.path.join(d, "tuned.json"), "w").write("{not json"),
        "q_network/config.json missing": lambda d: os.remove(
            os.path.join(d, "q_network", "config.json")),
        "reward_rnn weights truncated": lambda d: truncate_half(glob.glob(
            os.path.join(d, "reward_rnn", "*.data-*"))[0]),
        "q_network index missing": lambda d: os.remove(glob.glob(
            os.path.join(d, "q_network", "*.index"))[0]),
        "wrong algorithm": lambda d: open(  # pylint: disable=consider-using-with
            os.path.join(d, "tuned.json"), "w").write('{"algorithm": "zz"}'),
    }
    names = list(damages) if self.full else ["tuned.json garbage",
                                             "reward_rnn weights truncated"]
    trials = []
    for name in names:
      model = self.fresh("broken_model", name.replace(" ", "_").replace("/", "_"))
      shutil.copytree(self.tuned_model_dir(), model)
      damages[name](model)
      for job, command in (("evaluate", self.evaluate_command),
                           ("export", self.export_command)):
        out_dir = self.fresh("broken_out", job)
        code, out = run(command(out_dir, model))
        problems = clean_error(code, out, must_name=model)
        versions = glob.glob(os.path.join(out_dir, "[0-9]*"))
        if versions:
          problems.append(f"wrote {versions}")
        trials.append(Trial(f"broken tuned model -> {job}: {name}",
                            not problems, "; ".join(problems)))
    return trials

  def all_faults(self):
    return [self.fault_truncated_tuning_checkpoint,
            self.fault_all_tuning_checkpoints_damaged,
            self.fault_truncated_note_rnn_checkpoint,
            self.fault_damaged_manifests,
            self.fault_two_writers_tuning,
            self.fault_stale_lock_takeover,
            self.fault_full_disk,
            self.fault_read_only_output,
            self.fault_mutated_midi,
            self.fault_broken_tuned_model,
            self.fault_kill_corpus_build,
            self.fault_kill_dataset_build,
            self.fault_kill_note_rnn_training,
            self.fault_kill_tuning,
            self.fault_kill_evaluation,
            self.fault_kill_export,
            self.fault_kill_reward_model_training,
            self.fault_kill_dpo_tuning,
            self.fault_kill_rlhf_tuning]


def mutate(data, rng):
  """One random damage to a MIDI file's bytes."""
  kind = rng.randrange(8)
  n = len(data)
  if kind == 0:  # flip random bytes
    for _ in range(rng.randint(1, 20)):
      data[rng.randrange(n)] = rng.randrange(256)
  elif kind == 1:  # truncate
    data = data[:rng.randrange(n)]
  elif kind == 2:  # insert garbage
    at = rng.randrange(n)
    data = data[:at] + bytearray(os.urandom(rng.randint(1, 200))) + data[at:]
  elif kind == 3:  # delete a slice
    at = rng.randrange(n)
    data = data[:at] + data[at + rng.randint(1, 64):]
  elif kind == 4 and n > 22:  # absurd track chunk length
    data[18:22] = bytes([rng.randrange(256) for _ in range(4)])
  elif kind == 5 and n > 14:  # header: format / track count / division
    data[8:14] = bytes([rng.randrange(256) for _ in range(6)])
  elif kind == 6:  # huge delta times / running status chaos
    for _ in range(rng.randint(1, 10)):
      at = rng.randrange(min(n, 22), n) if n > 22 else 0
      data[at:at] = b"\xff\xff\xff\x7f"
  else:  # duplicate a slice many times
    at = rng.randrange(n)
    piece = data[at:at + rng.randint(1, 32)]
    data = data[:at] + piece * rng.randint(2, 200) + data[at:]
  return data


def table(trials):
  """Rows fault / trials / survived / lost, in order of first appearance;
  for kill -9 trials also how many landed before and after the job's first
  checkpoint or published file."""
  rows = {}
  for t in trials:
    row = rows.setdefault(t.fault, [0, 0, 0, 0, 0])
    row[0] += 1
    row[1 if t.survived else 2] += 1
    if t.landed:
      row[3 if t.landed == "before" else 4] += 1
  width = max(len(k) for k in rows) if rows else 10
  lines = [f"{'fault':<{width}}  trials  survived  lost  kills before / after "
           "1st checkpoint or published file",
           f"{'-' * width}  ------  --------  ----  ------------------"]
  for key, (n, ok, lost, before, after) in rows.items():
    kills = f"{before:>6} / {after}" if key.startswith("kill -9") else ""
    lines.append(f"{key:<{width}}  {n:>6}  {ok:>8}  {lost:>4}  {kills}")
  total = [sum(r[i] for r in rows.values()) for i in range(5)]
  lines.append(f"{'total':<{width}}  {total[0]:>6}  {total[1]:>8}  "
               f"{total[2]:>4}  {total[3]:>6} / {total[4]}")
  return "\n".join(lines)
