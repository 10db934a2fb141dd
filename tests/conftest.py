"""Selects Keras 2 before any test imports TensorFlow."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rl_tuner_tf  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS)
