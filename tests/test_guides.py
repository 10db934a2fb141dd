"""The guides under docs/guides/ cannot rot: their commands run, at toy
sizes, or are named here with the test that runs their equivalent.

Every ```bash block of a guide is a list of commands. The "own MIDI" guide
runs top to bottom in one workspace (MIDI files written here, then every
command with toy-size flags appended: absl keeps a repeated flag's last
value); the "extend" guide's rule module and algorithm script are written
from the page and run. A command of another guide must be of a module in
EXERCISED_ELSEWHERE, whose test runs that stage (the flags of the commands
of the tuning, evaluation and sampling jobs are also parsed by
test_documented_commands.py)."""
import os
import re
import shlex
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_midi_helpers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDES = os.path.join(ROOT, "docs", "guides")

# Appended to a guide's command when the test runs it.
TOY_FLAGS = {
    "data_pipeline.build_dataset": ["--num_workers=1",
                                    "--validation_percent=25"],
    "rl_tuner_tf.train_note_rnn": [
        "--num_steps=30", "--batch_size=8", "--layer_sizes=16",
        "--eval_every=15", "--checkpoint_every=15", "--log_every=15",
        "--window_length=17", "--num_masked_steps=2"],
    "rl_tuner_tf.sample_note_rnn": ["--num_melodies=2", "--num_steps=16"],
    "rl_tuner_tf.train": ["--num_notes=400", "--num_compositions=40",
                          "--replay_capacity=1000", "--figure2_melodies=10",
                          "--report_melodies=200"],
    "rl_tuner_tf.evaluate": ["--num_melodies=200", "--batch_size=100",
                             "--num_samples=1"],
    "export.saved_model": ["--max_steps=64", "--max_batch=16"],
}
# Replaces a guide's value where one toy run of it says as much (a grid of
# algorithms: its last one alone, the one the own-MIDI guide exports).
TOY_OVERRIDES = {
    "rl_tuner_tf.train": {"algorithm": lambda value: value.split(",")[-1]},
}
# Stages a guide shows that need what this machine cannot give (a TF Serving
# server, a cluster, a study's participants): the test that runs each one.
EXERCISED_ELSEWHERE = {
    "export.serving_client": "test_export_serving_client.py",
    "export.saved_model": "test_export_saved_model.py",
    "listening_study.prepare_stimuli": "test_listening_study_stimuli.py",
    "listening_study.serve": "test_listening_study_browser.py",
    "listening_study.analyze": "test_listening_study_analysis.py",
    "listening_study.simulate": "test_listening_study_browser.py",
    "data_pipeline.build_dataset": "test_data_beam_pipeline.py",
    "rl_tuner_tf.train": "test_grid_ray.py",
    "rl_tuner_tf.evaluate": "test_evaluation_end_to_end.py",
    "rl_tuner_tf.train_note_rnn": "test_note_rnn_distribute.py",
    "tests/faults/run_faults.py": "faults/test_faults.py",
    "listening_study.export_preferences": "test_listening_study_server.py",
    "rl_tuner_tf.train_reward_model": "test_reward_model.py",
    "listening_study.planted_taste": "test_listening_study_planted_taste.py",
}
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
_MODULE = re.compile(r"python (?:-m )?([\w./]+)")  # a module or a script


def blocks(name, language):
  """The ```language blocks of docs/guides/<name>.md, in order."""
  with open(os.path.join(GUIDES, name + ".md"), encoding="utf-8") as f:
    text = f.read()
  return [body for lang, body in _FENCE.findall(text) if lang == language]


def commands(name):
  """Each command of the guide's bash blocks (continuations joined)."""
  found = []
  for body in blocks(name, "bash"):
    for line in body.replace("\\\n", " ").splitlines():
      line = line.split("  #")[0].strip()
      if line:
        found.append(line)
  return found


