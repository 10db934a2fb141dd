r"""Time per update against the matmul bound, for the tuner and the Note RNN trainer.

    python benchmarks/bench_compute_bound.py
    python benchmarks/bench_compute_bound.py --repeats=5 --tuning_iterations=5

For each of
  tuning update (XLA)     rl_tuner_tf.tuning.Tuner's update loop, compiled
  tuning update (op by op) the same loop with jit_compile=False
  Note RNN step            rl_tuner_tf.train_note_rnn's training step
it prints the time per update, the matmul FLOPs one update performs (derived
from the shapes, formulas below), the throughput of a matmul of the
dominant shape measured in the same run (the best time of a graph loop of
that matmul on variables minus the best time of the same loop without it,
over --repeats timings interleaved with the update timings; see
MatmulProbe), the
bound = FLOPs / throughput, and time / bound. Every time is the best of
--repeats, because the CPU may be shared (the load average is printed).
A last line splits the XLA tuning update into its two stages (replay
sampling: one draw for the iteration's minibatches, outside XLA; the
compiled updates) and measures the same matmul inside an XLA program, whose
throughput on a small CPU can be below the graph-mode figure the bound uses.

FLOPs (N batch, H_l units of layer l, In_l = input width of layer l (38 for
layer 0, H_{l-1} above) + H_l, V = 38 classes, T steps; a [m x k].[k x n]
matmul is 2mkn FLOPs; its backward is 2mkn for dW plus 2mkn for dX when X
needs a gradient):
  tuning update, one LSTM step of the Q-network (trained) and the target
  network on N = minibatch transitions; the inputs (note, stored state) need
  no gradient:
    fwd   = sum_l 2 N In_l 4H_l + 2 N H_L V              (per network)
    total = 2 fwd                                        (Q and target)
          + sum_l 2 N In_l 4H_l + sum_{l>0} 2 N H_{l-1} 4H_l + 2 (2 N H_L V)
  Note RNN step, T steps on N sequences (Keras computes the one-hot input
  as a matmul; the one-hot needs no gradient):
    fwd   = T (sum_l 2 N In_l 4H_l + 2 N H_L V)
    total = 3 fwd - T 2 N 38 4H_0
Adam, clipping and the gates are elementwise and not counted; neither are
the small Gram matmuls behind the gradient norms (agents/update_step.py:
2 * 8 * n per gradient of n weights, about 1 MFLOP per update), which
the bound leaves out against the update. The bound's
shape is layer 0's gate matmul: [N x In_0] . [In_0 x 4H_0].

The figures also go to <--results_dir>/compute_bound.json (results_io.py;
docs/speed.md's table).
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipeline import keras_setup  # noqa: F401,E402
from data_pipeline import console  # noqa: E402
import results_io  # noqa: E402  (benchmarks/)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_pipeline.encoding import NUM_CLASSES  # noqa: E402
from rl_tuner_tf import note_rnn  # noqa: E402
from rl_tuner_tf import train_note_rnn  # noqa: E402
from rl_tuner_tf import tuning  # noqa: E402


def tuning_update_flops(n, layer_sizes, v=NUM_CLASSES):
  fwd, dw, dx = 0, 0, 0
  previous = v
  for i, h in enumerate(layer_sizes):
    fwd += 2 * n * (previous + h) * 4 * h
    dw += 2 * n * (previous + h) * 4 * h
    if i > 0:
      dx += 2 * n * previous * 4 * h
    previous = h
  fwd += 2 * n * previous * v
  return 2 * fwd + dw + dx + 2 * (2 * n * previous * v)


def note_rnn_step_flops(n, steps, layer_sizes, v=NUM_CLASSES):
  fwd = 0
  previous = v
  for h in layer_sizes:
    fwd += 2 * n * (previous + h) * 4 * h
    previous = h
  fwd += 2 * n * previous * v
  return 3 * steps * fwd - steps * 2 * n * v * 4 * layer_sizes[0]


class MatmulProbe:
  """Seconds per [m x k].[k x n] matmul on variables, in a loop.

  Graph mode (xla=False): a graph loop carrying acc += a.b, and the same
  loop with acc += c (c a [m x n] variable) as its baseline. XLA (xla=True):
  one compiled loop x <- tanh((x.b)[:, :k]) (each product depends on the
  last, so XLA can neither hoist nor drop it; needs n >= k), and the same
  loop with the product replaced by a column reversal as its baseline.

  time() times both loops; the matmul's cost is best(loop) - best(baseline)
  over all calls, each minimum taken on its own. (The minimum of the
  differences would be biased: a baseline slowed by another process makes
  the matmul look faster.)
  """

  def __init__(self, m, k, n, xla=False, flop_per_timing=1e9):
    self.flop = 2 * m * k * n
    self.calls = max(50, int(flop_per_timing / self.flop))
    a = tf.Variable(tf.random.normal([m, k]))
    b = tf.Variable(tf.random.normal([k, n]) / k ** 0.5)
    c = tf.Variable(tf.random.normal([m, n]))

    if xla:
      def make(with_product):
        @tf.function(autograph=False, jit_compile=True)
        def loop(count):
          def body(i, x):
            y = tf.matmul(x, b)[:, :k] if with_product else x[:, ::-1]
            return i + 1, tf.tanh(y)
          return tf.while_loop(lambda i, x: i < count, body,
                               [tf.constant(0), a.read_value()],
                               parallel_iterations=1)[1]
        return loop
      self._loops = (make(True), make(False))
    else:
      def make(product):
        @tf.function(autograph=False)
        def loop(count):
          return tf.while_loop(
              lambda i, acc: i < count,
              lambda i, acc: (i + 1, acc + product()),
              [tf.constant(0), tf.zeros([m, n])], parallel_iterations=1)[1]
        return loop
      self._loops = (make(lambda: tf.matmul(a, b)), make(c.read_value))
    for f in self._loops:  # trace and warm up
      f(tf.constant(10)).numpy()
    self._best = [float("inf"), float("inf")]

  def time(self):
    for i, f in enumerate(self._loops):
      start = time.perf_counter()
      f(tf.constant(self.calls)).numpy()
      self._best[i] = min(self._best[i],
                          (time.perf_counter() - start) / self.calls)

  def seconds(self):
    """Best seconds per matmul so far (never below 1 ns)."""
    return max(self._best[0] - self._best[1], 1e-9)

  def flop_per_second(self):
    return self.flop / self.seconds()


class TuningCase:
  """The tuner's update loop (sampling + updates), per update."""

  def __init__(self, source, args, jit_compile):
    self.config = tuning.TuningConfig.of(
        algorithm=args.algorithm, num_compositions=args.num_compositions,
        minibatches_per_update=args.minibatches_per_update, seed=0)
    self.tuner = tuning.Tuner(self.config, source, jit_compile=jit_compile)
    self.tuner.run(2)  # trace, fill the buffer, compile
    tuner = self.tuner
    self.train = tf.function(
        lambda n: tf.while_loop(
            lambda i: i < n,
            lambda i: tf.identity(i + 1 + 0 * tf.cast(
                tuner._train_updates(), tf.int32)),  # pylint: disable=protected-access
            [tf.constant(0)], parallel_iterations=1), autograph=False)
    self.train(tf.constant(1))
    # Each stage alone (stage_seconds_per_update), traced here.
    self._sample = tf.function(tuner._sample_minibatches, autograph=False)  # pylint: disable=protected-access
    self._sample()
    tuner._update_loop_fn()  # pylint: disable=protected-access  (its eager trace)
    self.iterations = args.tuning_iterations
    self.flops = tuning_update_flops(self.config.off_policy.update_batch_size(),
                                     source.layer_sizes)
    h0 = source.layer_sizes[0]
    self.shape = (self.config.off_policy.update_batch_size(), NUM_CLASSES + h0, 4 * h0)

  def seconds_per_update(self):
    start = time.perf_counter()
    self.train(tf.constant(self.iterations))
    return (time.perf_counter() - start) / (
        self.iterations * self.config.off_policy.updates_per_iteration())

  def stage_seconds_per_update(self):
    """(replay sampling, compiled updates): each stage alone, per update."""
    seconds = []
    for stage in (self._sample, self.tuner._update_loop_fn):  # pylint: disable=protected-access
      start = time.perf_counter()
      for _ in range(self.iterations):
        out = stage()
      out.numpy()
      seconds.append((time.perf_counter() - start) / (
          self.iterations * self.config.off_policy.updates_per_iteration()))
    return seconds


