r"""Latency of the exported melody model (TF Serving SavedModel) on CPU.

    python benchmarks/bench_export.py            # random Q + Reward RNN (LSTM 100)
    python benchmarks/bench_export.py --tuned_model_dir=runs/tune_g

Exports the model to a temporary TF Serving layout, loads it back with
``tf.saved_model.load`` and times the ``serving_default`` signature (one call =
one whole melody, the loop inside the graph) for a 32-step melody at batch 1
and batch 1024: median and minimum of repeated calls after warm-up. Issue 6's
targets: <= 10 ms at batch 1, <= 200 ms at batch 1024. For comparison it also
times the same loop built from the unfused Keras ``NoteRNN.step`` (the
pre-optimisation implementation); calls of the two are interleaved. The
machine's load average is printed: on a shared machine the wall-clock median
moves with it, while the process CPU time per call (all TF threads) moves less.
The figures also go to <--results_dir>/export.json (results_io.py;
docs/speed.md's table).
"""
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data_pipeline import keras_setup  # noqa: E402,F401  (Keras 2 before tf.keras)
from absl import flags  # noqa: E402
from data_pipeline import console  # noqa: E402
import results_io  # noqa: E402  (benchmarks/)
import tensorflow as tf  # noqa: E402

from export import melody_generator  # noqa: E402
from export import exporter  # noqa: E402
from rl_tuner_tf import algorithms  # noqa: E402
from rl_tuner_tf import melody_policy  # noqa: E402
from rl_tuner_tf.note_rnn import NoteRNN  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("tuned_model_dir", None, "A tuned model to export (default: "
                    "random LSTM-100 Q-network + Reward RNN, kind --kind).")
flags.DEFINE_enum("kind", "g", list(algorithms.names()),
                  "Algorithm of the random model (g has the most policy math).")
flags.DEFINE_list("batch_sizes", ["1", "1024"], "Batch sizes to time.")
flags.DEFINE_integer("num_steps", 32, "Melody length.")
flags.DEFINE_float("temperature", 1.0, "Sampling temperature (0 = greedy).")
flags.DEFINE_integer("warmup", 3, "Untimed calls first.")
flags.DEFINE_integer("repeats", 30, "Timed calls per batch size (a third of "
                     "them, at least 5, for batches above 64).")
flags.DEFINE_bool("baseline", True, "Also time the unfused NoteRNN.step loop.")
flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0: TF default).")
flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0: TF default).")
results_io.define_flag()

TARGETS_MS = {1: 10.0, 1024: 200.0}


def _unfused_generate(kind, q_network, reward_rnn):
  """The generation loop over Keras NoteRNN.step (no fusion, no stacking)."""
  @tf.function(input_signature=[
      tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([], tf.int32),
      tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int64)])
  def generate(primer, num_steps, temperature, seed):
    batch = tf.shape(primer)[0]
    state = (tuple(q_network.zero_state(batch)), tuple(reward_rnn.zero_state(batch)))

    def body(t, prev, state, tokens, log_ps):
      action_values, q_state = q_network.step(prev, state[0])
      reward_logits, r_state = reward_rnn.step(prev, state[1])
      logits = melody_policy.policy_logits(kind, action_values, reward_logits)
      noise = tf.random.stateless_uniform(
          tf.shape(logits), tf.stack([seed, tf.cast(t, tf.int64)]),
          minval=1e-30, maxval=1.0)
      token = tf.argmax(logits - temperature * tf.math.log(-tf.math.log(noise)),
                        -1, output_type=tf.int32)
      log_p = tf.gather(tf.nn.log_softmax(reward_logits), token, axis=1,
                        batch_dims=1)
      return (t + 1, token, (tuple(q_state), tuple(r_state)),
              tokens.write(t, token), log_ps.write(t, log_p))

    _, _, _, tokens, log_ps = tf.while_loop(
        lambda t, *_: t < num_steps, body,
        (0, primer[:, -1], state, tf.TensorArray(tf.int32, num_steps),
         tf.TensorArray(tf.float32, num_steps)))
    return {"tokens": tf.transpose(tokens.stack()),
            "log_p": tf.transpose(log_ps.stack())}
  return generate


