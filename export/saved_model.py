r"""Exports a melody model as SavedModels: one for TF Serving, one TF-Agents policy.

    python -m export.saved_model --tuned_model_dir=runs/paper/q/model \
        --model_base_path=generated/serving/melody

writes ``generated/serving/melody/<version>/`` (saved_model.pb + variables/ +
export_info.json; signatures in export/melody_generator.py) and the
PolicySaver export ``generated/serving/melody_tfagents_policy/<version>/``.
Each run adds version ``max existing + 1``; an existing version is never
touched. Without --tuned_model_dir the Note RNN checkpoint is exported as a
bare Note RNN model (default: the shipped one, rl_tuner_tf/checkpoints/note_rnn).
"""
from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import sys
from typing import List

from absl import app
from absl import flags
import tensorflow as tf

from data_pipeline import console
from data_pipeline import run_lock
from export import exporter
from export import melody_generator
from rl_tuner_tf import note_rnn

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags; defined only when run as a program, so this module
  imports next to the other entry points (shared names such as --seed)."""
  flags.DEFINE_string("tuned_model_dir", None,
                      "A tuned model (melody_policy.save_tuned layout). Exclusive "
                      "with --note_rnn_checkpoint.")
  flags.DEFINE_string("note_rnn_checkpoint", None,
                      "A Note RNN checkpoint folder (note_rnn.save layout) to export "
                      "as a bare Note RNN. Default, when no --tuned_model_dir: "
                      f"{note_rnn.SHIPPED_CHECKPOINT_DIR}")
  flags.DEFINE_string("model_base_path", None,
                      "TF Serving model base path; versions are written beneath it.")
  flags.DEFINE_integer("max_steps", melody_generator.DEFAULT_MAX_STEPS,
                       "Largest num_steps a generate request may ask for.")
  flags.DEFINE_integer("max_batch", melody_generator.DEFAULT_MAX_BATCH,
                       "Largest batch a request may carry.")
  flags.DEFINE_integer("random_note_max", melody_generator.DEFAULT_RANDOM_NOTE_MAX,
                       "generate_random_primer draws the first note uniformly from "
                       "0..this (36 as in the training environment / the original; "
                       "37 for every class).")
  flags.DEFINE_bool("export_tfagents_policy", True,
                    "Also write the TF-Agents PolicySaver export.")
  flags.DEFINE_string("tfagents_policy_base_path", None,
                      f"Where the PolicySaver versions go (default: "
                      f"<model_base_path>{exporter.TFAGENTS_SUFFIX}).")
  flags.DEFINE_bool("tfagents_greedy", False,
                    "PolicySaver export of the greedy (argmax) policy instead of "
                    "the sampling one.")
  flags.DEFINE_float("tfagents_temperature", 1.0,
                     "Softmax temperature of the sampling TF-Agents policy.")

def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    exporter.export_all(  # prints each export as it starts and once published
        FLAGS.model_base_path, FLAGS.tuned_model_dir, FLAGS.note_rnn_checkpoint,
        FLAGS.max_steps, FLAGS.max_batch, FLAGS.random_note_max,
        FLAGS.export_tfagents_policy, FLAGS.tfagents_policy_base_path,
        FLAGS.tfagents_greedy, FLAGS.tfagents_temperature,
        log=lambda message: print(message, flush=True))
  except (FileNotFoundError, ValueError) as e:  # bad source or flag values
    raise app.UsageError(str(e)) from e
  except (run_lock.RunLockedError, OSError,
          tf.errors.OpError) as e:  # busy, read-only, full
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("model_base_path")
  console.run(main)
