"""A grid of tuning runs on Ray: local (``--parallel_runs=N``) or a cluster
(``--ray_address=...``).

Each ``grid.RunSpec`` is one Ray task (one CPU) that runs the spec's own
``python -m rl_tuner_tf.train`` command in a child process (its own
TensorFlow), with the child's output appended to ``<run_dir>/train.log``.
A run killed by a signal (its exit code is negative), or whose Ray worker
died, is retried up to ``max_retries`` times; the rerun resumes from the run's
checkpoint, as the train command always does. A run that exits with a positive
code (bad settings, a non-finite loss) is not retried: it would fail again.
Runs already done (their tuned model exists) are skipped.

On a cluster every node needs this project installed (or checked out at the
same path: the driver's checkout is put on the workers' PYTHONPATH) and the
grid's paths (--output_dir, --note_rnn_checkpoint) on a shared file system.

Needs Ray: ``pip install -e ".[cluster]"``.
"""
import ctypes
import os
import shutil
import signal
import socket
import tempfile
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

try:
  import ray  # pylint: disable=g-import-not-at-top
except ImportError as e:
  raise ImportError(
      "a grid on Ray (--parallel_runs > 1 or --ray_address) needs Ray: "
      'pip install -e ".[cluster]"') from e

from rl_tuner_tf import grid

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_NAME = "train.log"  # in each run's directory
WORKER_DIED = -1000  # the exit code of a run whose worker or node was lost


class ClusterAuthenticationError(RuntimeError):
  """The cluster at --ray_address rejected the driver's token (or its lack)."""


def _refused_token(error):
  """Whether ``error`` (or one it was raised from) is Ray's authentication
  error. Ray 2.60's ray.init keeps that error only as text inside the
  RuntimeError its ConnectionError is raised from, so its name is looked
  for in the messages too."""
  auth_type = getattr(ray.exceptions, "AuthenticationError", None)
  seen = set()
  while error is not None and id(error) not in seen:
    if auth_type is not None and isinstance(error, auth_type):
      return True
    if "AuthenticationError" in str(error) or "InvalidAuthToken" in str(error):
      return True
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return False


class RunKilled(RuntimeError):
  """The run's train process was killed by a signal (retried by Ray)."""

  def __init__(self, name, code):
    super().__init__(f"{name}: killed by signal {-code}")
    self.name = name
    self.code = code

  def __reduce__(self):
    return RunKilled, (self.name, self.code)


def log_path(spec: grid.RunSpec, cwd: Optional[str] = None) -> str:
  return os.path.join(cwd or os.getcwd(), spec.run_dir, LOG_NAME)


def _die_with_parent():
  """In the child: SIGKILL it when its Ray worker dies (Linux), so that a
  retried run never shares its directory with an orphan of the last try."""
  try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


def _run(spec, cwd):
  """The Ray task: runs ``spec``; returns 0 or its positive exit code."""
  if cwd and not os.path.isdir(cwd):
    cwd = None  # another machine: the paths must be absolute and shared
  path = log_path(spec, cwd)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a", encoding="utf-8") as out:
    out.write(f"[grid] {spec.name}: started on {socket.gethostname()} at "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    out.flush()
    code = grid.run_subprocess(
        spec, log=lambda m: print(m, flush=True), cwd=cwd, stdout=out,
        stderr=out, preexec_fn=_die_with_parent)
    out.write(f"[grid] {spec.name}: exit code {code}\n")
  if code < 0:
    raise RunKilled(spec.name, code)
  return code


def _init(parallel_runs, ray_address):
  """Starts local Ray or connects to ``ray_address``; -> temp dir or None."""
  runtime_env = {"env_vars": {
      "TF_USE_LEGACY_KERAS": "1",
      "PYTHONPATH": os.pathsep.join(
          p for p in [CHECKOUT, os.environ.get("PYTHONPATH")] if p)}}
  if ray_address:
    try:
      ray.init(address=ray_address, runtime_env=runtime_env,
               log_to_driver=False)
    except Exception as e:  # pylint: disable=broad-except
      if _refused_token(e):
        raise ClusterAuthenticationError(
            f"the Ray cluster at {ray_address} refused this driver's "
            "authentication token. Clusters started with `ray start` use "
            "token authentication by default since Ray 2.59: on a node of "
            "the cluster use --ray_address=auto, or set RAY_AUTH_MODE=token "
            "with the cluster's token in ~/.ray/auth_token (or "
            "RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH) before the command.") from e
      raise
    return None
  temp_dir = tempfile.mkdtemp(prefix="rl_tuner_ray_")
  ray.init(num_cpus=parallel_runs, include_dashboard=False,
           log_to_driver=False, runtime_env=runtime_env, _temp_dir=temp_dir)
  return temp_dir


def run_on_ray(specs: Sequence[grid.RunSpec], parallel_runs: int = 2,
               ray_address: Optional[str] = None, max_retries: int = 2,
               log: Callable[[str], Any] = print
               ) -> List[Tuple[grid.RunSpec, int]]:
  """Runs the grid's ``specs`` as Ray tasks; -> [(spec, exit_code)] in spec
  order (0: done; WORKER_DIED: its worker was lost on every try).

  Without ``ray_address``, starts local Ray with ``parallel_runs`` CPUs (one
  run per CPU at once) and shuts it down at the end; with it, connects to that
  cluster (``auto`` on a node of the cluster, ``ray://HEAD:10001`` from
  elsewhere) and runs as many at once as the cluster has CPUs.
  """
  if parallel_runs < 1:
    raise ValueError(f"parallel_runs must be >= 1 (got {parallel_runs})")
  codes = {}
  todo = []
  for i, spec in enumerate(specs):
    if spec.is_done():
      log(f"[grid] {spec.name}: already done")
      codes[i] = 0
    else:
      todo.append(i)
  if not todo:
    return [(spec, codes[i]) for i, spec in enumerate(specs)]

  started_ray = not ray.is_initialized()
  temp_dir = _init(parallel_runs, ray_address) if started_ray else None
  try:
    where = (f"the Ray cluster at {ray_address}" if ray_address else
             f"local Ray ({parallel_runs} at once)")
    log(f"[grid] {len(todo)} run(s) on {where}; each run's output goes to "
        f"<run_dir>/{LOG_NAME}")
    task = ray.remote(_run).options(
        num_cpus=1, max_retries=max_retries, retry_exceptions=[RunKilled])
    cwd = os.getcwd()
    pending = {task.remote(specs[i], cwd): i for i in todo}
    started = time.time()
    while pending:
      done, _ = ray.wait(list(pending), num_returns=1)
      i = pending.pop(done[0])
      name = specs[i].name
      try:
        codes[i] = ray.get(done[0])
        log(f"[grid] {name}: " + ("done" if codes[i] == 0 else
                                   f"FAILED with exit code {codes[i]}")
            + f" ({time.time() - started:.0f} s since the start; "
            f"{len(pending)} left)")
      except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        codes[i] = cause.code if isinstance(cause, RunKilled) else 1
        log(f"[grid] {name}: FAILED after {max_retries + 1} tries: {cause or e}")
      except ray.exceptions.RayError as e:  # worker or node lost every time
        codes[i] = WORKER_DIED
        log(f"[grid] {name}: FAILED, its worker was lost "
            f"{max_retries + 1} times: {type(e).__name__}")
  finally:
    if started_ray:
      ray.shutdown()
      if temp_dir:
        shutil.rmtree(temp_dir, ignore_errors=True)
  return [(spec, codes[i]) for i, spec in enumerate(specs)]
