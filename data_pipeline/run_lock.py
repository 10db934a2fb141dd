"""One writer per run directory.

    with run_lock.hold(output_dir, "python -m rl_tuner_tf.train"):
      ...  # only this process writes output_dir

The lock is ``<dir>/.lock``: an exclusive, non-blocking ``fcntl.flock`` on it
(the kernel drops it when its holder dies, kill -9 included) plus the
holder's pid, host, start time and command written inside, so a second
process fails fast with a ``RunLockedError`` naming the holder.  A lock whose
recorded holder is dead on this host (its pid is gone or now belongs to
another process) is stale and taken over even when the flock is still held --
e.g. by worker processes the killed holder forked: the lock file is replaced
by a new one (the inode check below makes that race-free).

Standard library only; used by every stage (dataset builds, Note RNN
training, tuning, evaluation, exports).
"""
import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from typing import Any, Callable, Dict, Iterator, Mapping, Optional

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
  """Another live process writes this directory."""


def _process_start_ticks(pid):
  """Start time of ``pid`` in clock ticks since boot (None where unknown)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      stat = f.read()
    return int(stat.rsplit(")", 1)[1].split()[19])
  except (OSError, ValueError, IndexError):
    return None


def _alive(pid, start_ticks):
  """Is ``pid`` (started at ``start_ticks``) still running on this host?"""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass
  now = _process_start_ticks(pid)
  if start_ticks is not None and now is not None and now != start_ticks:
    return False  # the pid was reused by another process
  if now is not None:
    with contextlib.suppress(OSError):
      with open(f"/proc/{pid}/stat") as f:
        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
          return False  # a zombie holds nothing
  return True


def read_holder(directory: str) -> Dict[str, Any]:
  """The holder recorded in ``directory``'s lock file (a dict, maybe empty)."""
  try:
    with open(os.path.join(directory, LOCK_NAME)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def describe(holder: Mapping[str, Any]) -> str:
  if not holder:
    return "an unknown process (its lock file names no holder)"
  return (f"pid {holder.get('pid')} on host {holder.get('host')}, started "
          f"{holder.get('started')}"
          + (f" ({holder['command']})" if holder.get("command") else ""))


class RunLock:
  """An acquired lock; ``release()`` (or leaving ``hold``) gives it back."""

  def __init__(self, directory, fd, holder, took_over=None):
    self.directory = directory
    self.path = os.path.join(directory, LOCK_NAME)
    self._fd = fd
    self.holder = holder
    self.took_over = took_over  # the stale holder replaced, if any

  def release(self) -> None:
    if self._fd is None:
      return
    with contextlib.suppress(OSError):
      if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
        os.remove(self.path)
    os.close(self._fd)  # drops the flock
    self._fd = None


def acquire(directory: str, command: Optional[str] = None,
            log: Optional[Callable[[str], None]] = None) -> RunLock:
  """Takes ``directory``'s lock or raises RunLockedError naming its holder."""
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, LOCK_NAME)
  took_over = None
  for _ in range(20):
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
      raise OSError(e.errno, f"cannot create the lock file {path!r}: "
                    f"{e.strerror}") from e
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      holder = read_holder(directory)
      if (holder.get("host") == socket.gethostname()
          and isinstance(holder.get("pid"), int)
          and not _alive(holder["pid"], holder.get("pid_start_ticks"))):
        # Its holder is dead; whoever still holds the flock inherited it.
        with contextlib.suppress(FileNotFoundError):
          os.remove(path)
        took_over = holder
        continue
      raise RunLockedError(
          f"{directory} is in use by {describe(holder)}; lock file {path}. "
          "Wait for that process to finish (or stop it), or choose another "
          "directory.") from None
    # Locked -- but is it still the file at `path`? (A taker-over may have
    # replaced it between our open and flock.)
    try:
      same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
      same = False
    if not same:
      os.close(fd)
      continue
    previous = read_holder(directory)
    if previous and took_over is None:
      took_over = previous  # left by a process that died holding it
    holder = {
        "pid": os.getpid(),
        "pid_start_ticks": _process_start_ticks(os.getpid()),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "command": command or " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    os.fsync(fd)
    if took_over and log:
      log(f"Took over the stale lock of {directory} left by "
          f"{describe(took_over)} (no longer running).")
    return RunLock(directory, fd, holder, took_over)
  raise RunLockedError(f"could not take the lock {path} (it keeps changing)")


@contextlib.contextmanager
def hold(directory: str, command: Optional[str] = None,
         log: Optional[Callable[[str], None]] = None) -> Iterator[RunLock]:
  lock = acquire(directory, command=command, log=log)
  try:
    yield lock
  finally:
    lock.release()
