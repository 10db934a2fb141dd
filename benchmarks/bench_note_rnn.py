r"""Note RNN training speed: steps/s at batch 128 and the projected 30,000 steps.

    python benchmarks/bench_note_rnn.py                       # CPU (or GPU if any)
    python benchmarks/bench_note_rnn.py --windows=32,64 --layer_sizes=100 \
        --steps=100

Times the real training step of rl_tuner_tf.train_note_rnn (the compiled
tf.function: masked loss, L2, clipped Adam update) on random windows already
in memory, so it measures the model, not the input pipeline.  Target:
30,000 steps in <= 45 minutes on a 2-core CPU, i.e. >= 11.1
steps/s.  The CPU may be shared: the load average is printed beside the
numbers.  The figures also go to <--results_dir>/note_rnn.json
(results_io.py; docs/speed.md's table).
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data_pipeline import keras_setup  # noqa: E402,F401
from data_pipeline import console  # noqa: E402
import results_io  # noqa: E402  (benchmarks/)
import tensorflow as tf  # noqa: E402

from rl_tuner_tf import train_note_rnn  # noqa: E402

TARGET_MINUTES = 45.0


def bench_one(layer_sizes, window, batch_size, steps, warmup):
  config = train_note_rnn.TrainConfig(layer_sizes=layer_sizes,
                                      window_length=window,
                                      batch_size=batch_size)
  with tempfile.TemporaryDirectory() as tmp:
    trainer = train_note_rnn.NoteRNNTrainer(config, tmp)
    tokens = tf.random.uniform([batch_size, window + 1], 0, 38, tf.int32,
                               seed=1)
    lengths = tf.fill([batch_size], window + 1)
    step = trainer._train_step  # pylint: disable=protected-access
    for _ in range(warmup):
      step(tokens, lengths).numpy()
    t0 = time.perf_counter()
    for _ in range(steps):
      loss = step(tokens, lengths)
    loss.numpy()
    return steps / (time.perf_counter() - t0)


def result_rows(sizes, window, batch_size, rate, minutes, total_steps):
  """One architecture and window's figures as results_io rows."""
  name = (f"layers {'x'.join(map(str, sizes))}, window {window}, batch "
          f"{batch_size}")
  needed = total_steps / TARGET_MINUTES / 60
  return [
      results_io.row(f"{name}: training speed", rate, "steps/s",
                     target=f">= {needed:.1f} steps/s"),
      results_io.row(f"{name}: {total_steps:,} steps, projected", minutes,
                     "min", target=f"<= {TARGET_MINUTES:.0f} min"),
  ]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--windows", default="32,64",
                      help="window lengths (predictions per sequence)")
  parser.add_argument("--layer_sizes", default="100;64,64",
                      help="architectures, ';'-separated")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--total_steps", type=int, default=30000)
  console.add_verbose_argument(parser)
  results_io.add_argument(parser)
  args = parser.parse_args()
  load_at_start = results_io.load_average_1m()

  device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
  print(f"device {device}, {os.cpu_count()} CPU cores, batch "
        f"{args.batch_size}, {args.steps} timed steps, TF {tf.__version__}")
  header = (f"{'layers':>8} {'window':>6} {'steps/s':>8} "
            f"{'30k steps (min)':>15} {'<= 45 min':>9} {'load avg':>8}")
  print(header)
  print("-" * len(header))
  figures = []
  for sizes_text in args.layer_sizes.split(";"):
    sizes = train_note_rnn.parse_layer_sizes(sizes_text)
    for window in (int(w) for w in args.windows.split(",")):
      rate = bench_one(sizes, window, args.batch_size, args.steps, args.warmup)
      minutes = args.total_steps / rate / 60
      load = os.getloadavg()[0]
      print(f"{'x'.join(map(str, sizes)):>8} {window:>6} {rate:>8.1f} "
            f"{minutes:>15.1f} {'yes' if minutes <= TARGET_MINUTES else 'NO':>9} "
            f"{load:>8.2f}", flush=True)
      figures += result_rows(sizes, window, args.batch_size, rate, minutes,
                             args.total_steps)
  results_io.write("note_rnn", figures, sys.argv, args.results_dir,
                   load_at_start)


if __name__ == "__main__":
  main()
