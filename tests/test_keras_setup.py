"""The Keras-2 switch works whatever the import order of TensorFlow."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code):
  env = dict(os.environ)
  env.pop("TF_USE_LEGACY_KERAS", None)
  env["PYTHONPATH"] = REPO
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                        text=True, timeout=300, cwd=REPO)


@pytest.mark.parametrize("imports", [
    "import rl_tuner_tf, data_pipeline\nimport tensorflow as tf",
    "import tensorflow as tf\nimport data_pipeline, rl_tuner_tf",
    "import tensorflow as tf\nimport tf_keras\nimport rl_tuner_tf",
])
def test_legacy_keras_selected_whatever_the_order(imports):
  code = imports + (
      "\nimport tensorflow as tf\nimport tensorflow_probability as tfp\n"
      "import tf_agents.networks\n"
      "assert tf.keras.layers.LSTM.__module__.startswith('tf_keras'), tf.keras.layers.LSTM.__module__\n"
      "print('OK')\n")
  result = _run(code)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "OK" in result.stdout


def test_keras3_already_bound_fails_with_clear_message():
  code = ("import tensorflow as tf\n"
          "tf.keras.layers  # binds Keras 3\n"
          "import rl_tuner_tf\n")
  result = _run(code)
  assert result.returncode != 0
  assert "TF_USE_LEGACY_KERAS" in result.stderr
