"""The one place that selects Keras 2 (``tf-keras``) for TensorFlow 2.21.

TF-Agents 0.19 and TensorFlow Probability 0.23 only work with Keras 2. With
TensorFlow >= 2.16, ``tf.keras`` is Keras 3 unless the environment variable
``TF_USE_LEGACY_KERAS=1`` is set before ``tf.keras`` is first touched
(TensorFlow resolves ``tf.keras`` lazily, so importing ``tensorflow`` earlier is
fine).  Every entry point of this project (``rl_tuner_tf``, ``export``, the
``data_pipeline`` modules that use TensorFlow, tests) imports this module
first.

It also keeps TensorFlow's import quiet (``quiet_startup``): in one of the
project's programs it installs the console filter of data_pipeline/console.py
before TensorFlow loads; elsewhere it filters the log records TensorFlow
writes while it loads.  gym's banner is dropped.  ``--verbose`` or
RL_TUNER_TF_VERBOSE=1 keeps everything.
"""
import contextlib
import logging
import os
import sys
import tempfile

from data_pipeline import console

_VAR = "TF_USE_LEGACY_KERAS"


def ensure_legacy_keras() -> None:
  """Sets TF_USE_LEGACY_KERAS=1 and fails clearly if Keras 3 is already bound."""
  os.environ[_VAR] = "1"
  tf = sys.modules.get("tensorflow")
  if tf is None:
    return
  # tf.keras is a KerasLazyLoader that picks its Keras on first attribute
  # access; once it picked Keras 3, this process cannot switch any more.
  loader = tf.__dict__.get("keras")
  version = loader.__dict__.get("_tfll_keras_version") if loader is not None else None
  if version is None and loader is not None and "_tfll_mode" not in loader.__dict__:
    # The loader has already replaced itself by the module it loaded.
    version = "tf_keras" if loader.__name__.startswith("tf_keras") else loader.__name__
  if version is not None and version != "tf_keras":
    raise ImportError(
        "rl_tuner_tf needs Keras 2 (the tf-keras package), but tf.keras was "
        f"already used as {version} in this process. Set {_VAR}=1 in the "
        "environment, or import rl_tuner_tf before the first use of tf.keras.")
  bound = sys.modules.get("tensorflow.keras")
  if bound is not None and not bound.__name__.startswith("tf_keras") and bound is not loader:
    raise ImportError(
        "rl_tuner_tf needs Keras 2 (the tf-keras package), but tensorflow.keras "
        f"was already imported as {bound.__name__}. Set {_VAR}=1 in the "
        "environment, or import rl_tuner_tf before tensorflow.keras.")
  # TensorFlow imported without the variable searches Keras 3's API folder
  # first for `import tensorflow.keras...` submodules; put tf-keras' first,
  # as TensorFlow itself does when the variable is set at its import.
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec("tf_keras.api._v2.keras")
  if spec is not None and spec.submodule_search_locations:
    legacy_dir = os.path.dirname(list(spec.submodule_search_locations)[0])
    paths = list(getattr(tf, "__path__", []))
    if paths[:1] != [legacy_dir]:
      tf.__path__ = [legacy_dir] + [p for p in paths if p != legacy_dir]


@contextlib.contextmanager
def _filtered_stderr():
  """Captures file descriptor 2 (C++ writes too) while only TensorFlow writes
  there; passes it on less its log records (wrapped lines included)."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = console.without_records(captured.read(), whole_span=True)
      if kept:
        os.write(2, kept)


def _silence_gym_notice():
  """gym prints gym_notices' banner for its version at import; drop that entry."""
  try:
    from importlib import metadata  # pylint: disable=g-import-not-at-top
    version = metadata.version("gym")
    import gym_notices.notices  # pylint: disable=g-import-not-at-top
  except Exception:  # pylint: disable=broad-except  (no gym: nothing to do)
    return
  gym_notices.notices.notices.pop(version, None)


def quiet_startup() -> None:
  """Keeps TensorFlow's import quiet; a no-op when console.verbose_requested().

  In one of the project's programs the console filter (data_pipeline/console.py)
  is installed first and stays for the whole run.  Anywhere (a notebook, pytest
  too), TF_CPP_MIN_LOG_LEVEL=2 unless set, and the log records TensorFlow writes
  while it loads and probes for GPUs are filtered from stderr.  gym's banner
  is removed before gym loads.
  """
  if console.verbose_requested():
    return
  _silence_gym_notice()
  if console.is_project_program():
    console.install()
    # TensorFlow's Python warnings (retracing notices when a job builds one
    # sampler per model, deprecations) are for developers, as its C++ log.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if "tensorflow" in sys.modules:
    return
  with _filtered_stderr():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.list_physical_devices("GPU")


quiet_startup()
ensure_legacy_keras()