def _time_calls(fns, batch_size):
  """Times each of ``fns`` on the same request, calls interleaved (so load
  changes on a shared machine hit all alike). -> per fn: (median wall ms, min
  wall ms, median process-CPU ms, calls)."""
  args = dict(primer=tf.fill([batch_size, 1], 14),
              num_steps=tf.constant(FLAGS.num_steps),
              temperature=tf.constant(FLAGS.temperature),
              seed=tf.constant(1, tf.int64))
  for fn in fns:
    for _ in range(FLAGS.warmup):
      fn(**args)["tokens"].numpy()
  repeats = FLAGS.repeats if batch_size <= 64 else max(5, FLAGS.repeats // 3)
  wall = [[] for _ in fns]
  cpu = [[] for _ in fns]
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      start, start_cpu = time.perf_counter(), time.process_time()
      fn(**args)["tokens"].numpy()
      wall[i].append((time.perf_counter() - start) * 1e3)
      cpu[i].append((time.process_time() - start_cpu) * 1e3)
  return [(statistics.median(w), min(w), statistics.median(c), repeats)
          for w, c in zip(wall, cpu)]


def latency_rows(name, batch_size, median, cpu, calls, exported):
  """One model's latency at one batch size as results_io rows: the median
  (against the export's target) and, for the export, the
  process CPU time per call."""
  target = TARGETS_MS.get(batch_size) if exported else None
  out = [results_io.row(f"{name}, batch {batch_size}: median latency",
                        median, "ms",
                        target=f"<= {target:g} ms" if target else None,
                        note=f"{calls} calls")]
  if exported:
    out.append(results_io.row(
        f"{name}, batch {batch_size}: median CPU time per call", cpu, "ms"))
  return out


def main(argv):
  del argv
  load_at_start = results_io.load_average_1m()
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
  if FLAGS.tuned_model_dir:
    kind, reward_rnn, q_network, _ = exporter.load_source(FLAGS.tuned_model_dir)
  else:
    tf.random.set_seed(0)
    kind, reward_rnn, q_network = FLAGS.kind, NoteRNN(), NoteRNN()
  generator = melody_generator.MelodyGenerator(kind, reward_rnn, q_network)
  with tempfile.TemporaryDirectory() as tmp:
    _, path = exporter.export_serving_model(generator, os.path.join(tmp, "m"))
    exported = tf.saved_model.load(path).signatures["serving_default"]
    rows = [("exported SavedModel", exported)]
    if FLAGS.baseline and q_network is not None:
      rows.append(("unfused NoteRNN.step", _unfused_generate(kind, q_network, reward_rnn)))
    print(f"\nExported melody model, kind {kind}, layer sizes "
          f"{list(reward_rnn.layer_sizes)}, {FLAGS.num_steps}-step melody, "
          f"temperature {FLAGS.temperature}, TF {tf.__version__}, "
          f"{os.cpu_count()} CPUs (intra/inter-op threads "
          f"{FLAGS.intra_op_threads or 'default'}/{FLAGS.inter_op_threads or 'default'}), "
          "load average before "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| model | batch | median ms | min ms | median CPU ms | calls | "
          "target ms | median meets |")
    print("|---|---|---|---|---|---|---|---|")
    medians = {}
    figures = []
    for batch_size in (int(b) for b in FLAGS.batch_sizes):
      results = _time_calls([fn for _, fn in rows], batch_size)
      for (name, _), (median, best, cpu, n) in zip(rows, results):
        medians[(name, batch_size)] = median
        figures += latency_rows(name, batch_size, median, cpu, n,
                                name == rows[0][0])
        target = TARGETS_MS.get(batch_size)
        verdict = "-" if target is None or name != rows[0][0] else (
            "yes" if median <= target else "NO")
        print(f"| {name} | {batch_size} | {median:.2f} | {best:.2f} | {cpu:.2f} | "
              f"{n} | {target if target else '-'} | {verdict} |")
    if len(rows) > 1:
      for batch_size in (int(b) for b in FLAGS.batch_sizes):
        ratio = medians[(rows[1][0], batch_size)] / medians[(rows[0][0], batch_size)]
        print(f"speed-up of the export over the unfused loop at batch "
              f"{batch_size}: {ratio:.2f}x")
        figures.append(results_io.row(
            f"speed-up of the export over the unfused loop, batch "
            f"{batch_size}", ratio, "ratio"))
    print(f"load average after {os.getloadavg()[0]:.2f}")
  results_io.write("export", figures, sys.argv, FLAGS.results_dir,
                   load_at_start)


if __name__ == "__main__":
  console.run(main)