class NoteRNNCase:
  """train_note_rnn's compiled training step on windows in memory."""

  def __init__(self, args):
    sizes = train_note_rnn.parse_layer_sizes(args.note_rnn_layers)
    self.config = train_note_rnn.TrainConfig(
        layer_sizes=sizes, batch_size=args.note_rnn_batch,
        window_length=args.note_rnn_window)
    self._tmp = tempfile.TemporaryDirectory()
    self.trainer = train_note_rnn.NoteRNNTrainer(self.config, self._tmp.name)
    n, w = self.config.batch_size, self.config.window_length
    self.tokens = tf.random.uniform([n, w + 1], 0, NUM_CLASSES, tf.int32,
                                    seed=1)
    self.lengths = tf.fill([n], w + 1)
    self.step = self.trainer._train_step  # pylint: disable=protected-access
    for _ in range(3):
      self.step(self.tokens, self.lengths).numpy()
    self.steps = args.note_rnn_steps
    self.flops = note_rnn_step_flops(n, w, sizes)
    self.shape = (n, NUM_CLASSES + sizes[0], 4 * sizes[0])

  def seconds_per_update(self):
    start = time.perf_counter()
    for _ in range(self.steps):
      loss = self.step(self.tokens, self.lengths)
    loss.numpy()
    return (time.perf_counter() - start) / self.steps


