r"""Table 1 of the paper for the Note RNN and tuned models, with samples.

    python -m rl_tuner_tf.evaluate \
        --tuned_model_dirs=runs/r1/q/model,runs/r1/psi/model \
        --output_dir=runs/r1/evaluation

or ``--run_dir=runs/r1`` to evaluate every tuned model found there (folders
up to two levels down holding tuned.json) into <run_dir>/evaluation and write
<run_dir>/report.html (with the run's Figure 2).

For each model: N melodies (default 100,000, as the paper) sampled from its
policy after a random primer note (reference section 7); writes
<output_dir>/<model>/melodies.npy ([N, 32] int tokens), log_p.npy,
table1.json and samples/ (MIDI, WAV, piano-roll PNG), then the combined
<output_dir>/table1.md (ours beside the paper) and report.html.
"""
import sys

from absl import app
from absl import flags

from data_pipeline import keras_setup  # noqa: F401

from data_pipeline import console
from data_pipeline import run_lock
from rl_tuner_tf import note_rnn
from rl_tuner_tf.evaluation import generate
from rl_tuner_tf.evaluation import pipeline

FLAGS = flags.FLAGS


def define_flags():
  """Command-line flags; defined only when run as a program, so this module
  imports next to the other entry points (shared names such as --seed)."""
  flags.DEFINE_string("note_rnn_checkpoint", note_rnn.SHIPPED_CHECKPOINT_DIR,
                      "Note RNN checkpoint for the 'note_rnn' row; empty: no "
                      "Note RNN row.")
  flags.DEFINE_list("tuned_model_dirs", [],
                    "Tuned models (written by melody_policy.save_tuned): q, psi, "
                    "g, rl_only, ppo or rloo.")
  flags.DEFINE_string("run_dir", None,
                      "A training run: evaluates every tuned model in it, writes "
                      "to <run_dir>/evaluation and the report to "
                      "<run_dir>/report.html.")
  flags.DEFINE_integer("num_melodies", 100000, "Melodies per model (paper: 100,000).")
  flags.DEFINE_string("output_dir", None,
                      "Where results go (default <run_dir>/evaluation, or "
                      "runs/evaluation).")
  flags.DEFINE_integer("seed", 0, "Seed of the melody sampler.")
  flags.DEFINE_integer("batch_size", generate.DEFAULT_BATCH_SIZE,
                       "Melodies sampled per graph call.")
  flags.DEFINE_integer("num_notes", 32, "Notes per melody.")
  flags.DEFINE_integer("num_samples", 5, "MIDI / WAV / piano roll per model.")
  flags.DEFINE_enum("token_reading", None, ["paper", "magenta"],
                    "How the statistics read tokens 0/1 (default: each tuned "
                    "model's run setting, and theirs for the Note RNN row).")
  flags.DEFINE_bool("prime_all_classes", False,
                    "Draw the primer note from all 38 classes (the original "
                    "draws 0..36).")
  flags.DEFINE_float("objective_c", None,
                     "c of the KL-regularised objective E[sum r_MT/c + log p "
                     "- log pi] (default: each tuned model's run's c, the "
                     "Note RNN the c they share; else 0.5).")
  flags.DEFINE_bool("beyond_rules", True,
                    "Also measure every model against real held-out melodies "
                    "with metrics no reward optimises (beyond_rules.json / "
                    ".md; rl_tuner_tf/evaluation/beyond_rules.py).")
  flags.DEFINE_string("reference_tfrecord_dir", None,
                      "Corpus (TFRecords) whose validation melodies are the "
                      "real reference (default: the one the Note RNN's "
                      "provenance names, else the embedded corpus, built "
                      "when missing).")
  flags.DEFINE_bool("force", False,
                    "Sample and score every model again, even those whose "
                    "results in the output directory were computed from the "
                    "same model files, settings and statistics code (those "
                    "are reused by default).")

def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    _, output_dir, report_path = pipeline.run(
        note_rnn_checkpoint=FLAGS.note_rnn_checkpoint,
        tuned_model_dirs=FLAGS.tuned_model_dirs, run_dir=FLAGS.run_dir,
        output_dir=FLAGS.output_dir, num_melodies=FLAGS.num_melodies,
        seed=FLAGS.seed, batch_size=FLAGS.batch_size,
        num_notes=FLAGS.num_notes, num_samples=FLAGS.num_samples,
        prime_all_classes=FLAGS.prime_all_classes,
        token_reading=FLAGS.token_reading,
        objective_c=FLAGS.objective_c, force=FLAGS.force,
        beyond_rules=FLAGS.beyond_rules,
        reference_tfrecord_dir=FLAGS.reference_tfrecord_dir)
  except pipeline.SettingError as e:
    raise app.UsageError(str(e))
  except (run_lock.RunLockedError, OSError) as e:  # busy, read-only, full
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"Table 1: {output_dir}/table1.md")
  print(f"Report: {report_path}")


if __name__ == "__main__":
  define_flags()
  console.run(main)
