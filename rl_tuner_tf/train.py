r"""Tunes the Note RNN with RL: ``python -m rl_tuner_tf.train``.

    python -m rl_tuner_tf.train --algorithm=q,psi,g,rl_only \
        --output_dir=runs/paper

For each algorithm, in ``<output_dir>/<algorithm>/``: config.json,
checkpoints/, tensorboard/, figure2.csv and model/ (rl_tuner_tf/tuning_job.py
says what each holds); rerunning the same command resumes, also after
kill -9. When every run is done, the evaluation and its report.

Settings are values (``tuning.TuningConfig``, ``tuning_job.RunConfig``):
every flag below that names a setting is generated from its field. They are
resolved in this order: the preset (``--preset``, default ``paper``: the
paper's text; ``magenta``: what the original code ran, presets/*.json), then
``--config=FILE`` (a preset file or any run's config.json: reruns it), then
the flags given. --minibatches_per_update=8 is an opt-in speed setting that
approximates the schedule with 8x fewer, 8x larger updates (tuning.py).

Seeds and grids: ``--seeds=0,1,2,3,4`` runs every algorithm once per seed;
``--c`` and ``--gamma`` take lists too. A grid is a list of independent,
resumable runs (grid.py), in <output_dir>/<point>/<algorithm>/ (e.g.
<output_dir>/c2-seed3/q/), run one by one here, or ``--parallel_runs=N`` at
once on local Ray, or on a Ray cluster with ``--ray_address``.

Rewards from the command line: ``--reward_weights=key=2,tonic=0`` weighs
r_MT's rules; ``--reward_modules=my_rules`` (or my_rules.py) imports modules
that register rules of their own (rewards.register_reward). Both are recorded
in config.json, and a resume needs the modules again.

This module is the command line only: it parses flags, builds the values and
calls the library (tuning_job.tune, evaluation.pipeline.run).
"""
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from absl import app
from absl import flags

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from data_pipeline import console
from data_pipeline import run_lock
from rl_tuner_tf import algorithms
from rl_tuner_tf import checkpointing
from rl_tuner_tf import configuration
from rl_tuner_tf import grid
from rl_tuner_tf import note_rnn
from rl_tuner_tf import presets
from rl_tuner_tf import runner
from rl_tuner_tf import tuning
from rl_tuner_tf import tuning_job

ConfigError = configuration.ConfigError
FLAGS = flags.FLAGS
# Grid dimensions: list flags, each run gets one value of each.
_GRID = ("algorithm", "c", "gamma", "seed")
# Keys of a config.json that are records, not settings.
_RECORDS = ("preset", "primer")


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The command's flags: one per setting, from the dataclass fields, and
  the command's own (grid, preset, config, output, report)."""
  configuration.define_flags(tuning.TuningConfig, flag_values,
                             skip=("algorithm", "c", "gamma"))
  configuration.define_flags(tuning_job.RunConfig, flag_values)
  flags.DEFINE_list("algorithm", None,
                    "Algorithms to tune, comma-separated: q, psi, g, rl_only "
                    "(off-policy, the paper's), ppo, rloo (on-policy) "
                    "(default: the --config file's, else q).",
                    flag_values=flag_values)
  flags.DEFINE_list("c", None,
                    "Eq. 3's c: r = log p(a|s) + r_MT/c (preset paper 0.5; "
                    "the original's reward_scaler 0.1 is c = 10). A list runs"
                    " a grid, e.g. 0.5,1,2,10.", flag_values=flag_values)
  flags.DEFINE_list("gamma", None,
                    "Discount (paper and original script 0.5; the original "
                    "library default 0.95). A list runs a grid.",
                    flag_values=flag_values)
  flags.DEFINE_list("seeds", None,
                    "Seeds: every algorithm runs once per seed, e.g. "
                    "0,1,2,3,4 (instead of --seed).", flag_values=flag_values)
  flags.DEFINE_enum("preset", None, list(presets.names()),
                    "paper (the default): the paper's text; magenta: what "
                    "the original code ran (rl_tuner_tf/presets/). --config "
                    "and flags given override it.", flag_values=flag_values)
  flags.DEFINE_string("config", None,
                      "A JSON file of settings: a preset file or a run's "
                      "config.json (reruns that run); flags given override "
                      "it.", flag_values=flag_values)
  flags.DEFINE_integer("parallel_runs", 1,
                       "Runs of a grid at once (> 1: on local Ray; needs pip "
                       "install -e '.[cluster]').", flag_values=flag_values)
  flags.DEFINE_string("ray_address", None,
                      "Run the grid on this Ray cluster (auto on a node of "
                      "it, or ray://head:10001).", flag_values=flag_values)
  flags.DEFINE_string("output_dir", None,
                      "Run directory (default runs/tune_<algorithms>_<preset>"
                      "_seed<seed>; an existing run there is resumed).",
                      flag_values=flag_values)
  flags.DEFINE_integer("report_melodies", 100000,
                       "Melodies per model for the final evaluation report "
                       "(the paper's 100,000).", flag_values=flag_values)
  flags.DEFINE_bool("report", True,
                    "Evaluate and write the report when all runs are done.",
                    flag_values=flag_values)


