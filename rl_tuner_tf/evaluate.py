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
from typing import List

from absl import app
from absl import flags

from data_pipeline import keras_setup  # noqa: F401

from data_pipeline import console
from data_pipeline import run_lock
from rl_tuner_tf import configuration
from rl_tuner_tf.evaluation import pipeline

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """One flag per setting of pipeline.EvaluationConfig; defined only when
  this module runs as a program."""
  configuration.define_flags(pipeline.EvaluationConfig, flag_values)


def main(argv: List[str], flag_values: flags.FlagValues = FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    config = pipeline.EvaluationConfig.from_flags(flag_values)
    _, output_dir, report_path = pipeline.run(config)
  except configuration.ConfigError as e:
    raise app.UsageError(str(e))
  except (run_lock.RunLockedError, OSError) as e:  # busy, read-only, full
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"Table 1: {output_dir}/table1.md")
  print(f"Report: {report_path}")


if __name__ == "__main__":
  define_flags()
  console.run(main)
