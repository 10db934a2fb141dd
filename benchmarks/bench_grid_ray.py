r"""Wall time of a small grid (4 tiny q runs: c 0.5, 2 x seeds 0, 1) one by one
(each run a child train process, grid.run_subprocess) against local Ray with
--parallel_runs (rl_tuner_tf/grid_ray.py), and whether the networks agree.

    python benchmarks/bench_grid_ray.py [--parallel_runs=2] [--num_notes=400]

Needs Ray (pip install -e ".[cluster]"). Each run imports TensorFlow in its
own process, so with tiny runs the start-up dominates; on N free cores the
ratio approaches N. The figures also go to <--results_dir>/grid_ray.json
(results_io.py; docs/speed.md's table).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipeline import keras_setup  # noqa: E402,F401
from data_pipeline import console  # noqa: E402
import results_io  # noqa: E402  (benchmarks/)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from rl_tuner_tf import grid  # noqa: E402
from rl_tuner_tf import grid_ray  # noqa: E402
from rl_tuner_tf import melody_policy  # noqa: E402
from rl_tuner_tf import note_rnn  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--parallel_runs", type=int, default=2)
  parser.add_argument("--num_notes", type=int, default=400)
  console.add_verbose_argument(parser)
  results_io.add_argument(parser)
  args = parser.parse_args()
  load_at_start = results_io.load_average_1m()
  work = tempfile.mkdtemp(prefix="bench_grid_ray_")
  tf.random.set_seed(1)
  checkpoint = os.path.join(work, "note_rnn")
  note_rnn.save(note_rnn.NoteRNN(), checkpoint)
  flags = [f"--num_notes={args.num_notes}", "--num_compositions=40",
           "--replay_capacity=1000", f"--exploration_period={args.num_notes}",
           "--figure2_melodies=10", f"--figure2_every_notes={args.num_notes // 2}",
           f"--note_rnn_checkpoint={checkpoint}"]

  def specs(name):
    return grid.expand(["q"], [0.5, 2.0], [0.5], [0, 1],
                       os.path.join(work, name), flags=flags)

  env = dict(os.environ, PYTHONPATH=grid_ray.CHECKOUT, TF_USE_LEGACY_KERAS="1")
  serial = specs("one_by_one")
  started = time.time()
  for spec in serial:
    assert grid.run_subprocess(spec, log=lambda _: None, env=env,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) == 0
  one_by_one = time.time() - started
  parallel = specs("ray")
  started = time.time()
  results = grid_ray.run_on_ray(parallel, parallel_runs=args.parallel_runs,
                                log=lambda _: None)
  on_ray = time.time() - started
  assert [c for _, c in results] == [0] * len(parallel)
  same = all(
      all(np.array_equal(x, y) for x, y in zip(
          melody_policy.load_tuned(os.path.join(a.run_dir, "model"))[1].get_weights(),
          melody_policy.load_tuned(os.path.join(b.run_dir, "model"))[1].get_weights()))
      for a, b in zip(serial, parallel))
  print(f"{len(serial)} runs of {args.num_notes:,} notes, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}")
  print("| runner | wall time |")
  print("|---|---|")
  print(f"| one by one (grid.run_subprocess) | {one_by_one:.1f} s |")
  print(f"| local Ray, parallel_runs={args.parallel_runs} (incl. Ray start) "
        f"| {on_ray:.1f} s |")
  print(f"one by one / Ray: {one_by_one / on_ray:.2f}x; networks bit-identical: "
        f"{same}; output in {work}")
  runs = f"{len(serial)} runs of {args.num_notes:,} notes"
  results_io.write("grid_ray", [
      results_io.row("one by one (grid.run_subprocess)", one_by_one, "s",
                     note=runs),
      results_io.row(f"local Ray, parallel_runs={args.parallel_runs} "
                     "(incl. Ray start)", on_ray, "s", note=runs),
      results_io.row("one by one / Ray", one_by_one / on_ray, "ratio",
                     note=f"networks bit-identical: {same}"),
  ], sys.argv, args.results_dir, load_at_start)


if __name__ == "__main__":
  main()
