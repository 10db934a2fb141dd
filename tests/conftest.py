"""Selects Keras 2 before any test imports TensorFlow."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rl_tuner_tf  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
  """A randomly initialised Note RNN (the default architecture) saved as a
  checkpoint: the same weights in every process (Python, NumPy and TF seeded),
  shared by the tests that tune or train from a Note RNN whose skill does not
  matter."""
  from rl_tuner_tf import note_rnn  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(0)
  directory = str(tmp_path_factory.mktemp("random_note_rnn"))
  note_rnn.save(note_rnn.NoteRNN(), directory)
  return directory


def run_command(module, argv):
  """Runs ``module.main`` (an entry point with ``define_flags(flag_values)``)
  on its own FlagValues parsed from ``argv``: a command line in-process,
  without the global absl FLAGS."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FlagValues()
  module.define_flags(flag_values)
  flag_values([module.__name__] + list(argv))
  return module.main([module.__name__], flag_values)
