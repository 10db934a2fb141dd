r"""The console of every entry point: the project's own lines, not library logs.

TensorFlow, XLA, absl and gRPC log from C++ to file descriptor 2 in glog's
format, and which lines they print depends on the CPU, the drivers and the
library versions (``E0000 00:00:1796376870.507543 16891 util.cc:131] oneDNN
...``).  absl's Python logging writes the same format.  A program of this
project filters by that format, not by a list of messages:

* fd 2 (what C++ code and child processes write) goes through a pipe to a
  small filter process (this file run as a script, standard library only),
  which drops every record in the format -- a header line
  ``[IWEF]MMDD hh:mm:ss.uuuuuu  thread file:line]`` and the blank or
  indented lines after it (stack traces) -- and absl's two notices about
  that log stream.  It passes everything else on, in order.  (While
  TensorFlow imports, when only it writes, the lines after a record up to
  the next one are hidden with it: data_pipeline/keras_setup.py.)  A record
  whose later lines are not indented keeps them (TensorFlow's protobuf dumps
  under TF_CPP_VMODULE): a pipe keeps no write boundaries, and hiding every
  line after a record would hide a child's line that came right after one.
* Python's ``sys.stderr`` writes straight to the console (so the project's
  own errors and tracebacks never wait on, or depend on, the filter) and
  drops a write that is an absl log record.
* Python warnings are ignored unless the user asked for some with ``-W`` or
  PYTHONWARNINGS (children inherit PYTHONWARNINGS=ignore): a third-party
  warning is not something the user can act on; a warning the user can act
  on is printed by the project in its own words.
* TF_CPP_MIN_LOG_LEVEL=2 unless the user set it.

If the program dies without a clean exit (a signal, a C++ abort), the
filter prints the last ERROR / FATAL records it hid, after a line that says
so, so that a crash is never left unexplained.

``--verbose`` (every entry point has it) or RL_TUNER_TF_VERBOSE=1 turns all
of this off.  ``install()`` is idempotent and a child program whose fd 2 is
already such a pipe starts no second filter.  Library code that is merely
imported (a notebook, pytest) is left alone: ``install`` is called by
``run`` (the entry points' ``app.run``) and, before TensorFlow is imported,
by ``data_pipeline.keras_setup`` when the process is one of the project's
programs (``is_project_program``).
"""
from __future__ import annotations

import atexit
import collections
import io
import os
import re
import select
import signal
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Union

if TYPE_CHECKING:
  import argparse

VERBOSE_ENV = "RL_TUNER_TF_VERBOSE"
# Device and inode of the filtered pipe, for child programs (no second filter).
_PIPE_ENV = "RL_TUNER_TF_CONSOLE_PIPE"
_PACKAGES = ("rl_tuner_tf", "data_pipeline", "export", "listening_study")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# glog / absl: severity, month+day, time (pre-init: hh:mm:<epoch seconds>),
# thread id (padded), file:line].
_RECORD = re.compile(rb"[IWEF]\d{4} \d\d:\d\d:\d+(?:\.\d+)? +\d+ [^\s\]]+:\d+\] ")
# absl's notices about the log stream itself (C++ pre-init; Python pre-flags).
_NOTICE = re.compile(
    rb"WARNING: (?:All log messages before absl::InitializeLog\(\) is called "
    rb"are written to STDERR|Logging before flag parsing goes to stderr\.)\s*$")
_CONTINUATION = re.compile(rb"\s|$")  # blank or indented: part of a record


def is_log_record(line: Union[bytes, str]) -> bool:
  """True for a line (bytes or str) in glog's format or one of absl's notices."""
  if isinstance(line, str):
    line = line.encode("utf-8", "replace")
  return bool(_RECORD.match(line) or _NOTICE.match(line))


class RecordFilter:
  """Line by line: is this line part of a log record?  A record is a header
  line in the format and the blank or indented lines after it (stack
  traces).  With ``whole_span``, for text that only TensorFlow wrote (its
  import), every line after a record up to the next one belongs to it too
  (a wrapped message such as cpu_feature_guard's second line).  In a stream
  that other writers share, a line is never hidden for following a record:
  a pipe does not keep write boundaries, and a child's line may come right
  after a record."""

  def __init__(self, whole_span=False):
    self.whole_span = whole_span
    self.in_record = False
    self.hidden_errors = collections.deque(maxlen=20)  # E and F headers

  def keep(self, line: bytes) -> bool:
    if _RECORD.match(line) or _NOTICE.match(line):
      self.in_record = True
      if line[:1] in (b"E", b"F") and _RECORD.match(line):
        self.hidden_errors.append(line)
      return False
    if self.in_record and (self.whole_span or _CONTINUATION.match(line)):
      return False
    self.in_record = False
    return True


def without_records(data: bytes, whole_span: bool = False) -> bytes:
  """bytes -> the same bytes less log records (see RecordFilter)."""
  records = RecordFilter(whole_span)
  return b"".join(line for line in data.splitlines(True)
                  if records.keep(line.rstrip(b"\r\n")))


def verbose_requested(argv: Optional[Sequence[str]] = None) -> bool:
  """--verbose[=true|1] on the command line, or RL_TUNER_TF_VERBOSE=1."""
  env = os.environ.get(VERBOSE_ENV, "").strip().lower()
  if env:
    return env not in ("0", "false", "no")
  for arg in (sys.argv if argv is None else argv)[1:]:
    if arg in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1"):
      return True
  return False