def weight_difference(source, args, iterations):
  """Max |w_XLA - w_op-by-op| over the Q-network after the same iterations."""
  weights = []
  for jit in (False, True):
    config = tuning.TuningConfig.of(
        algorithm=args.algorithm, num_compositions=args.num_compositions,
        minibatches_per_update=args.minibatches_per_update, seed=0,
        num_notes=args.num_compositions * (iterations + 1))
    tuner = tuning.Tuner(config, source, jit_compile=jit)
    tuner.run(iterations)
    weights.append([w.numpy() for w in tuner.q_network.variables])
    updates = tuner.num_updates
  return max(float(np.max(np.abs(a - b))) for a, b in zip(*weights)), updates


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--algorithm", default="q")
  parser.add_argument("--num_compositions", type=int, default=400)
  parser.add_argument("--minibatches_per_update", type=int, default=1,
                      help="1: the paper's schedule (one minibatch of 32)")
  parser.add_argument("--tuning_iterations", type=int, default=5,
                      help="iterations (B notes' share of updates) per timing")
  parser.add_argument("--note_rnn_layers", default="100")
  parser.add_argument("--note_rnn_batch", type=int, default=128)
  parser.add_argument("--note_rnn_window", type=int, default=32)
  parser.add_argument("--note_rnn_steps", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--diff_iterations", type=int, default=3,
                      help="iterations for the XLA vs op-by-op weight check")
  console.add_verbose_argument(parser)
  results_io.add_argument(parser)
  args = parser.parse_args()
  load_at_start = results_io.load_average_1m()

  try:
    source = note_rnn.load()
  except FileNotFoundError:
    source = note_rnn.NoteRNN()
  cases = [("tuning update (XLA)", TuningCase(source, args, True)),
           ("tuning update (op by op)", TuningCase(source, args, False)),
           ("Note RNN step", NoteRNNCase(args))]
  best = {name: float("inf") for name, _ in cases}
  probes = {case.shape: MatmulProbe(*case.shape) for _, case in cases}
  for _ in range(args.repeats):  # interleaved, best of each
    for name, case in cases:
      best[name] = min(best[name], case.seconds_per_update())
      probes[case.shape].time()
  xla_case = cases[0][1]
  stages = [float("inf"), float("inf")]
  xla_probe = MatmulProbe(*xla_case.shape, xla=True)
  for _ in range(args.repeats):
    stages = [min(a, b) for a, b in zip(stages,
                                        xla_case.stage_seconds_per_update())]
    xla_probe.time()
  diff, diff_updates = weight_difference(source, args, args.diff_iterations)

  device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
  cfg = cases[0][1].config.off_policy
  print(f"{device}, {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.2f}, TF {tf.__version__}; tuner: algorithm "
        f"{args.algorithm}, Note RNN {list(source.layer_sizes)}, "
        f"{cfg.updates_per_iteration()} updates of {cfg.update_batch_size()} "
        f"per {cfg.num_compositions} notes; Note RNN trainer: batch "
        f"{args.note_rnn_batch}, window {args.note_rnn_window}, layers "
        f"{args.note_rnn_layers}; best of {args.repeats}")
  header = (f"{'':<25} {'us/update':>10} {'MFLOP':>8} {'matmul shape':>18} "
            f"{'GFLOP/s':>8} {'bound us':>9} {'ratio':>6} {'<= 2x':>5}")
  print(header)
  print("-" * len(header))
  results = []
  for name, case in cases:
    shape = case.shape
    rate = probes[shape].flop_per_second()
    bound = case.flops / rate
    ratio = best[name] / bound
    print(f"{name:<25} {best[name] * 1e6:>10.0f} {case.flops / 1e6:>8.2f} "
          f"{'x'.join(map(str, shape)):>18} {rate / 1e9:>8.1f} "
          f"{bound * 1e6:>9.0f} {ratio:>6.2f} {'yes' if ratio <= 2 else 'NO':>5}")
    results += [
        results_io.row(f"{name}: time per update", best[name] * 1e6,
                       "us/update", note=f"best of {args.repeats}"),
        results_io.row(f"{name}: time / matmul bound", ratio, "ratio",
                       target="<= 2"),
    ]
  shape = xla_case.shape
  graph_rate = probes[shape].flop_per_second()
  xla_rate = xla_probe.flop_per_second()
  print(f"tuning update (XLA), by stage: replay sampling "
        f"{stages[0] * 1e6:.0f} us + compiled updates "
        f"{stages[1] * 1e6:.0f} us per update; the updates alone are "
        f"{stages[1] / (xla_case.flops / graph_rate):.2f}x the bound. The "
        f"{'x'.join(map(str, shape))} matmul inside an XLA program: "
        f"{xla_rate / 1e9:.1f} GFLOP/s (bound at that rate "
        f"{xla_case.flops / xla_rate * 1e6:.0f} us)")
  print(f"XLA vs op by op, same seed, after {diff_updates} updates "
        f"(collection included): max |dw| over the Q-network = {diff:.3g}")
  results += [
      results_io.row(f"{'x'.join(map(str, matmul))} matmul, graph mode",
                     probe.flop_per_second() / 1e9, "GFLOP/s")
      for matmul, probe in probes.items()]
  results += [
      results_io.row("tuning update (XLA): replay sampling", stages[0] * 1e6,
                     "us/update"),
      results_io.row("tuning update (XLA): compiled updates",
                     stages[1] * 1e6, "us/update"),
      results_io.row("tuning update (XLA): compiled updates / matmul bound",
                     stages[1] / (xla_case.flops / graph_rate), "ratio"),
      results_io.row(f"{'x'.join(map(str, shape))} matmul inside XLA",
                     xla_rate / 1e9, "GFLOP/s"),
      results_io.row("XLA vs op by op: max |dw| over the Q-network", diff,
                     "abs. difference", note=f"after {diff_updates} updates"),
  ]
  results_io.write("compute_bound", results, sys.argv, args.results_dir,
                   load_at_start)


if __name__ == "__main__":
  main()