def _given(flag_values, name):
  return not flag_values[name].using_default_value


def resolve(flag_values: flags.FlagValues = FLAGS
            ) -> Tuple[str, Dict[str, Any], Dict[str, List[Any]]]:
  """(preset, {setting: value}, {grid dimension: values}) from the flags:
  the preset, then --config's file, then the flags given."""
  from_file = {}
  if flag_values.config:
    from_file = configuration.read_settings(flag_values.config)
  preset = (flag_values.preset or from_file.get("preset")
            or presets.DEFAULT_PRESET)
  try:
    settings = presets.settings(preset)
  except ValueError as e:
    raise ConfigError("preset", str(e)) from e
  known = set(tuning.TuningConfig.setting_names() +
              tuning_job.RunConfig.setting_names())
  unknown = sorted(set(from_file) - known - set(_RECORDS))
  if unknown:
    raise ConfigError("config", f"{flag_values.config!r} holds unknown "
                      f"settings: {', '.join(unknown)}")
  settings.update({k: v for k, v in from_file.items() if k in known})
  settings.update(configuration.given_flags(
      tuning.TuningConfig, flag_values, skip=("algorithm", "c", "gamma")))
  settings.update(configuration.given_flags(tuning_job.RunConfig,
                                            flag_values))
  dims = {"algorithm": [settings["algorithm"]], "c": [settings["c"]],
          "gamma": [settings["gamma"]], "seed": [settings["seed"]]}
  if flag_values.algorithm is not None:
    dims["algorithm"] = [a.strip() for a in flag_values.algorithm
                         if a.strip()]
    bad = [a for a in dims["algorithm"] if a not in algorithms.names()]
    if not dims["algorithm"] or bad:
      raise ConfigError("algorithm", "must be a comma-separated list of "
                        f"{', '.join(algorithms.names())} (got "
                        f"{','.join(flag_values.algorithm)!r})")
  for name in ("c", "gamma"):
    if flag_values[name].value is not None:
      dims[name] = _numbers(flag_values, name, float)
  if flag_values.seeds is not None:
    if _given(flag_values, "seed"):
      raise ConfigError("seeds", "give --seed or --seeds, not both")
    dims["seed"] = _numbers(flag_values, "seeds", int)
  return preset, settings, dims


def _numbers(flag_values, name, parse):
  value = flag_values[name].value
  items = value if isinstance(value, (list, tuple)) else [value]
  try:
    parsed = [parse(str(v).strip()) for v in items if str(v).strip()]
  except ValueError as e:
    raise ConfigError(name, f"not a list of numbers: {e}") from e
  if not parsed:
    raise ConfigError(name, "give at least one value")
  return parsed


def _split(settings):
  """(TuningConfig settings, RunConfig) of resolved settings."""
  names = set(tuning.TuningConfig.setting_names())
  run = tuning_job.RunConfig.from_settings(
      {k: v for k, v in settings.items() if k not in names})
  return {k: v for k, v in settings.items() if k in names}, run


def grid_specs(dims: Dict[str, List[Any]], output_dir: str,
               flag_values: flags.FlagValues = FLAGS) -> List[grid.RunSpec]:
  """The runs of this command (one per algorithm and grid point); each
  carries the flags that rerun it alone (Ray runs it as a child process)."""
  passed_on = [flag_values[n].serialize()
               for n in (tuning.TuningConfig.setting_names() +
                         tuning_job.RunConfig.setting_names() +
                         ("preset", "config"))
               if n not in _GRID and n in flag_values
               and _given(flag_values, n)]
  try:
    return grid.expand(dims["algorithm"], dims["c"], dims["gamma"],
                       dims["seed"], output_dir, flags=passed_on)
  except grid.GridError as e:
    raise ConfigError(e.name, e.message) from e


def default_output_dir(algorithms: List[str], preset: str,
                       seeds: List[int]) -> str:
  label = (f"seed{seeds[0]}" if len(seeds) == 1
           else f"seeds{'-'.join(str(s) for s in seeds)}")
  return os.path.join("runs", f"tune_{'_'.join(algorithms)}_{preset}_{label}")


