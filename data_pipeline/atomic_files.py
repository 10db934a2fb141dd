"""Crash-safe outputs: a file or folder appears complete or not at all.

Every writer puts its bytes into a hidden sibling (``.<name>.partial-<pid>``),
flushes and fsyncs it, then ``os.replace``s it over the final name and fsyncs
the parent folder. A process killed at any moment leaves either the old file,
the new file, or a stray ``*.partial-*`` sibling that no reader looks at (and
that the next writer of the same name removes).

Standard library only (no TensorFlow), so every stage -- data_pipeline,
rl_tuner_tf, export -- imports it without import cycles.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from typing import IO, TYPE_CHECKING, Any, Iterator, Optional

if TYPE_CHECKING:
  import numpy.typing as npt

PARTIAL_TAG = ".partial-"


def partial_path(path: str) -> str:
  """The hidden sibling a writer of ``path`` fills first."""
  directory, name = os.path.split(os.path.abspath(path))
  return os.path.join(directory, f".{name}{PARTIAL_TAG}{os.getpid()}")


def _writer_alive(leftover):
  """Is the process that names this partial still running (not us)?"""
  try:
    pid = int(leftover.rsplit(PARTIAL_TAG, 1)[1])
  except (IndexError, ValueError):
    return False
  if pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def remove_stale_partials(path: str) -> None:
  """Removes leftovers of killed writers of ``path`` (files or folders); a
  partial of a writer that is still running is left alone."""
  directory, name = os.path.split(os.path.abspath(path))
  for leftover in glob.glob(os.path.join(glob.escape(directory),
                                         f".{glob.escape(name)}{PARTIAL_TAG}*")):
    if _writer_alive(leftover):
      continue
    if os.path.isdir(leftover) and not os.path.islink(leftover):
      shutil.rmtree(leftover, ignore_errors=True)
    else:
      with contextlib.suppress(OSError):
        os.remove(leftover)


def fsync_dir(directory: str) -> None:
  """Makes a rename inside ``directory`` durable (no-op where unsupported)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def fsync_tree(directory: str) -> None:
  """fsyncs every file and folder under ``directory`` (before publishing it)."""
  for root, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        os.fsync(f.fileno())
    fsync_dir(root)


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "w", **kwargs: Any
                ) -> Iterator[IO[Any]]:
  """``with open_atomic(path) as f: f.write(...)`` -- published on success.

  If the body raises (or the process dies), ``path`` is untouched.
  """
  if not any(c in mode for c in "wx") or "+" in mode:
    raise ValueError(f"open_atomic needs a write mode, got {mode!r}")
  path = os.path.abspath(path)
  remove_stale_partials(path)
  tmp = partial_path(path)
  try:
    with open(tmp, mode.replace("x", "w"), **kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  fsync_dir(os.path.dirname(path))


def write_text(path: str, text: str) -> None:
  with open_atomic(path, "w") as f:
    f.write(text)


def write_bytes(path: str, data: bytes) -> None:
  with open_atomic(path, "wb") as f:
    f.write(data)


def write_json(path: str, obj: Any, indent: Optional[int] = 2) -> None:
  with open_atomic(path, "w") as f:
    json.dump(obj, f, indent=indent)


def save_npy(path: str, array: npt.ArrayLike) -> None:
  """``numpy.save`` to exactly ``path`` (no ``.npy`` appended), atomically."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  with open_atomic(path, "wb") as f:
    np.save(f, array)


def publish_file(tmp: str, path: str) -> None:
  """fsyncs a file some library wrote at ``tmp`` and renames it to ``path``."""
  with open(tmp, "rb") as f:
    os.fsync(f.fileno())
  os.replace(tmp, path)
  fsync_dir(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def replace_dir(path: str) -> Iterator[str]:
  """``with replace_dir(path) as tmp: <write the folder's files into tmp>``.

  On success ``tmp`` becomes ``path``: renamed into place when ``path`` does
  not exist; otherwise the old folder is renamed aside first (the only window
  in which ``path`` is absent; a reader then sees "not there", never a mix)
  and removed afterwards. If the body raises, ``path`` is untouched.
  """
  path = os.path.abspath(path.rstrip(os.sep))
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  recover_replaced_dir(path)
  remove_stale_partials(path)
  tmp = partial_path(path)
  os.makedirs(tmp)
  try:
    yield tmp
    fsync_tree(tmp)
    if os.path.lexists(path):
      old = path + ".old" + PARTIAL_TAG + str(os.getpid())
      os.rename(path, old)
      os.rename(tmp, path)
      fsync_dir(parent)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(tmp, path)
      fsync_dir(parent)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def recover_replaced_dir(path: str) -> None:
  """If a writer died between renaming ``path`` aside and publishing the new
  one, puts the old folder back (so nothing complete is ever lost)."""
  path = os.path.abspath(path.rstrip(os.sep))
  olds = sorted(glob.glob(glob.escape(path) + ".old" + PARTIAL_TAG + "*"))
  for old in olds:
    if not os.path.lexists(path):
      os.rename(old, path)
    else:
      shutil.rmtree(old, ignore_errors=True)
