"""listening_study.planted_taste: its arguments fail fast, its fresh test
pairs carry the planted taste, and its summary counts only what held.
(Its stages are the project's commands, each tested in its own file; the
whole check at toy sizes takes about two minutes, too long for the suite.)"""
import json
import os

import numpy as np
import pytest

from listening_study import planted_taste
from rl_tuner_tf import preferences


def _args(tmp_path, *extra):
  run = tmp_path / "run"
  run.mkdir(exist_ok=True)
  return planted_taste.parse_args([
      f"--output_dir={tmp_path / 'out'}", f"--pool_run={run}",
      f"--q_run={run}", "--browser_participants=0", *extra])


@pytest.mark.parametrize("argv, flag", [
    (["--pool_run=/no/such/run", "--q_run=."], "--pool_run"),
    (["--pool_run=.", "--q_run=/no/such/run"], "--q_run"),
    (["--pool_run=.", "--q_run=.", "--participants=1"], "--participants"),
    (["--pool_run=.", "--q_run=.", "--utility=loudness"], "--utility"),
    (["--pool_run=.", "--q_run=.", "--rlhf_notes=500000"], "--rlhf_notes"),
    (["--pool_run=.", "--q_run=.", "--dpo_notes=1000"], "--dpo_notes"),
])
def test_bad_arguments_fail_fast_naming_the_flag(argv, flag, capsys):
  with pytest.raises(SystemExit):
    planted_taste.parse_args(argv)
  assert flag in capsys.readouterr().err


def test_fresh_test_pairs_are_rated_by_the_planted_taste(tmp_path):
  check = planted_taste.Check(_args(tmp_path, "--test_pairs=3000",
                                    "--noise=0.5"))
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 38, size=(200, 16))
  manifest = {"stimuli": {f"{i:016x}": {"tokens": t.tolist()}
                          for i, t in enumerate(tokens)}}
  pairs = check.test_pairs(manifest)
  assert pairs.num_pairs == 3000
  assert not np.any(np.all(pairs.tokens_a == pairs.tokens_b, axis=1))
  d = (preferences.register_utility(pairs.tokens_a) -
       preferences.register_utility(pairs.tokens_b))
  decided = pairs.rating != 4
  agree = np.mean((pairs.rating[decided] < 4) == (d[decided] > 0))
  best = preferences.best_possible_accuracy(
      pairs.tokens_a, pairs.tokens_b, preferences.register_utility, 0.5, 0.5)
  assert agree == pytest.approx(best, abs=0.03)
  again = check.test_pairs(manifest)  # the same pairs every seed, every run
  assert np.array_equal(again.rating, pairs.rating)


def _seed(seed, planted_wins, kw_p):
  """One seed's results as Check.seed writes them (synthetic numbers)."""
  models = {m: dict(feature=float(f), mean_log_p=float(lp), mean_r_mt=0.0,
                    r_rm=0.0, **{k: 0.5 for k in planted_taste.BEYOND_RULES})
            for m, f, lp in (("note_rnn", 7, -1.2), ("q_paper", 4, -2.2),
                             ("rloo_planted", 14 + seed, -1.4),
                             ("dpo_planted", 9, -1.2),
                             ("rloo_control", 7, -1.3))}

  def round2(p_win, p_kw):
    pairs = [dict(a=a, b=b, p_holm=p_win if a in planted_taste.PREFERRED
                  else 0.9)
             for a in planted_taste.PREFERRED + ("rloo_control",)
             for b in planted_taste.BASELINES]
    score = {m: (1.0 if m in planted_taste.PREFERRED else -0.5)
             for m in planted_taste.ROUND2_MODELS}
    return dict(kruskal_wallis=dict(H=1.0, df=4, p=p_kw), mean_score=score,
                pairwise=pairs, ratings_used=400, participants_implausible=0)
  rm = dict(ratings=2000, held_out_accuracy=0.8, best_possible=0.84,
            fresh_accuracy=0.82)
  return dict(seed=seed, round1_planted=rm,
              round1_control=dict(rm, held_out_accuracy=0.5,
                                  best_possible=0.5, fresh_accuracy=0.5),
              curve=[dict(ratings=250, accuracy=0.7),
                     dict(ratings=2000, accuracy=0.82)],
              models=models,
              round2=dict(planted=round2(0.01 if planted_wins else 0.2, kw_p),
                          control=round2(0.6, 0.5)))


def test_summary_counts_the_seeds_where_a_check_held():
  seeds = [_seed(s, planted_wins=s < 4, kw_p=0.001) for s in range(5)]
  summary = planted_taste.summarise(seeds)
  wins = summary["round2_significant_seeds"]
  assert wins["planted"]["rloo_planted>q_paper"] == 4
  assert wins["planted"]["rloo_control>note_rnn"] == 0
  assert wins["planted"]["kruskal_wallis"] == 5
  assert wins["control"]["kruskal_wallis"] == 0
  shift = summary["feature_shift"]["rloo_planted"]
  assert shift["mean"] == pytest.approx(9.0)  # 14..18 minus 7
  assert shift["per_seed"] == [7.0, 8.0, 9.0, 10.0, 11.0]
  # t(4) 97.5 % = 2.776, sd of 7..11 = 1.581: half-width 1.963
  assert shift["ci95"] == pytest.approx(2.776 * 1.5811 / 5 ** 0.5, rel=1e-3)
  assert summary["log_p_minus_q"]["note_rnn"]["mean"] == pytest.approx(1.0)
  text = planted_taste.markdown(dict(
      settings=dict(utility="register", scale=0.5, noise=1.0,
                    test_pairs=5000),
      test_pairs_best_possible=0.84, seeds=seeds, summary=summary))
  assert "| rloo_planted | 16.00 ± 1.96 | 9.00 ± 1.96 |" in text
  assert "| planted | 4/5 | 4/5 | 4/5 | 4/5 | 0/5 | 0/5 | 5/5 |" in text


def test_results_are_written_by_a_finished_check(tmp_path):
  """A check whose seeds are done writes results.json, results.md and the
  learning curve without running anything again."""
  args = _args(tmp_path, "--seeds=0,1", "--test_pairs=50")
  out = tmp_path / "out"
  stimuli_dir = out / "pool" / "stimuli"
  (stimuli_dir / "audio").mkdir(parents=True)
  rng = np.random.default_rng(1)
  manifest = {"design": "preferences", "render": "on_demand",
              "stimuli": {f"{i:016x}": {"tokens": rng.integers(
                  2, 38, 16).tolist(), "model": "q", "seconds": 2.0}
                          for i in range(30)}}
  (stimuli_dir / "manifest.json").write_text(json.dumps(manifest))
  for s in (0, 1):
    (out / f"seed{s}").mkdir()
    (out / f"seed{s}" / "seed_results.json").write_text(
        json.dumps(_seed(s, True, 0.01)))
  results = planted_taste.Check(args).run()
  assert [s["seed"] for s in results["seeds"]] == [0, 1]
  for name in ("results.json", "results.md", "learning_curve.png"):
    assert os.path.getsize(out / name) > 0
  assert not os.path.exists(out / ".lock")