def _run_config_of(tuning_settings, spec):
  return tuning.TuningConfig.from_settings(dict(
      tuning_settings, algorithm=spec.algorithm, c=spec.c, gamma=spec.gamma,
      seed=spec.seed))


def evaluate_and_report(output_dir: str, run: tuning_job.RunConfig,
                        num_melodies: int, seed: int,
                        log: tuning_job.Log = print) -> Optional[str]:
  """Table 1 of the Note RNN and every tuned model, samples, the comparison
  with real melodies, and <output_dir>/report.html (evaluation.pipeline);
  a failure is reported and leaves the tuned models as they are."""
  from rl_tuner_tf.evaluation import pipeline  # pylint: disable=g-import-not-at-top
  config = pipeline.EvaluationConfig(
      run_dir=output_dir, note_rnn_checkpoint=run.note_rnn_checkpoint,
      num_melodies=num_melodies, seed=seed)
  log(f"Evaluating {output_dir} ({num_melodies:,} melodies per model)")
  try:
    _, _, report_path = pipeline.run(config, log=log)
  except (ConfigError, run_lock.RunLockedError, OSError) as e:
    log(f"WARNING: evaluation failed ({e}); the tuned models are saved, "
        f"rerun: python -m rl_tuner_tf.evaluate --run_dir={output_dir}")
    return None
  log(f"Report: {report_path}")
  return report_path


def main(argv: List[str], flag_values: flags.FlagValues = FLAGS) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    preset, settings, dims = resolve(flag_values)
    tuning_settings, run = _split(settings)
    output_dir = flag_values.output_dir or default_output_dir(
        dims["algorithm"], preset, dims["seed"])
    specs = grid_specs(dims, output_dir, flag_values)
    for spec in specs:  # every setting, before any work starts
      tuning_job.periods(_run_config_of(tuning_settings, spec), run)
    if flag_values.parallel_runs < 1:
      raise ConfigError("parallel_runs",
                        f"must be >= 1 (got {flag_values.parallel_runs})")
    tuning_job.import_reward_modules(tuning_settings.get("reward_modules", ()),
                                     tuning_settings.get("reward_weights", {}))
    primer = tuning_job.load_primer(run.primer)
    source = note_rnn.load(run.note_rnn_checkpoint)
  except ConfigError as e:
    raise app.UsageError(str(e)) from e
  except (FileNotFoundError, note_rnn.CheckpointMismatchError) as e:
    raise app.UsageError(f"--note_rnn_checkpoint: {e}") from e
  os.makedirs(output_dir, exist_ok=True)
  if len(specs) > 1:
    print(f"Grid of {len(specs)} runs in {output_dir} (preset {preset}): "
          + ", ".join(s.name for s in specs))
  started = time.time()
  if flag_values.parallel_runs > 1 or flag_values.ray_address:
    run_grid_on_ray(specs, flag_values)
  else:
    try:
      for spec in specs:
        tuning_job.tune(_run_config_of(tuning_settings, spec), run,
                        spec.run_dir, source_model=source, primer=primer,
                        preset=preset,
                        tag=spec.name if len(specs) > 1 else None)
    except ConfigError as e:
      raise app.UsageError(str(e)) from e
    except (tuning_job.NonFiniteLossError,
            checkpointing.NoReadableCheckpointError,
            run_lock.RunLockedError, OSError, tf.errors.OpError) as e:
      print(f"ERROR: {e}", file=sys.stderr)
      sys.exit(2)
  print(f"Tuning done: {len(specs)} run(s) in "
        f"{runner.format_seconds(time.time() - started)}")
  if flag_values.report:
    evaluate_and_report(output_dir, run, flag_values.report_melodies,
                        dims["seed"][0])


def run_grid_on_ray(specs: List[grid.RunSpec],
                    flag_values: flags.FlagValues = FLAGS) -> None:
  """Runs the grid's specs on local Ray (--parallel_runs) or a cluster
  (--ray_address); exits non-zero naming the runs that failed."""
  try:
    from rl_tuner_tf import grid_ray  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise app.UsageError(f"--parallel_runs / --ray_address: {e}") from e
  try:
    results = grid_ray.run_on_ray(specs,
                                  parallel_runs=flag_values.parallel_runs,
                                  ray_address=flag_values.ray_address)
  except grid_ray.ClusterAuthenticationError as e:
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(2)
  failed = [spec.name for spec, code in results if code != 0]
  if failed:
    print(f"ERROR: {len(failed)} run(s) failed: {', '.join(failed)}; rerun "
          "the same command to resume them.", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  console.run(main)
