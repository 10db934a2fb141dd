r"""Speed of the Table 1 evaluation: sampling N melodies per model and
replaying them through the music-theory rules.

    python benchmarks/bench_evaluate.py [--num_melodies=100000] [--kinds=note_rnn,q]

Uses the shipped Note RNN checkpoint when it exists (else a random Note RNN;
speed does not depend on the weights). Target: 100,000 melodies per
model in about a minute on the 2-core CPU. The figures also go to
<--results_dir>/evaluate.json (results_io.py; docs/speed.md's table).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipeline import keras_setup  # noqa: E402,F401
from data_pipeline import console  # noqa: E402
import results_io  # noqa: E402  (benchmarks/)
import tensorflow as tf  # noqa: E402

from rl_tuner_tf import note_rnn  # noqa: E402
from rl_tuner_tf.evaluation import generate  # noqa: E402
from rl_tuner_tf.evaluation import table1  # noqa: E402


def result_rows(kind, trace, gen, stats, n):
  """One model's figures (n melodies) as results_io rows."""
  total = gen + stats
  return [
      results_io.row(f"{kind}: sample {n:,} melodies", gen, "s"),
      results_io.row(f"{kind}: Table 1 statistics of {n:,}", stats, "s"),
      results_io.row(f"{kind}: sampling + statistics", total, "s",
                     target="~60 s per 100,000 melodies"),
      results_io.row(f"{kind}: throughput", n / total, "melodies/s"),
      results_io.row(f"{kind}: graph tracing (one-off, apart)", trace, "s"),
  ]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_melodies", type=int, default=100000)
  parser.add_argument("--kinds", default="note_rnn,q")
  parser.add_argument("--batch_size", type=int, default=generate.DEFAULT_BATCH_SIZE)
  parser.add_argument("--chunk_size", type=int, default=table1.DEFAULT_CHUNK)
  console.add_verbose_argument(parser)
  results_io.add_argument(parser)
  args = parser.parse_args()
  load_at_start = results_io.load_average_1m()
  reward_rnn, source = note_rnn.shipped_or_random()
  q_network = note_rnn.NoteRNN()
  q_network.set_weights(reward_rnn.get_weights())
  device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
  print(f"device: {device}, threads: {os.cpu_count()}, Note RNN: {source}, "
        f"N = {args.num_melodies}")

  rows = []
  for kind in args.kinds.split(","):
    # Warm-up (graph tracing) excluded from the timings, reported apart.
    start = time.perf_counter()
    warm_tokens, _ = generate.generate_melodies(kind, q_network, reward_rnn,
                                                64, 0, batch_size=64)
    table1.compute_table1(warm_tokens)
    trace = time.perf_counter() - start

    start = time.perf_counter()
    tokens, log_p = generate.generate_melodies(
        kind, q_network, reward_rnn, args.num_melodies, 1,
        batch_size=args.batch_size)
    gen = time.perf_counter() - start
    start = time.perf_counter()
    table1.compute_table1(tokens, log_p, chunk_size=args.chunk_size)
    stats = time.perf_counter() - start
    rows.append((kind, trace, gen, stats))

  print()
  print(f"| model | tracing (s) | sample {args.num_melodies} (s) | "
        "Table 1 stats (s) | total (s) | melodies/s |")
  print("|---|---|---|---|---|---|")
  for kind, trace, gen, stats in rows:
    total = gen + stats
    print(f"| {kind} | {trace:.1f} | {gen:.1f} | {stats:.1f} | {total:.1f} | "
          f"{args.num_melodies / total:,.0f} |")
  print("\ntarget: ~60 s per model for 100,000 melodies (sampling + statistics)")
  figures = [r for row in rows
             for r in result_rows(*row, args.num_melodies)]
  results_io.write("evaluate", figures, sys.argv, args.results_dir,
                   load_at_start)


if __name__ == "__main__":
  main()
