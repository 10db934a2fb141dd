"""rl-tuner-tf: RL Tuner (Jaques et al. 2017) in TensorFlow 2 / TF-Agents."""
from data_pipeline import keras_setup as _keras_setup  # must precede tf.keras use

__version__ = "0.1.0"
