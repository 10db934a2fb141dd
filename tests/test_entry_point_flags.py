"""Every entry point's module can be imported in one process (no absl flag
clashes), as the test suite and library users do; the tuning and evaluation
commands define their flags only when they run as programs."""
import importlib

from absl import flags

MODULES = [
    "rl_tuner_tf.train", "rl_tuner_tf.train_note_rnn", "rl_tuner_tf.sample_note_rnn",
    "rl_tuner_tf.evaluate", "export.saved_model", "export.serving_client",
    "data_pipeline.build_dataset", "data_pipeline.build_corpus",
    "listening_study.prepare_stimuli", "listening_study.serve",
    "listening_study.analyze",
]


def test_all_entry_points_import_together():
  for name in MODULES:
    importlib.import_module(name)
  for name in ("algorithm", "num_notes", "c", "pg_epochs", "num_melodies",
               "run_dir", "reward_weights"):
    assert name not in flags.FLAGS, name
