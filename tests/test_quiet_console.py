"""Every program's console: its own output only, unless --verbose.

The lines to hide are made here, whatever the CPU: TensorFlow's own log
(TF_CPP_MIN_LOG_LEVEL=0 and TF_CPP_VMODULE make it write thousands of glog
records) and child processes that write records to the program's stderr.
Nothing relies on what a particular machine prints.
"""
import os
import re
import subprocess
import sys
import textwrap

from data_pipeline import console

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A log record anywhere in a stream: glog / absl's header or absl's notices.
RECORD = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+(\.\d+)? +\d+ \S+:\d+\] |"
                    r"absl::InitializeLog|Logging before flag parsing",
                    re.MULTILINE)
# Python warnings from libraries (pydub's ffmpeg notice, deprecations).
WARNING = re.compile(r"Warning: |^  warn\(|Gym has been unmaintained",
                     re.MULTILINE)


def _env(**extra):
  env = dict(os.environ)
  for name in ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_VMODULE", console.VERBOSE_ENV,
               "PYTHONWARNINGS", "RL_TUNER_TF_CONSOLE_PIPE"):
    env.pop(name, None)
  env["PYTHONPATH"] = REPO
  env.update(extra)
  return env


# TensorFlow writes its log at every level, on any CPU: its start-up records
# and tens of thousands of VLOG records of its graph executor.  (Records
# whose later lines are not indented, e.g. eager execution's protobuf dumps,
# keep those lines: see data_pipeline/console.py.)
TF_LOGS = dict(TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="executor=1")


# -- the format ------------------------------------------------------------------
def test_records_are_recognised_by_their_format():
  records = [
      b"E0000 00:00:1796376870.507543   16891 util.cc:131] oneDNN supports "
      b"DT_INT32 only on platforms with AVX-512.",
      b"I1204 09:28:08.123456 140234 train.py:123] [q] notes 40/80",
      b"W1231 23:59:59.000001     7 some_new_file.cc:9] any message at all",
      b"F0101 00:00:00.1 1 check.cc:1] Check failed: x",
      b"WARNING: All log messages before absl::InitializeLog() is called are "
      b"written to STDERR",
      b"WARNING: Logging before flag parsing goes to stderr.",
  ]
  ours = [b"[q] done: 80 notes", b"ERROR: /x is not a Note RNN checkpoint",
          b"Traceback (most recent call last):", b"I1204 is not a record",
          b"WARNING: evaluation failed (exit code 1)", b"Tuning done: 1 run(s)",
          b"", b"E0000 00:00:1.5 12 no_line_number.cc] x"]
  assert all(console.is_log_record(line) for line in records)
  assert not any(console.is_log_record(line) for line in ours)


def test_a_record_hides_its_continuation_lines_only():
  text = (b"[q] start\n"
          b"I0000 00:00:1.5 12 cpu_feature_guard.cc:227] This binary is ...\n"
          b"\tstack frame one\n"
          b"\n"
          b"    stack frame two\n"
          b"ERROR: the project's error\n"
          b"  its indented detail\n")
  assert console.without_records(text) == (
      b"[q] start\nERROR: the project's error\n  its indented detail\n")
  # Text only TensorFlow wrote (its import): a record's wrapped lines too.
  text = (b"I0000 00:00:1.5 12 cpu_feature_guard.cc:227] This binary is ...\n"
          b"To enable the following instructions: AVX2, rebuild TensorFlow\n"
          b"E0000 00:00:1.5 12 cuda_platform.cc:52] failed call to cuInit\n")
  assert console.without_records(text, whole_span=True) == b""
  assert console.without_records(text) == (
      b"To enable the following instructions: AVX2, rebuild TensorFlow\n")


def test_project_programs_are_told_from_imports():
  run = lambda *argv: subprocess.run(  # noqa: E731
      [sys.executable, *argv], cwd=REPO, env=_env(), capture_output=True,
      text=True, check=True).stdout.strip()
  code = "from data_pipeline import console; print(console.is_project_program())"
  assert run("-c", code) == "False"
  script = os.path.join(REPO, "benchmarks", "bench_tuning.py")
  probe = (f"import sys; sys.orig_argv = [sys.executable, {script!r}]; " + code)
  assert run("-c", probe) == "True"
  probe = ("import sys; sys.orig_argv = [sys.executable, '-X', 'dev', '-m', "
           "'rl_tuner_tf.train']; " + code)
  assert run("-c", probe) == "True"
  probe = "import sys; sys.orig_argv = [sys.executable, '-m', 'pytest']; " + code
  assert run("-c", probe) == "False"


