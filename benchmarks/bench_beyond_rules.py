r"""Speed of the comparison with real melodies (rl_tuner_tf/evaluation/beyond_rules.py).

    python benchmarks/bench_beyond_rules.py [--num_melodies=100000] \
        [--reference_tfrecord_dir=DIR]

Samples N melodies from the shipped Note RNN (else a random one), loads the
reference (default: the corpus the Note RNN's provenance names, else the
embedded corpus, built when missing), then times ``measure`` stage by stage
for the model and for the real-vs-real floor. Target: at most
30 s of metrics for 100,000 melodies per model on the 2-core machine;
sampling is not part of it (bench_evaluate.py times it). The figures also
go to <--results_dir>/beyond_rules.json (results_io.py; docs/speed.md).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipeline import keras_setup  # noqa: E402,F401
from data_pipeline import console  # noqa: E402
import results_io  # noqa: E402  (benchmarks/)

from rl_tuner_tf import note_rnn  # noqa: E402
from rl_tuner_tf.evaluation import beyond_rules  # noqa: E402
from rl_tuner_tf.evaluation import generate  # noqa: E402
from rl_tuner_tf.evaluation import reference  # noqa: E402

TARGET_S = 30.0


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_melodies", type=int, default=100000)
  parser.add_argument("--reference_tfrecord_dir", default=None)
  console.add_verbose_argument(parser)
  results_io.add_argument(parser)
  args = parser.parse_args()
  load_at_start = results_io.load_average_1m()
  model, source = note_rnn.shipped_or_random()
  directory = (args.reference_tfrecord_dir or
               reference.default_tfrecord_dir(note_rnn.SHIPPED_CHECKPOINT_DIR))
  start = time.perf_counter()
  ref = reference.load(directory, 32)
  load_s = time.perf_counter() - start
  tokens, _ = generate.generate_melodies("note_rnn", None, model,
                                         args.num_melodies, 1)
  print(f"CPU threads: {os.cpu_count()}, Note RNN: {source}, N = "
        f"{args.num_melodies}, reference {directory}: {len(ref.a)} + "
        f"{len(ref.b)} windows, {ref.train_index.size} training 16-step "
        f"windows (loaded in {load_s:.1f} s)")
  beyond_rules.measure(tokens[:500], ref, model)  # traces the Note RNN call
  rows = {}
  for name, x in (("model", tokens), ("floor (held-out A)", ref.a)):
    timings = {}
    start = time.perf_counter()
    beyond_rules.measure(x, ref, model, timings=timings)
    rows[name] = (timings, time.perf_counter() - start, len(x))
  stages = list(rows["model"][0])
  width = max(len(s) for s in stages + ["total"])
  print(f"\n{'stage':<{width}}  " + "  ".join(f"{n:>20}" for n in rows))
  for stage in stages:
    print(f"{stage:<{width}}  " + "  ".join(
        f"{rows[n][0].get(stage, 0.0):>19.2f}s" for n in rows))
  print(f"{'total':<{width}}  " + "  ".join(
      f"{rows[n][1]:>19.2f}s" for n in rows))
  total = rows["model"][1]
  print(f"\n{rows['model'][2]} melodies: {total:.1f} s of metrics "
        f"(target <= {TARGET_S:.0f} s: {'met' if total <= TARGET_S else 'NOT met'})")
  floor = rows["floor (held-out A)"]
  results_io.write("beyond_rules", [
      results_io.row(f"metrics of {rows['model'][2]:,} model melodies", total,
                     "s", target=f"<= {TARGET_S:.0f} s per 100,000 melodies"),
      results_io.row(f"metrics of the real-vs-real floor ({floor[2]:,} "
                     "held-out windows)", floor[1], "s"),
      results_io.row("loading the reference", load_s, "s",
                     note=f"{len(ref.a)} + {len(ref.b)} windows"),
  ], sys.argv, args.results_dir, load_at_start)


if __name__ == "__main__":
  main()
