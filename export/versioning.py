"""TF Serving's model layout: ``<model_base_path>/<version>/`` with integer
versions; the server loads the highest one.

``save_new_version`` writes into a hidden temporary folder beside the versions
(TF Serving ignores names that are not integers) and renames it to
``max existing version + 1``. The rename is atomic, so the server never sees a
half-written version, and an existing version is never overwritten: if another
export claims the number first, the next free number is taken.
"""
import errno
import os
import re
import shutil
import tempfile
from typing import Any, Callable, List, Tuple

from data_pipeline import atomic_files

_VERSION_RE = re.compile(r"^[0-9]+$")
_TMP_PREFIX = ".tmp-export-"
_MAX_CLAIM_TRIES = 100


def remove_abandoned_exports(model_base_path: str) -> List[str]:
  """Deletes the temporary folders of killed exports. Call it only while
  holding the run lock of ``model_base_path`` (no other export is running)."""
  if not os.path.isdir(model_base_path):
    return []
  removed = []
  for name in os.listdir(model_base_path):
    if name.startswith(_TMP_PREFIX):
      shutil.rmtree(os.path.join(model_base_path, name), ignore_errors=True)
      removed.append(name)
  return removed


def existing_versions(model_base_path: str) -> List[int]:
  """Sorted integer versions under ``model_base_path`` (none if it is absent)."""
  if not os.path.isdir(model_base_path):
    return []
  return sorted(int(name) for name in os.listdir(model_base_path)
                if _VERSION_RE.match(name) and
                os.path.isdir(os.path.join(model_base_path, name)))


def next_version(model_base_path: str) -> int:
  versions = existing_versions(model_base_path)
  return versions[-1] + 1 if versions else 1


def save_new_version(model_base_path: str, write_fn: Callable[[str], Any]
                     ) -> Tuple[int, str]:
  """Calls ``write_fn(tmp_dir)`` and publishes ``tmp_dir`` as a new version.

  Returns (version, path). If ``write_fn`` raises, nothing is published and
  the temporary folder is removed.
  """
  os.makedirs(model_base_path, exist_ok=True)
  tmp_dir = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=model_base_path)
  try:
    write_fn(tmp_dir)
    atomic_files.fsync_tree(tmp_dir)  # durable before it is published
    version = next_version(model_base_path)
    for _ in range(_MAX_CLAIM_TRIES):
      final = os.path.join(model_base_path, str(version))
      if not os.path.lexists(final):
        try:
          # rename(2) refuses a non-empty target (ENOTEMPTY / EEXIST): a
          # version another export published meanwhile is never replaced.
          os.rename(tmp_dir, final)
          atomic_files.fsync_dir(model_base_path)
          return version, final
        except OSError as e:
          if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise
      version += 1
    raise RuntimeError(f"could not claim a new version under {model_base_path!r} "
                       f"after {_MAX_CLAIM_TRIES} tries")
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