# -- the filter, in a program and its children ----------------------------------------
_PROGRAM = textwrap.dedent(r"""
    import os, subprocess, sys, warnings
    from data_pipeline import console
    console.install()
    print("progress 1", flush=True)
    # C++ style: straight to fd 2, a record with its stack in one write.
    os.write(2, b"E0000 00:00:1796376870.5 16891 util.cc:131] oneDNN noise\n"
                b"\tframe 1\n\tframe 2\n")
    # A child started after the setup inherits the filtered fd 2.
    subprocess.run([sys.executable, "-c",
                    "import os; os.write(2, b'W1204 09:28:08.123456 99 "
                    "child.cc:7] child noise\\n'); "
                    "os.write(2, b'child says hello\\n')"], check=True)
    warnings.warn("a library's deprecation", DeprecationWarning)
    warnings.warn("a library's notice", RuntimeWarning)
    # absl's Python logging: one write per record.
    sys.stderr.write("I1204 09:28:08.123456 140234 train.py:9] progress 1\n")
    print("ERROR: the program's own error", file=sys.stderr)
    print("progress 2", flush=True)
    if sys.argv[1:] == ["crash"]:
      os.write(2, b"F1204 09:28:09.000001 140234 check.cc:3] Check failed\n")
      os.kill(os.getpid(), 9)
    sys.exit(3)
""")


def _program(tmp_path, *args, **env):
  path = tmp_path / "program.py"
  path.write_text(_PROGRAM)
  return subprocess.run([sys.executable, str(path), *args], cwd=REPO,
                        env=_env(**env), capture_output=True, text=True,
                        timeout=120)


def test_the_filter_hides_records_and_keeps_the_programs_lines(tmp_path):
  result = _program(tmp_path)
  assert result.returncode == 3
  assert result.stdout == "progress 1\nprogress 2\n"
  # (in any order: the child's line passes the filter, the program's own
  # goes straight to the console)
  assert sorted(result.stderr.splitlines()) == [
      "ERROR: the program's own error", "child says hello"]


def test_verbose_shows_everything(tmp_path):
  result = _program(tmp_path, **{console.VERBOSE_ENV: "1"})
  assert result.returncode == 3
  for line in ("oneDNN noise", "\tframe 2", "child noise", "child says hello",
               "a library's notice", "train.py:9] progress 1",
               "ERROR: the program's own error"):
    assert line in result.stderr


def test_a_crash_shows_the_error_records_it_hid(tmp_path):
  result = _program(tmp_path, "crash")
  assert result.returncode == -9
  lines = result.stderr.splitlines()
  assert sorted(lines[:2]) == ["ERROR: the program's own error",
                              "child says hello"]
  assert "without a clean exit" in lines[2]
  assert lines[3:] == [
      "E0000 00:00:1796376870.5 16891 util.cc:131] oneDNN noise",
      "F1204 09:28:09.000001 140234 check.cc:3] Check failed"]


# -- real entry points ------------------------------------------------------------
def _train(checkpoint, output_dir, *extra, **env):
  command = [sys.executable, "-m", "rl_tuner_tf.train", "--algorithm=q",
             f"--note_rnn_checkpoint={checkpoint}", f"--output_dir={output_dir}",
             "--num_notes=80", "--num_compositions=40",
             "--minibatches_per_update=1", "--replay_capacity=80",
             "--figure2_melodies=4", "--report=false", *extra]
  return subprocess.run(command, cwd=REPO, env=_env(**env),
                        capture_output=True, text=True, timeout=600)


def test_main_job_prints_its_progress_not_tensorflows_log(random_checkpoint,
                                                          tmp_path):
  quiet = _train(random_checkpoint, tmp_path / "quiet", **TF_LOGS)
  assert quiet.returncode == 0, quiet.stderr[-3000:]
  assert "[q] done" in quiet.stdout
  for stream in (quiet.stdout, quiet.stderr):
    assert not RECORD.search(stream), stream[-3000:]
    assert not WARNING.search(stream), stream[-3000:]
  assert quiet.stderr == "", quiet.stderr[-3000:]
  # Its errors still reach the console, among TensorFlow's records.
  bad = _train(tmp_path / "no_such_checkpoint", tmp_path / "bad", **TF_LOGS)
  assert bad.returncode != 0
  assert "no_such_checkpoint" in bad.stderr
  assert not RECORD.search(bad.stderr), bad.stderr[-3000:]


def test_verbose_keeps_tensorflows_log(random_checkpoint, tmp_path):
  loud = _train(random_checkpoint, tmp_path / "loud", "--verbose", **TF_LOGS)
  assert loud.returncode == 0, loud.stderr[-3000:]
  assert "[q] done" in loud.stdout
  assert len(RECORD.findall(loud.stderr)) > 100
  assert "Gym has been unmaintained" in loud.stderr


def test_corpus_build_prints_no_library_warnings(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "data_pipeline.build_corpus",
       f"--root={tmp_path}", "--collections=miscFolk", "--num_workers=2"],
      cwd=REPO, env=_env(**TF_LOGS), capture_output=True, text=True,
      timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "melodies:" in result.stdout
  assert not RECORD.search(result.stderr), result.stderr[-3000:]
  assert not WARNING.search(result.stderr), result.stderr[-3000:]
  # Only the pipeline's own progress lines on stderr.
  assert all(line.startswith(("[corpus]", "[data_pipeline]"))
             for line in result.stderr.splitlines()), result.stderr[-3000:]
