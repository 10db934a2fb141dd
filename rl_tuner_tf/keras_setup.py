"""The one place that selects Keras 2 (``tf-keras``) for TensorFlow 2.21.

TF-Agents 0.19 and TensorFlow Probability 0.23 only work with Keras 2. With
TensorFlow >= 2.16, ``tf.keras`` is Keras 3 unless the environment variable
``TF_USE_LEGACY_KERAS=1`` is set before ``tf.keras`` is first touched
(TensorFlow resolves ``tf.keras`` lazily, so importing ``tensorflow`` earlier is
fine).  Every entry point of this project (``rl_tuner_tf``, ``export``, the
``data_pipeline`` modules that use TensorFlow, tests) imports this module
first.

It is also where the console is kept quiet (``quiet_startup``): TensorFlow's
C++ start-up lines, its CUDA probing errors on machines without a GPU driver
and gym's deprecation banner are filtered before TensorFlow and gym are
imported, unless ``--verbose`` is on the command line, RL_TUNER_TF_VERBOSE=1
is set, or the user set TF_CPP_MIN_LOG_LEVEL themselves.
"""
import contextlib
import os
import re
import sys
import tempfile

_VAR = "TF_USE_LEGACY_KERAS"
VERBOSE_ENV = "RL_TUNER_TF_VERBOSE"
# Lines TensorFlow's C++ side writes to stderr while it loads and probes for
# GPUs, before TF_CPP_MIN_LOG_LEVEL applies (absl logs them pre-init).
_STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|"
    r"cpu_feature_guard\.cc|To enable the following instructions|"
    r"cuda_platform\.cc|failed call to cuInit|cuda_diagnostics|cuda_executor|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning|"
    r"computation placer already registered|oneDNN custom operations")


def ensure_legacy_keras():
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


def verbose_requested(argv=None):
  """--verbose[=true|1] on the command line, or RL_TUNER_TF_VERBOSE=1."""
  env = os.environ.get(VERBOSE_ENV, "").strip().lower()
  if env:
    return env not in ("0", "false", "no")
  for arg in (sys.argv if argv is None else argv)[1:]:
    if arg in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1"):
      return True
  return False


@contextlib.contextmanager
def _filtered_stderr():
  """Captures file descriptor 2 (C++ writes too); passes on all but _STARTUP_NOISE."""
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
      lines = captured.read().decode("utf-8", "replace").splitlines(True)
      kept = "".join(l for l in lines if not _STARTUP_NOISE.search(l))
      if kept:
        os.write(2, kept.encode("utf-8"))


def _silence_gym_notice():
  """gym prints gym_notices' banner for its version at import; drop that entry."""
  try:
    from importlib import metadata  # pylint: disable=g-import-not-at-top
    version = metadata.version("gym")
    import gym_notices.notices  # pylint: disable=g-import-not-at-top
  except Exception:  # pylint: disable=broad-except  (no gym: nothing to do)
    return
  gym_notices.notices.notices.pop(version, None)


def quiet_startup():
  """Filters start-up noise at its sources; a no-op when verbose_requested().

  TF_CPP_MIN_LOG_LEVEL=2 (unless set by the user: then nothing is filtered)
  hides TensorFlow's C++ INFO and WARNING lines; the lines it writes before
  that applies (library loading, the GPU probe) are filtered from stderr
  while TensorFlow is imported and lists its GPUs; gym's banner is removed
  from gym_notices before gym is imported.
  """
  if verbose_requested() or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
    return
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
  _silence_gym_notice()
  if "tensorflow" in sys.modules:
    return
  with _filtered_stderr():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.list_physical_devices("GPU")


quiet_startup()
ensure_legacy_keras()