def is_project_program() -> bool:
  """This process runs one of the project's programs: ``python -m <one of
  its packages>...`` or a ``.py`` script inside the checkout (benchmarks,
  tests/faults/run_faults.py), not pytest, a notebook or ``python -c``."""
  argv = list(getattr(sys, "orig_argv", []))[1:]
  takes_value = {"-W", "-X", "-Q"}
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg == "-m":
      return i + 1 < len(argv) and argv[i + 1].split(".")[0] in _PACKAGES
    if arg == "-c" or arg == "-":
      return False
    if arg in takes_value:
      i += 2
      continue
    if arg.startswith("-"):
      i += 1
      continue
    script = os.path.realpath(arg)
    rel = os.path.relpath(script, os.path.realpath(REPO))
    return (script.endswith(".py") and not rel.startswith("..") and
            not any(part.startswith(".") for part in rel.split(os.sep)))
  return False


class _ProjectStderr(io.TextIOWrapper):
  """sys.stderr on the console itself; drops a write that is an absl log
  record (absl's handler writes a whole record in one call)."""

  def write(self, text):
    if is_log_record(text):
      return len(text)
    return super().write(text)


_VERBOSE_HELP = ("Show the libraries' log lines and warnings (default: only "
                 "this program's own output; also RL_TUNER_TF_VERBOSE=1).")
_state = {}


def _identity(fd):
  stat = os.fstat(fd)
  return f"{stat.st_dev}:{stat.st_ino}"


def install() -> None:
  """Filters fd 2 and sys.stderr of this process from now on (see module
  docstring); a no-op when verbose, when already done, or without an fd 2."""
  if _state or verbose_requested():
    return
  _state["pid"] = os.getpid()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if not sys.warnoptions:
    warnings.simplefilter("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
  try:
    if os.environ.get(_PIPE_ENV) == _identity(2):  # a parent program filters fd 2
      return
  except OSError:  # no fd 2
    return
  for stream in (sys.stdout, sys.stderr):
    if stream is not None:
      stream.flush()
  console = os.dup(2)
  read_end, write_end = os.pipe()
  ctrl_read, ctrl_write = os.pipe()
  try:
    filter_process = subprocess.Popen(
        [sys.executable, "-I", "-S", os.path.abspath(__file__), "--filter",
         str(ctrl_read)],
        stdin=read_end, stdout=console, stderr=console, pass_fds=(ctrl_read,))
  except OSError:
    for fd in (console, read_end, write_end, ctrl_read, ctrl_write):
      os.close(fd)
    return
  os.close(read_end)
  os.close(ctrl_read)
  os.dup2(write_end, 2)
  os.close(write_end)
  os.environ[_PIPE_ENV] = _identity(2)
  _state.update(console=console, ctrl=ctrl_write, process=filter_process)
  if sys.stderr is not None and getattr(sys.stderr, "fileno", None):
    sys.stderr = _ProjectStderr(
        open(os.dup(console), "wb", closefd=True),
        encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
        errors="backslashreplace", line_buffering=True, write_through=True)
  atexit.register(_close)


def _close():
  """A clean exit: tell the filter, end fd 2's pipe, wait for the filter's
  last lines (so they come before the shell's prompt)."""
  if _state.get("pid") != os.getpid() or "process" not in _state:
    return  # a forked child, or nothing installed
  for stream in (sys.stdout, sys.__stderr__, sys.stderr):
    try:
      if stream is not None:
        stream.flush()
    except (OSError, ValueError):
      pass
  try:
    os.write(_state["ctrl"], b"ok")
    os.close(_state["ctrl"])
    os.dup2(_state["console"], 2)
    _state["process"].wait(timeout=5)
  except (OSError, subprocess.TimeoutExpired):
    pass


def run(main: Callable[[List[str]], Any]) -> None:
  """absl's app.run for an entry point: defines --verbose (if the program
  has not), installs the filter, runs main."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  if "verbose" not in flags.FLAGS:
    flags.DEFINE_bool("verbose", False, _VERBOSE_HELP)
  install()
  app.run(main)


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
  """--verbose for an argparse program (its filter is installed when it
  imports rl_tuner_tf, or by its own call to install())."""
  parser.add_argument("--verbose", action="store_true", help=_VERBOSE_HELP)


# -- the filter process ---------------------------------------------------------
def _write_all(fd, data):
  while data:
    try:
      data = data[os.write(fd, data):]
    except OSError:
      return  # the console is gone: keep draining, never block the program


def _filter(ctrl_fd, source=0, sink=1):
  """Copies source to sink without log records (see the module docstring)."""
  for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)  # outlive the program's last words
  records = RecordFilter()
  pending = b""  # an unfinished line
  eof = False
  while not eof:
    ready, _, _ = select.select([source], [], [], 0.2 if pending else None)
    chunk = os.read(source, 1 << 16) if ready else b""
    eof = bool(ready) and not chunk
    lines = (pending + chunk).split(b"\n")
    # The last piece has no newline yet: keep it for the next read, unless
    # its end did not come within 0.2 s (a prompt, a progress bar) or ever.
    fragment = lines.pop()
    pending = fragment if chunk else b""
    ends = [b"\n"] * len(lines)
    if not chunk and fragment:
      lines.append(fragment)
      ends.append(b"")
    kept = [line + end for line, end in zip(lines, ends) if records.keep(line)]
    _write_all(sink, b"".join(kept))
  os.set_blocking(ctrl_fd, False)
  try:
    clean = os.read(ctrl_fd, 16) == b"ok"
  except OSError:
    clean = False
  if not clean and records.hidden_errors:
    _write_all(sink, b"The program ended without a clean exit. The last error "
               b"lines the console filter hid (--verbose shows them all):\n" +
               b"\n".join(records.hidden_errors) + b"\n")


if __name__ == "__main__" and sys.argv[1:2] == ["--filter"]:
  _filter(int(sys.argv[2]))
