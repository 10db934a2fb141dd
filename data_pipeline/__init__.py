"""MIDI -> NoteSequence -> 38-token melodies, as a tf.data pipeline."""
from rl_tuner_tf import keras_setup as _keras_setup  # noqa: F401