def _run(command, cwd, env, extra=()):
  """Runs one documented command (toy flags appended to its module's, then
  ``extra``)."""
  match = _MODULE.search(command)
  module = match.group(1) if match else None
  for name, shrink in TOY_OVERRIDES.get(module, {}).items():
    command = re.sub(rf"--{name}=(\S+)",
                     lambda m: f"--{name}={shrink(m.group(1))}", command)
  flags = TOY_FLAGS.get(module, []) + list(extra)
  line = command + "".join(" " + shlex.quote(f) for f in flags)
  result = subprocess.run(["bash", "-c", line], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, (
      f"{line}\nexit {result.returncode}\n{result.stdout[-3000:]}\n"
      f"{result.stderr[-3000:]}")
  return result.stdout + result.stderr


def _workspace_env():
  """The test's environment as a user's shell: this interpreter's folder
  (the venv's bin) first on PATH, the project importable. The embedded
  corpus (the shipped Note RNN's reference) is the checkout's, built once
  for every test that needs it."""
  bin_dir = os.path.dirname(sys.executable)
  return dict(os.environ, PYTHONPATH=ROOT,
              PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def _write_toy_midi(directory, count=24, seed=0):
  """``count`` one-track MIDI files of random diatonic 8-bar melodies."""
  rng = np.random.default_rng(seed)
  scale = [0, 2, 4, 5, 7, 9, 11]
  os.makedirs(directory)
  for i in range(count):
    notes, step = [], 0
    degree = int(rng.integers(0, 7))
    while step < 8 * 16:
      length = int(rng.choice([2, 4, 4, 8]))
      degree = int(np.clip(degree + rng.integers(-2, 3), 0, 13))
      pitch = 60 + 12 * (degree // 7) + scale[degree % 7]
      notes.append((pitch, step, step + length))
      step += length
    data_midi_helpers.write_midi(os.path.join(directory, f"tune{i:02d}.mid"),
                                 [(notes, False)])


def test_every_guide_command_is_run_or_exercised_elsewhere():
  tests_dir = os.path.dirname(os.path.abspath(__file__))
  run_here = set(commands("own_midi")) | set(commands("extend"))
  names = [f[:-3] for f in os.listdir(GUIDES) if f.endswith(".md")]
  assert {"own_midi", "extend", "reproduce", "serving"} <= set(names)
  for name in names:
    for command in commands(name):
      if command in run_here:
        continue
      match = _MODULE.search(command)
      assert match, f"{name}.md: {command!r} runs no project program"
      test = EXERCISED_ELSEWHERE.get(match.group(1))
      assert test, (f"{name}.md: no test runs {match.group(1)} "
                    f"({command!r}); add it to TOY_FLAGS or "
                    "EXERCISED_ELSEWHERE")
      assert os.path.exists(os.path.join(tests_dir, test)), test


def test_own_midi_guide_runs_top_to_bottom(tmp_path):
  work = tmp_path / "work"
  work.mkdir()
  env = _workspace_env()
  _write_toy_midi(str(work / "my_midi"))
  steps = commands("own_midi")
  modules = [(_MODULE.search(c) or [None, None])[1] for c in steps]
  assert modules[:4] == [None, "data_pipeline.build_dataset",
                         "rl_tuner_tf.train_note_rnn",
                         "rl_tuner_tf.sample_note_rnn"], modules
  outputs = {}
  for command, module in zip(steps, modules):
    if module in (None, "export.serving_client"):
      continue  # the install (done), the client (needs a TF Serving server)
    outputs[module] = _run(command, str(work), env)
  assert os.path.exists(work / "my_data" / "manifest.json")
  assert os.path.exists(work / "my_note_rnn" / "provenance.json")
  assert [f for f in os.listdir(work / "my_samples") if f.endswith(".mid")]
  run_dir = work / "runs" / "my_tuning" / "g"  # the grid's last algorithm
  assert os.path.exists(run_dir / "model" / "tuned.json")
  assert not os.path.exists(run_dir / "checkpoints")
  assert os.path.exists(work / "runs" / "my_tuning" / "report.html")
  assert os.path.exists(work / "runs" / "my_tuning" / "evaluation" /
                        "beyond_rules.md")
  assert os.listdir(work / "exports" / "my_melody") == ["1"]


def test_extend_guide_rule_and_algorithm_run(tmp_path):
  work = tmp_path / "work"
  work.mkdir()
  env = _workspace_env()
  rule_module, script = blocks("extend", "python")
  (work / "my_rules.py").write_text(rule_module)
  toy = {"num_notes=100_000": "num_notes=400, num_compositions=40, "
                              "replay_capacity=1000",
         "tuning_job.RunConfig()": "tuning_job.RunConfig(figure2_melodies=10)",
         "num_melodies=10_000": "num_melodies=200, batch_size=100, "
                                "num_samples=0, beyond_rules=False",
         '"exports/sarsa", ': '"exports/sarsa", max_steps=16, max_batch=4, '
                              'export_tfagents_policy=False, '}
  for old, new in toy.items():
    assert old in script, f"the guide's script no longer says {old!r}"
    script = script.replace(old, new)
  (work / "my_algorithm.py").write_text(script)
  train, algorithm = commands("extend")
  assert algorithm == "python my_algorithm.py"
  # The report after tuning is run by the own-MIDI guide; not again here.
  _run(train, str(work), env, extra=["--noreport"])
  _run(algorithm, str(work), env)
  with open(work / "runs" / "low_register" / "g" / "config.json") as f:
    assert '"low_register": 2.0' in f.read()
  assert os.path.exists(work / "runs" / "sarsa" / "evaluation" /
                        "expected_sarsa" / "table1.json")
  assert os.listdir(work / "exports" / "sarsa") == ["1"]
