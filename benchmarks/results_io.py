"""Benchmark figures as data: one JSON file per benchmark.

Every ``benchmarks/bench_<name>.py`` prints its table for a person and hands
the same figures to ``write``, which saves them as
``<results_dir>/<name>.json`` (default ``benchmarks/results``) in one format:

  {"benchmark": "tuning",
   "command": "python benchmarks/bench_tuning.py --algorithms=q",
   "date": "2025-01-31T12:00:00Z",                      (UTC, when written)
   "machine": {"cpu": ..., "cores": ..., "load_average_1m_at_start": ...,
               "load_average_1m_at_end": ..., "gpu": [names] or null,
               "tensorflow": version or null, "python": version},
   "rows": [{"what": ..., "value": ..., "unit": ...,
             "target": ... (optional), "note": ... (optional)}]}

``benchmarks/speed_table.py`` turns these files into the table of
docs/speed.md, so the figures there are never typed by hand. The file is
written atomically (a reader sees the old file or the new one, never half).
Standard library only, so a benchmark can import it before anything else.
"""
import datetime
import math
import numbers
import os
import platform
import shlex
import shutil
import subprocess
import sys

BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCHMARKS_DIR)
DEFAULT_DIR = os.path.join(BENCHMARKS_DIR, "results")
RESULTS_DIR_HELP = ("Folder for this benchmark's <name>.json (default: "
                    "benchmarks/results; a trial run can write elsewhere).")

FIELDS = ("benchmark", "command", "date", "machine", "rows")
MACHINE_FIELDS = ("cpu", "cores", "load_average_1m_at_start",
                  "load_average_1m_at_end", "gpu", "tensorflow", "python")
ROW_FIELDS = ("what", "value", "unit")
OPTIONAL_ROW_FIELDS = ("target", "note")

if REPO not in sys.path:
  sys.path.insert(0, REPO)
from data_pipeline import atomic_files  # noqa: E402


def add_argument(parser):
  """--results_dir for an argparse benchmark."""
  parser.add_argument("--results_dir", default=DEFAULT_DIR,
                      help=RESULTS_DIR_HELP)


def define_flag():
  """--results_dir for an absl benchmark; -> its FlagHolder."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  return flags.DEFINE_string("results_dir", DEFAULT_DIR, RESULTS_DIR_HELP)


def load_average_1m():
  """The 1-minute load average now, or None where the system has none. A
  benchmark reads it when it starts and ``write`` reads it again at the end,
  so the reader can tell whether the machine was quiet throughout."""
  try:
    return round(os.getloadavg()[0], 2)
  except (AttributeError, OSError):
    return None


def row(what, value, unit, target=None, note=None):
  """One figure: a short description, a finite number and its unit, with an
  optional target (e.g. "<= 600 s") and a short note."""
  out = {"what": what, "value": value, "unit": unit}
  if target is not None:
    out["target"] = target
  if note is not None:
    out["note"] = note
  return out


def command_line(argv):
  """argv -> "python benchmarks/bench_x.py --flag=..." (the script path
  relative to the checkout when inside it, arguments shell-quoted), a
  command a reader can paste to rerun the measurement."""
  script = argv[0]
  relative = os.path.relpath(os.path.abspath(script), REPO)
  if not relative.startswith(".."):
    script = relative.replace(os.sep, "/")
  return "python " + shlex.join([script] + list(argv[1:]))


def cpu_model():
  """The CPU's model name from /proc/cpuinfo (else what platform knows)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or None


def tensorflow_version():
  """TensorFlow's version if this process imported it, else None (the
  benchmark did not run TensorFlow)."""
  tf = sys.modules.get("tensorflow")
  return getattr(tf, "__version__", None) if tf else None


def gpu_names():
  """Names of the GPUs this process sees, or None when it sees none.

  TensorFlow's view when the benchmark imported it (that is what it ran
  on); otherwise nvidia-smi's list, if the tool is installed.
  """
  tf = sys.modules.get("tensorflow")
  if tf is not None and hasattr(tf, "config"):
    names = []
    for device in tf.config.list_physical_devices("GPU"):
      try:
        details = tf.config.experimental.get_device_details(device)
      except (ValueError, RuntimeError):  # a platform without details
        details = {}
      names.append(details.get("device_name") or device.name)
    return names or None
  if shutil.which("nvidia-smi") is None:
    return None
  try:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=20, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return [line.strip() for line in out.splitlines() if line.strip()] or None


def machine(load_at_start):
  """The machine's description, with the load average at start and now."""
  return {"cpu": cpu_model(), "cores": os.cpu_count(),
          "load_average_1m_at_start": load_at_start,
          "load_average_1m_at_end": load_average_1m(),
          "gpu": gpu_names(), "tensorflow": tensorflow_version(),
          "python": platform.python_version()}


def check_rows(rows):
  """Raises ValueError naming the first row that is not a figure: every row
  needs a non-empty "what" and "unit" and a finite number as "value" (JSON
  has no NaN), and only the documented fields."""
  if not rows:
    raise ValueError("a benchmark result needs at least one row")
  for i, r in enumerate(rows):
    unknown = set(r) - set(ROW_FIELDS + OPTIONAL_ROW_FIELDS)
    missing = [k for k in ROW_FIELDS if k not in r]
    if unknown or missing:
      raise ValueError(f"row {i} {r!r}: missing {missing}, unknown "
                       f"{sorted(unknown)}")
    value = r["value"]
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or
        not math.isfinite(value)):
      raise ValueError(f"row {i} ({r['what']!r}): value {value!r} is not a "
                       "finite number")
    for key in ("what", "unit") + OPTIONAL_ROW_FIELDS:
      if key in r and (not isinstance(r[key], str) or not r[key]):
        raise ValueError(f"row {i} ({r.get('what')!r}): {key} must be "
                         "non-empty text")


def _plain_number(value):
  """A figure as JSON holds it: an integer as int, anything else as a float
  to 6 significant digits (more is timing noise; the files stay readable).
  NumPy scalars become Python numbers."""
  if isinstance(value, numbers.Integral):
    return int(value)
  return float(f"{float(value):.6g}")


def write(name, rows, argv, results_dir=DEFAULT_DIR, load_at_start=None):
  """Saves a benchmark's figures as ``<results_dir>/<name>.json``.

  name: the script's name less ``bench_`` and ``.py`` (e.g. "tuning");
  rows: ``row(...)`` dicts; argv: sys.argv of the run (its command line);
  load_at_start: ``load_average_1m()`` taken when the benchmark started.
  -> the path written. Prints where it went, below the benchmark's table.
  """
  check_rows(rows)
  result = {
      "benchmark": name,
      "command": command_line(argv),
      "date": datetime.datetime.now(datetime.timezone.utc).strftime(
          "%Y-%m-%dT%H:%M:%SZ"),
      "machine": machine(load_at_start),
      "rows": [dict(r, value=_plain_number(r["value"])) for r in rows],
  }
  os.makedirs(results_dir, exist_ok=True)
  path = os.path.join(results_dir, f"{name}.json")
  atomic_files.write_json(path, result)
  print(f"figures written to {path}", flush=True)
  return path
