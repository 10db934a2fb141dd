r"""Speed of RL tuning: notes composed/s, updates/s, full-run wall time.

    python benchmarks/bench_tuning.py                     # q, psi, g; defaults
    python benchmarks/bench_tuning.py --algorithms=q --minibatches_per_update=1
    python benchmarks/bench_tuning.py --full_run          # time whole runs

For each algorithm it builds the same compiled graph as
``python -m rl_tuner_tf.train`` (rl_tuner_tf.tuning.Tuner: batched
environment, TF-Agents driver and replay buffer, agent updates), traces it,
then times:
  collect-only   composing notes (policy + environment + replay writes)
  train-only     gradient updates on transitions from the replay buffer
  combined       the real loop (compose B notes, then their share of updates)
and estimates the wall time of the full default run (1,000,000 notes,
200,000 paper minibatches of 32 = 6.4M transitions) from the combined rate,
plus the one-off start-up (graph tracing). --full_run runs the whole thing
instead of estimating. The target: a full run in <= 10 minutes on a
2-core CPU for each of q, psi, g. The figures also go to
<--results_dir>/tuning.json (results_io.py; docs/speed.md's table).

Uses the shipped Note RNN when present (else a random one: the speed does not
depend on the weights).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipeline import keras_setup  # noqa: F401,E402
from data_pipeline import console  # noqa: E402
import results_io  # noqa: E402  (benchmarks/)
import tensorflow as tf  # noqa: E402

from rl_tuner_tf import note_rnn  # noqa: E402
from rl_tuner_tf import tuning  # noqa: E402

FULL_RUN_NOTES = 1_000_000
LIMIT_S = 600


def _source_model():
  try:
    return note_rnn.load(), "shipped checkpoint"
  except FileNotFoundError:
    return note_rnn.NoteRNN(), "random weights (no shipped checkpoint)"


def _timed(fn, *args):
  start = time.perf_counter()
  fn(*args)
  return time.perf_counter() - start


def bench_algorithm(algorithm, source, args):
  config = tuning.TuningConfig.of(
      algorithm=algorithm, num_compositions=args.num_compositions,
      minibatches_per_update=args.minibatches_per_update)
  built = time.perf_counter()
  tuner = tuning.Tuner(config, source)
  b = config.off_policy.num_compositions

  collect = tf.function(
      lambda n: tf.while_loop(
          lambda i: i < n,
          lambda i: tf.identity(i + 1 + 0 * tf.cast(
              tuner.driver.run(tuner.env.current_time_step(), tuple(
                  v.value() for v in tuner._policy_state.values))[0].step_type[0],  # pylint: disable=protected-access
              tf.int32)),
          [tf.constant(0)], parallel_iterations=1), autograph=False)
  train = tf.function(
      lambda n: tf.while_loop(
          lambda i: i < n,
          lambda i: tf.identity(i + 1 + 0 * tf.cast(
              tuner._train_updates(), tf.int32)),  # pylint: disable=protected-access
          [tf.constant(0)], parallel_iterations=1), autograph=False)

  tuner.run(2)  # trace + fill the replay buffer enough to sample
  startup = time.perf_counter() - built
  collect(tf.constant(1))
  train(tf.constant(1))

  n = args.iterations
  t_collect = _timed(collect, tf.constant(n))
  t_train = _timed(train, tf.constant(n))
  t_both = _timed(tuner.run, n)
  notes = n * b
  updates = n * config.off_policy.updates_per_iteration()
  transitions = updates * config.off_policy.update_batch_size()
  full_iterations = FULL_RUN_NOTES // b
  row = {
      "algorithm": algorithm,
      "collect notes/s": notes / t_collect,
      "train updates/s": updates / t_train,
      "train transitions/s": transitions / t_train,
      "combined notes/s": notes / t_both,
      "combined updates/s": updates / t_both,
      "startup s": startup,
      "full run s (est.)": startup + full_iterations * t_both / n,
  }
  if args.full_run:
    remaining = full_iterations - tuner.num_notes_composed // b
    row["full run s (measured)"] = startup + _timed(tuner.run, remaining)
  return row, config


def result_rows(row):
  """One algorithm's headline figures as results_io rows."""
  a = row["algorithm"]
  out = [
      results_io.row(f"{a}: collect only", row["collect notes/s"], "notes/s"),
      results_io.row(f"{a}: train only", row["train updates/s"],
                     "updates/s"),
      results_io.row(f"{a}: combined loop", row["combined notes/s"],
                     "notes/s"),
      results_io.row(f"{a}: start-up (graph tracing)", row["startup s"], "s"),
      results_io.row(f"{a}: full default run, estimated",
                     row["full run s (est.)"], "s", target=f"<= {LIMIT_S} s",
                     note=f"{FULL_RUN_NOTES:,} notes"),
  ]
  if "full run s (measured)" in row:
    out.append(results_io.row(f"{a}: full default run, measured",
                              row["full run s (measured)"], "s",
                              target=f"<= {LIMIT_S} s",
                              note=f"{FULL_RUN_NOTES:,} notes"))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--algorithms", default="q,psi,g")
  parser.add_argument("--num_compositions", type=int,
                      default=tuning.OffPolicyConfig().num_compositions)
  parser.add_argument("--minibatches_per_update", type=int,
                      default=tuning.OffPolicyConfig().minibatches_per_update)
  parser.add_argument("--iterations", type=int, default=40,
                      help="timed iterations (B notes each) per measurement")
  parser.add_argument("--full_run", action="store_true",
                      help="run all 1,000,000 notes instead of estimating")
  console.add_verbose_argument(parser)
  results_io.add_argument(parser)
  args = parser.parse_args()
  load_at_start = results_io.load_average_1m()
  source, provenance = _source_model()
  rows = []
  for algorithm in args.algorithms.split(","):
    row, config = bench_algorithm(algorithm.strip(), source, args)
    rows.append(row)
    print(f"{algorithm}: done", flush=True)
  print()
  print(f"Note RNN: {provenance}; {config.off_policy.num_compositions} compositions in "
        f"parallel; per {config.off_policy.num_compositions} notes "
        f"{config.off_policy.updates_per_iteration()} updates of "
        f"{config.off_policy.update_batch_size()} transitions "
        f"({config.off_policy.minibatches_per_update} paper minibatches of "
        f"{config.off_policy.minibatch_size} per update); TF "
        f"{tf.__version__}, {os.cpu_count()} CPUs")
  print(f"Full default run: {FULL_RUN_NOTES:,} notes, "
        f"{FULL_RUN_NOTES // config.off_policy.train_every_n_notes:,} paper minibatches "
        f"= {FULL_RUN_NOTES // config.off_policy.train_every_n_notes * config.off_policy.minibatch_size:,}"
        " transitions")
  columns = list(rows[0].keys())
  widths = [max(len(c), 10) for c in columns]
  print(" | ".join(c.ljust(w) for c, w in zip(columns, widths)))
  print("-+-".join("-" * w for w in widths))
  for row in rows:
    cells = []
    for c, w in zip(columns, widths):
      v = row[c]
      cells.append((f"{v:,.0f}" if isinstance(v, float) else str(v)).ljust(w))
    print(" | ".join(cells))
  for row in rows:
    key = ("full run s (measured)" if "full run s (measured)" in row
           else "full run s (est.)")
    verdict = "within" if row[key] <= LIMIT_S else "OVER"
    print(f"{row['algorithm']}: {row[key] / 60:.1f} min, {verdict} the "
          f"10-minute bar ({row[key] / LIMIT_S:.2f} of it)")
  results_io.write("tuning", [r for row in rows for r in result_rows(row)],
                   sys.argv, args.results_dir, load_at_start)


if __name__ == "__main__":
  main()
