"""The one place that selects Keras 2 (``tf-keras``) for TensorFlow 2.21.

TF-Agents 0.19 and TensorFlow Probability 0.23 only work with Keras 2. With
TensorFlow >= 2.16, ``tf.keras`` is Keras 3 unless the environment variable
``TF_USE_LEGACY_KERAS=1`` is set before ``tf.keras`` is first touched
(TensorFlow resolves ``tf.keras`` lazily, so importing ``tensorflow`` earlier is
fine).  Every entry point of this project (``rl_tuner_tf``, ``data_pipeline``,
``export``, tests) imports this module first.
"""
import os
import sys

_VAR = "TF_USE_LEGACY_KERAS"


def ensure_legacy_keras():
  """Sets TF_USE_LEGACY_KERAS=1 and fails clearly if Keras 3 is already bound."""
  os.environ[_VAR] = "1"
  tf = sys.modules.get("tensorflow")
  if tf is None:
    return
  keras_mod = sys.modules.get("keras")
  # If tf.keras was already materialised as Keras 3, legacy Keras cannot be
  # switched on any more in this process.
  bound = getattr(tf, "__dict__", {}).get("keras")
  name = getattr(bound, "__name__", "") if bound is not None else ""
  if name and not name.startswith("tf_keras"):
    raise ImportError(
        "rl_tuner_tf needs Keras 2 (tf-keras) but tf.keras was already used as "
        f"Keras 3 ({name}) in this process. Set {_VAR}=1 in the environment or "
        "import rl_tuner_tf before using tf.keras.")
  del keras_mod


ensure_legacy_keras()
