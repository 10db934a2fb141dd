"""Seeds and grids: the run list, its layout, one-by-one execution, and the
evaluation over seeds (mean +- 95 % CI, per-seed values, the c sweep)."""
import json
import os

from absl import flags
import numpy as np
import pytest

from rl_tuner_tf import grid
from rl_tuner_tf import melody_policy
from rl_tuner_tf import train
from rl_tuner_tf.evaluation import pipeline
from rl_tuner_tf.evaluation import report
from rl_tuner_tf.evaluation import seeds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_notes=400, num_compositions=40, replay_capacity=1000,
            exploration_period=400, figure2_melodies=10,
            figure2_every_notes=200)


def test_expand_layout_names_only_what_varies(tmp_path):
  out = str(tmp_path)
  single = grid.expand(["q", "g"], [0.5], [0.5], [0], out)
  assert [s.run_dir for s in single] == [os.path.join(out, "q"),
                                         os.path.join(out, "g")]
  specs = grid.expand(["q"], [0.5, 2.0], [0.5], [0, 1], out, flags=("--x=1",))
  assert [os.path.relpath(s.run_dir, out) for s in specs] == [
      "c0.5-seed0/q", "c0.5-seed1/q", "c2-seed0/q", "c2-seed1/q"]
  argv = specs[2].argv()
  assert "--c=2" in argv and "--seeds=0" in argv and "--x=1" in argv
  assert f"--output_dir={os.path.join(out, 'c2-seed0')}" in argv
  assert "--report=false" in argv
  assert grid.command(specs[0])[1:3] == ["-m", "rl_tuner_tf.train"]
  with pytest.raises(grid.GridError, match="--seeds: repeated"):
    grid.expand(["q"], [1.0], [0.5], [0, 0], out)


def test_a_study_extended_by_one_seed_keeps_the_seed_layout(tmp_path):
  out = str(tmp_path)
  for label in ("seed0", "seed1"):
    os.makedirs(os.path.join(out, label, "q"))
  os.makedirs(os.path.join(out, "evaluation"))  # not a label: ignored
  assert grid.labelled_dimensions(out) == {"seed"}
  assert [os.path.relpath(s.run_dir, out)
          for s in grid.expand(["q", "g"], [10.0], [0.5], [2], out)] == [
              "seed2/q", "seed2/g"]
  sweep = str(tmp_path / "sweep")
  for label in ("c0.5", "c1", "c2"):
    os.makedirs(os.path.join(sweep, label, "q"))
  assert [os.path.relpath(s.run_dir, sweep)
          for s in grid.expand(["q"], [10.0], [0.5], [0], sweep)] == ["c10/q"]
  # A point's own folder holds algorithms only: its runs stay plain.
  assert grid.labelled_dimensions(os.path.join(out, "seed0")) == set()
  assert grid.labelled_dimensions(str(tmp_path / "missing")) == set()


def test_interval_is_the_student_t_95_percent_interval():
  mean, half = seeds.interval([1.0, 2.0, 3.0, 4.0])
  assert mean == 2.5
  # t_{0.975, 3} = 3.18245; s = sqrt(5/3)
  assert half == pytest.approx(3.18245 * np.sqrt(5 / 3) / 2, rel=1e-4)
  assert seeds.interval([0.3]) == (0.3, None)
  assert seeds.interval([None, float("nan")]) == (None, None)


def test_group_and_seed():
  assert seeds.group_and_seed("rl_only_c2-seed3", {
      "kind": "rl_only", "run_settings": {"seed": 3}}) == ("rl_only_c2", 3)
  assert seeds.group_and_seed("q", {"kind": "q"}) == ("q", None)
  assert seeds.group_and_seed("psi_seed1", {"kind": "psi"})[0] == "psi"


def test_models_are_ordered_by_algorithm_then_grid_value():
  names = ["q_c10", "g_c0.5", "q_c0.5", "q_c2", "note_rnn", "zz",
           "ppo_c0.5-seed10", "ppo_c0.5-seed2", "rl_only", "q"]
  assert list(seeds.ordered(dict.fromkeys(names))) == [
      "note_rnn", "q", "q_c0.5", "q_c2", "q_c10", "g_c0.5", "rl_only",
      "ppo_c0.5-seed2", "ppo_c0.5-seed10", "zz"]


def test_grid_runs_one_by_one_and_evaluates_over_seeds(random_checkpoint,
                                                      tmp_path):
  out = str(tmp_path / "grid")
  flag_values = flags.FlagValues()
  train.define_flags(flag_values)
  flag_values(["train", f"--note_rnn_checkpoint={random_checkpoint}",
               "--report=false", f"--output_dir={out}", "--algorithm=q",
               "--c=0.5,2", "--seeds=0,1"] +
              [f"--{k}={v}" for k, v in TINY.items()])
  _, _, dims = train.resolve(flag_values)
  specs = train.grid_specs(dims, out, flag_values)
  train.main(["train"], flag_values)
  assert len(specs) == 4 and all(s.is_done() for s in specs)
  with open(os.path.join(out, "c2-seed1", "q", "config.json")) as f:
    config = json.load(f)
  assert (config["c"], config["seed"], config["preset"]) == (2.0, 1, "paper")

  # A spec run as its own command gives the same network as in-process.
  again = grid.RunSpec("q", 2.0, 0.5, 1, str(tmp_path / "again"),
                       specs[3].flags)
  env = dict(os.environ, PYTHONPATH=REPO)
  assert grid.run_subprocess(again, log=lambda _: None, env=env) == 0
  _, a, _, _ = melody_policy.load_tuned(os.path.join(specs[3].run_dir, "model"))
  _, b, _, _ = melody_policy.load_tuned(os.path.join(again.run_dir, "model"))
  for x, y in zip(a.get_weights(), b.get_weights()):
    np.testing.assert_array_equal(x, y)

  results, eval_dir, report_path = pipeline.run(pipeline.EvaluationConfig(
      note_rnn_checkpoint=random_checkpoint, run_dir=out, num_melodies=200,
      batch_size=200, num_samples=0, beyond_rules=False), log=lambda _: None)
  assert sorted(results) == ["note_rnn", "q_c0.5-seed0", "q_c0.5-seed1",
                             "q_c2-seed0", "q_c2-seed1"]
  assert results["q_c2-seed1"]["run_settings"]["c"] == 2.0
  with open(os.path.join(eval_dir, "table1.json")) as f:
    groups = json.load(f)
  assert set(groups) == {"note_rnn", "q_c0.5", "q_c2"}
  motif = groups["q_c2"]["stats"]["notes_in_motif"]
  per_seed = [results["q_c2-seed0"]["notes_in_motif"],
              results["q_c2-seed1"]["notes_in_motif"]]
  assert motif["per_seed"] == {"0": per_seed[0], "1": per_seed[1]}
  mean, half = seeds.interval(per_seed)
  assert motif["mean"] == pytest.approx(mean)
  assert motif["ci95"] == pytest.approx(half)
  assert groups["note_rnn"]["stats"]["notes_in_motif"]["ci95"] is None
  with open(os.path.join(eval_dir, "sweep_c.md")) as f:
    sweep = f.read()
  assert "### q" in sweep and "| 0.5 |" in sweep and "| 2 |" in sweep
  assert os.path.getsize(os.path.join(eval_dir, "sweep_c.png")) > 10000
  curves = report.figure2_curves(out)
  assert sorted(curves) == ["q_c0.5", "q_c2"]
  assert [len(c) for c in curves.values()] == [2, 2]
  with open(report_path) as f:
    page = f.read()
  assert "Table 1 over seeds" in page and "Statistics against c" in page
