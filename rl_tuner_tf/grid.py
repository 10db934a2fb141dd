"""A grid of tuning runs as a list of independent, resumable runs.

``python -m rl_tuner_tf.train --algorithm=q,psi --c=0.5,2 --seeds=0,1,2``
expands into one ``RunSpec`` per (algorithm, c, gamma, seed). Each spec is a
whole ``python -m rl_tuner_tf.train`` invocation of a single point (its
``argv``), writing ``<output_dir>/<algorithm>/`` and resuming from its own
checkpoint when rerun, so any runner can execute the list: this process one by
one (``run_in_process``), a subprocess per run (``run_subprocess``), or a
cluster scheduler that runs ``command(spec)`` on its workers.

Layout: a grid of one point keeps the plain ``<out>/<algorithm>/``; a larger
grid puts each point in ``<out>/<point label>/<algorithm>/``, the label naming
only the dimensions that vary (e.g. ``c2-seed3``). A dimension already in the
labels of ``<out>``'s folders is named too, so that a study is extended by
more commands into the same folder: ``--seeds=2`` after ``--seeds=0,1`` writes
``<out>/seed2/``, not ``<out>/<algorithm>/``.
"""
import dataclasses
import itertools
import os
import subprocess
import sys
from typing import (Any, Callable, Collection, Iterable, List, Mapping,
                    Optional, Sequence, Set, Tuple, Union)

TUNED_CONFIG = "tuned.json"  # melody_policy.TUNED_CONFIG (kept import-free)
DIMENSIONS = ("c", "gamma", "seed")


class GridError(ValueError):
  """A bad grid dimension; ``name`` is its flag."""

  def __init__(self, name, message):
    super().__init__(f"--{name}: {message}")
    self.name = name
    self.message = message


def format_value(value: Union[int, float]) -> str:
  """0.5 -> '0.5', 10.0 -> '10', 3 -> '3' (labels and flags)."""
  if isinstance(value, float) and value.is_integer():
    return str(int(value))
  return str(value)


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of the grid: one algorithm at one (c, gamma, seed) point.

  output_dir: the run's --output_dir (its results go to output_dir/algorithm).
  flags: the run's other train.py flags, as "--name=value" strings.
  """
  algorithm: str
  c: float
  gamma: float
  seed: int
  output_dir: str
  flags: Tuple[str, ...] = ()

  @property
  def run_dir(self) -> str:
    return os.path.join(self.output_dir, self.algorithm)

  @property
  def name(self) -> str:
    return (f"{self.algorithm}/c{format_value(self.c)}-gamma"
            f"{format_value(self.gamma)}-seed{self.seed}")

  def argv(self) -> List[str]:
    """Flags of ``python -m rl_tuner_tf.train`` for this run alone."""
    return [f"--algorithm={self.algorithm}", f"--c={format_value(self.c)}",
            f"--gamma={format_value(self.gamma)}", f"--seeds={self.seed}",
            f"--output_dir={self.output_dir}", "--report=false",
            *self.flags]

  def is_done(self) -> bool:
    return os.path.exists(os.path.join(self.run_dir, "model", TUNED_CONFIG))


def point_label(point: Mapping[str, Union[int, float]],
                varying: Collection[str]) -> str:
  """'c2-seed3' from {'c': 2.0, 'gamma': .5, 'seed': 3} and varying c, seed."""
  return "-".join(f"{d}{format_value(point[d])}" for d in DIMENSIONS
                  if d in varying)


def labelled_dimensions(output_dir: str) -> Set[str]:
  """Dimensions named by the point labels of output_dir's folders."""
  found = set()
  try:
    names = [n for n in os.listdir(output_dir)
             if os.path.isdir(os.path.join(output_dir, n))]
  except OSError:  # no such folder yet
    return found
  for name in names:
    parts = name.split("-")
    dims = [next((d for d in DIMENSIONS if part.startswith(d)
                  and _is_number(part[len(d):])), None) for part in parts]
    if None not in dims and dims == [d for d in DIMENSIONS if d in dims]:
      found.update(dims)
  return found


def _is_number(text):
  try:
    float(text)
  except ValueError:
    return False
  return True


def expand(algorithms: Sequence[str], cs: Iterable[float],
           gammas: Iterable[float], seeds: Iterable[int], output_dir: str,
           flags: Iterable[str] = ()) -> List[RunSpec]:
  """The grid as a list of RunSpecs, seed-major within each point so that a
  partly finished grid already has every algorithm of the first seeds."""
  values = {"c": list(cs), "gamma": list(gammas), "seed": list(seeds)}
  for name, vals in values.items():
    flag = "seeds" if name == "seed" else name
    if not vals:
      raise GridError(flag, "give at least one value")
    if len(set(vals)) != len(vals):
      raise GridError(flag, f"repeated value in {vals}")
  varying = {d for d in DIMENSIONS if len(values[d]) > 1}
  varying |= labelled_dimensions(output_dir)
  specs = []
  for c, gamma, seed in itertools.product(values["c"], values["gamma"],
                                          values["seed"]):
    point = {"c": float(c), "gamma": float(gamma), "seed": int(seed)}
    label = point_label(point, varying)
    point_dir = os.path.join(output_dir, label) if label else output_dir
    for algorithm in algorithms:
      specs.append(RunSpec(algorithm, point["c"], point["gamma"], point["seed"],
                           point_dir, tuple(flags)))
  return specs


def command(spec: RunSpec) -> List[str]:
  """The command line that runs ``spec`` (resuming it if it was started)."""
  return [sys.executable, "-m", "rl_tuner_tf.train"] + spec.argv()


def run_subprocess(spec: RunSpec, log: Callable[[str], Any] = print,
                   env: Optional[Mapping[str, str]] = None,
                   **popen_args: Any) -> int:
  """Runs ``spec`` in a child process; returns its exit code (negative: killed
  by that signal). ``popen_args`` (cwd, stdout, ...) go to subprocess.run."""
  log(f"[grid] {spec.name}: {' '.join(command(spec)[1:])}")
  return subprocess.run(command(spec), check=False, env=env,
                        **popen_args).returncode
