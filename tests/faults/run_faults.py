r"""The fault-injection suite as a script: prints fault / trials / survived / lost.

    python tests/faults/run_faults.py            # the quick part (as in pytest)
    python tests/faults/run_faults.py --full     # every trial (>= 20 kill -9s,
                                                 # 1,000 mutated MIDI files)
    python tests/faults/run_faults.py --only=kill,checkpoint --seed=1

Exit code 0 when every fault was survived.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rl_tuner_tf  # noqa: E402,F401  (Keras 2 before TensorFlow)
from data_pipeline import console  # noqa: E402

import fault_harness  # noqa: E402  pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--full", action="store_true",
                      help="every trial (default: the quick part)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the kill moments and MIDI mutations")
  parser.add_argument("--only", default="",
                      help="comma-separated substrings of fault names")
  parser.add_argument("--workdir", default=None,
                      help="where runs go (default: a new folder in /tmp)")
  console.add_verbose_argument(parser)
  args = parser.parse_args()
  workdir = args.workdir or tempfile.mkdtemp(prefix="rl_tuner_faults_",
                                             dir="/tmp")
  print(f"fault suite ({'full' if args.full else 'quick'}, seed {args.seed}) "
        f"in {workdir}", flush=True)
  faults = fault_harness.Faults(workdir, full=args.full, seed=args.seed,
                                log=lambda m: print(m, flush=True))
  wanted = [w for w in args.only.split(",") if w]
  trials = []
  start = time.time()
  for fault in faults.all_faults():
    if wanted and not any(w in fault.__name__ for w in wanted):
      continue
    t0 = time.time()
    try:
      results = fault()
    except Exception as e:  # pylint: disable=broad-except  (report, go on)
      results = [fault_harness.Trial(fault.__name__, False,
                                     f"harness error {type(e).__name__}: {e}")]
    for r in results:
      print(f"{'survived' if r.survived else 'LOST':>8}  {r.fault}"
            + (f"  [{r.detail}]" if r.detail else ""), flush=True)
    print(f"          ({fault.__name__}: {time.time() - t0:.0f}s)", flush=True)
    trials += results
  print()
  print(fault_harness.table(trials))
  print(f"\n{len(trials)} trials in {time.time() - start:.0f}s")
  return 0 if trials and all(t.survived for t in trials) else 1


if __name__ == "__main__":
  sys.exit(main())
