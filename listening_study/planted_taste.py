r"""The check that learning from listeners works, before anyone is recruited:
simulated listeners with a planted taste take the real study, and what is
learnt from their ratings must find that taste.

  python -m listening_study.planted_taste --output_dir=runs/planted \
      --pool_run=runs/paper --q_run=runs/paper --seeds=0,1,2,3,4

Per seed s, with the project's own commands and server:
  1. round 1, a preference study (--design=preferences, a pool of
     --per_model melodies of each --pool_models model, rendered on demand):
     --participants simulated listeners with the planted taste (--utility,
     --scale, --noise: rl_tuner_tf.preferences' rating model;
     --browser_participants of them in headless Chromium), and as many
     control listeners with no taste in a second study of the same pool,
     through `listening_study.serve` into its database;
     `listening_study.export_preferences` -> preference files;
  2. `rl_tuner_tf.train_reward_model` on each: held-out accuracy against
     the best possible for the planted noise on the same held-out pairs
     (preferences.best_possible_accuracy), and about 50 % for the control;
     the learning curve: reward models trained on --curve ratings (whole
     participants drawn at random), scored on --test_pairs fresh pool pairs
     rated by fresh listeners of the same taste;
  3. `rl_tuner_tf.train`: RLOO with --reward=rm on the planted reward model
     (rloo_planted) and on the control one (rloo_control), DPO on the
     planted pairs (dpo_planted); `rl_tuner_tf.evaluate` of those, the Note
     RNN and the seed's Q of --q_run (q_paper) with --eval_melodies each:
     the planted feature, mean log p, r_RM of the planted reward model and
     the comparison with real melodies (beyond_rules.json);
  4. round 2, a Figure 3 study of those five models: --round2_participants
     listeners of the planted taste (Kruskal-Wallis, Mann-Whitney + Holm)
     and as many control listeners.
Every stage skips what is already done, so a rerun resumes.  Writes
<output_dir>/results.json (every seed's figures) and results.md (means
over seeds with 95 % t-intervals, the learning curve, the four checks).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from data_pipeline import atomic_files
from data_pipeline import console
from data_pipeline import run_lock
import listening_study
from listening_study import analysis
from listening_study import app as study_app
from listening_study import simulate
from listening_study import stimuli
from rl_tuner_tf import preferences
from rl_tuner_tf.evaluation import seeds as seeds_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOL_MODELS = ("note_rnn", "q", "psi", "g", "rl_only", "ppo", "rloo")
ROUND2_MODELS = ("note_rnn", "q_paper", "rloo_planted", "dpo_planted",
                 "rloo_control")
PREFERRED = ("rloo_planted", "dpo_planted")
BASELINES = ("note_rnn", "q_paper")
ADMIN_TOKEN = "planted-taste-admin-token-0123"
BEYOND_RULES = ("classifier_accuracy", "frechet_note_rnn", "js_pitch_class",
                "js_interval", "js_note_length", "pitch_range",
                "copied_16_step_window_share")
RESULTS = "results.json"


def log(message: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(argv: Sequence[str], log_path: str) -> None:
  """Runs one of the project's commands (python -m ...), output to
  log_path; a failure stops the check, naming the log."""
  log("$ " + " ".join(argv))
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "a") as out:
    code = subprocess.call([sys.executable, "-m", *argv], stdout=out,
                           stderr=subprocess.STDOUT, cwd=ROOT)
  if code != 0:
    with open(log_path) as f:
      tail = f.read()[-3000:]
    raise RuntimeError(f"{argv[0]} failed ({code}); {log_path}:\n{tail}")


def t_interval(values: Sequence[float]) -> Dict[str, Any]:
  """Mean and 95 % t-interval half-width over seeds (seeds.interval; NaN
  for one seed), with the values."""
  mean, half = seeds_lib.interval(values)
  return dict(mean=mean, ci95=float("nan") if half is None else half,
              per_seed=[float(v) for v in values])


class Check:
  """One check's run (module docstring) from its parsed arguments."""

  def __init__(self, args: argparse.Namespace):
    self.args = args
    self.out = os.path.abspath(args.output_dir)
    self.utility = preferences.UTILITIES[args.utility]

  # -- round 1 ---------------------------------------------------------------
  def pool(self) -> Dict[str, Any]:
    """The preference study's pool (manifest only; clips on demand)."""
    out = os.path.join(self.out, "pool", "stimuli")
    if not os.path.isfile(os.path.join(out, stimuli.MANIFEST)):
      log(f"pool: {self.args.per_model} melodies of each of "
          f"{', '.join(self.args.pool_models)} from {self.args.pool_run}")
      stimuli.prepare(self.args.pool_run, out, per_model=self.args.per_model,
                      models=self.args.pool_models, design="preferences",
                      render_mode="on_demand")
    return stimuli.load_manifest(out)

  def study(self, path: str, stimuli_source: str) -> str:
    """A study folder whose stimuli/ is stimuli_source (a link)."""
    os.makedirs(path, exist_ok=True)
    link = listening_study.stimuli_dir(path)
    if not os.path.islink(link):
      os.symlink(os.path.relpath(stimuli_source, path), link)
    return path

  def take_study(self, study: str, taste: Dict[str, Any], seed: int,
                 participants: int, browser: int = 0
                 ) -> List[Dict[str, Any]]:
    """Simulated listeners take `study` through the real server (unless
    its database already holds their ratings); -> the study's rows."""
    done = os.path.join(study, "taken.json")
    if not os.path.isfile(done):
      db_file = os.path.join(study, "study.db")
      for stale in glob.glob(db_file + "*"):
        os.remove(stale)  # an interrupted round starts again
      manifest = stimuli.load_manifest(listening_study.stimuli_dir(study))
      speed = self.args.playback_speed
      extra = ["--workers=2", "--threads=8", f"--max_playback_speed={speed}"]

      def taste_of(k):
        return simulate.Taste(manifest, scale=self.args.scale,
                              noise=self.args.noise, seed=seed * 100003 + k,
                              **taste)
      with simulate.ServerProcess(study, ADMIN_TOKEN, extra) as server:
        clients = [simulate.HttpParticipant(server.url, taste_of(k),
                                            playback_speed=speed)
                   for k in range(browser, participants)]
        simulate.take_part(clients, threads=8, prefix=f"http-s{seed}-")
        if browser:
          driver = simulate.make_chromium_driver()
          try:
            for k in range(browser):
              driver.delete_all_cookies()
              code, _ = simulate.take_study_in_browser(
                  driver, server.url, taste_of(k),
                  external_id=f"chromium-s{seed}-{k}")
              if not code:
                raise RuntimeError("a browser participant did not finish")
          finally:
            driver.quit()
      atomic_files.write_json(done, dict(participants=participants,
                                         browser=browser))
    return study_app.study_rows(study)

  def export(self, study: str) -> str:
    path = os.path.join(study, "preferences.npz")
    if not os.path.isfile(path):
      run(["listening_study.export_preferences", f"--study_dir={study}",
           f"--max_playback_speed={self.args.playback_speed}",
           f"--output={path}"], os.path.join(study, "export.log"))
    return path

  def reward_model(self, pairs_path: str, out: str, seed: int
                   ) -> Dict[str, Any]:
    if not os.path.isfile(os.path.join(out, "metrics.json")):
      run(["rl_tuner_tf.train_reward_model", f"--preferences={pairs_path}",
           f"--output_dir={out}", f"--num_steps={self.args.rm_steps}",
           f"--seed={seed}"], out + ".log")
    with open(os.path.join(out, "metrics.json")) as f:
      return json.load(f)["validation"]

  def best_on_held_out(self, pairs: preferences.PreferencePairs,
                       seed: int) -> float:
    """The Bayes rate of the planted taste on the reward model's held-out
    pairs (the trainer's own split: by participant, 0.2, its seed)."""
    _, held_out = preferences.split_by_participant(pairs, 0.2, seed)
    return preferences.best_possible_accuracy(
        held_out.tokens_a, held_out.tokens_b, self.utility, self.args.scale,
        self.args.noise)

  # -- the learning curve ----------------------------------------------------
  def test_pairs(self, manifest: Dict[str, Any]) -> preferences.PreferencePairs:
    """Fresh pool pairs rated by fresh listeners of the planted taste."""
    tokens = np.array([c["tokens"] for c in manifest["stimuli"].values()])
    rng = np.random.default_rng(2**31 - 1)
    n = self.args.test_pairs
    a = rng.integers(0, len(tokens), n)
    b = (a + rng.integers(1, len(tokens), n)) % len(tokens)  # b != a
    rating = preferences.simulate_ratings(tokens[a], tokens[b], self.utility,
                                          self.args.scale, self.args.noise,
                                          seed=2**31 - 2)
    return preferences.PreferencePairs(
        tokens[a], tokens[b], rating, np.array(["test"] * n),
        provenance={"test": True})

  def accuracy_on(self, model_dir: str, pairs: preferences.PreferencePairs
                  ) -> float:
    from rl_tuner_tf import reward_model  # pylint: disable=g-import-not-at-top
    scorer = reward_model.load(model_dir)
    margin = scorer(pairs.tokens_a) - scorer(pairs.tokens_b)
    decided = pairs.rating != preferences.SCALE_MID
    return float(np.mean((margin[decided] > 0) ==
                         (pairs.rating[decided] < preferences.SCALE_MID)))

  def curve(self, pairs: preferences.PreferencePairs, seed_dir: str,
            seed: int, test: preferences.PreferencePairs,
            full_accuracy: float) -> List[Dict[str, Any]]:
    """Accuracy on `test` of reward models trained on the ratings of whole
    listeners drawn at random, --curve ratings or more each; the last
    point is the reward model of all of them (full_accuracy)."""
    people = np.unique(pairs.participant)
    order = np.random.default_rng(seed).permutation(len(people))
    counts = np.cumsum([np.sum(pairs.participant == people[i])
                        for i in order])
    points = []
    for size in sorted(self.args.curve):
      if size < pairs.num_pairs:
        taken = people[order[:max(2, int(np.searchsorted(counts, size)) + 1)]]
        subset = pairs.subset(np.flatnonzero(np.isin(pairs.participant,
                                                     taken)))
        path = os.path.join(seed_dir, "curve", f"pairs_{size}.npz")
        if not os.path.isfile(path):
          os.makedirs(os.path.dirname(path), exist_ok=True)
          preferences.save(subset, path)
        model_dir = os.path.join(seed_dir, "curve", f"rm_{size}")
        self.reward_model(path, model_dir, seed)
        points.append(dict(ratings=int(subset.num_pairs),
                           accuracy=self.accuracy_on(
                               os.path.join(model_dir, "model"), test)))
    return points + [dict(ratings=int(pairs.num_pairs),
                          accuracy=full_accuracy)]

  # -- tuning and evaluation -------------------------------------------------
  def q_model(self, seed: int) -> str:
    for path in (os.path.join(self.args.q_run, f"seed{seed}", "q"),
                 os.path.join(self.args.q_run, "q")):
      if os.path.isfile(os.path.join(path, "model", "tuned.json")) and (
          seed == 0 or f"seed{seed}" in path):
        return os.path.abspath(path)
    raise FileNotFoundError(
        f"--q_run: no Q model of seed {seed} in {self.args.q_run!r} "
        f"(python -m rl_tuner_tf.train --algorithm=q --seeds=0,...,"
        f"{max(self.args.seeds)} --output_dir={self.args.q_run})")

  def tune(self, seed_dir: str, seed: int, planted_rm: str, control_rm: str,
           planted_pairs: str) -> str:
    tuned = os.path.join(seed_dir, "tuned")
    runs = (("planted", ["--algorithm=rloo", "--reward=rm",
                         f"--reward_model_dir={planted_rm}",
                         f"--num_notes={self.args.rlhf_notes}"]),
            ("control", ["--algorithm=rloo", "--reward=rm",
                         f"--reward_model_dir={control_rm}",
                         f"--num_notes={self.args.rlhf_notes}"]),
            ("planted", ["--algorithm=dpo",
                         f"--dpo_preferences={planted_pairs}",
                         f"--num_notes={self.args.dpo_notes}"]))
    for point, flags in runs:
      algorithm = flags[0].split("=")[1]
      out = os.path.join(tuned, point)
      if not os.path.isfile(os.path.join(out, algorithm, "model",
                                         "tuned.json")):
        run(["rl_tuner_tf.train", *flags, f"--seed={seed}",
             f"--output_dir={out}", "--noreport"],
            os.path.join(tuned, f"{algorithm}_{point}.log"))
    link = os.path.join(tuned, "paper", "q")
    if not os.path.islink(link):
      os.makedirs(os.path.dirname(link), exist_ok=True)
      os.symlink(self.q_model(seed), link)
    if not os.path.isfile(os.path.join(tuned, "evaluation", "table1.md")):
      run(["rl_tuner_tf.evaluate", f"--run_dir={tuned}",
           f"--num_melodies={self.args.eval_melodies}"],
          os.path.join(tuned, "evaluate.log"))
    return tuned

  def model_figures(self, tuned: str, planted_rm: str) -> Dict[str, Any]:
    from rl_tuner_tf import reward_model  # pylint: disable=g-import-not-at-top
    scorer = reward_model.load(planted_rm)
    out = {}
    for model in ROUND2_MODELS:
      folder = os.path.join(tuned, "evaluation", model)
      melodies = np.load(os.path.join(folder, "melodies.npy"))
      with open(os.path.join(folder, "table1.json")) as f:
        table1 = json.load(f)
      with open(os.path.join(folder, "beyond_rules.json")) as f:
        beyond = json.load(f)
      out[model] = dict(
          feature=float(self.utility(melodies).mean()),
          mean_log_p=float(table1["mean_log_p"]),
          mean_r_mt=float(table1["mean_r_mt"]),
          r_rm=float(np.mean(scorer(melodies))),
          **{k: float(beyond[k]) for k in BEYOND_RULES})
    return out

  # -- round 2 ---------------------------------------------------------------
  def round2(self, seed_dir: str, tuned: str, seed: int) -> Dict[str, Any]:
    source = os.path.join(seed_dir, "round2_stimuli")
    if not os.path.isfile(os.path.join(source, stimuli.MANIFEST)):
      stimuli.prepare(tuned, source, per_model=self.args.round2_per_model,
                      models=ROUND2_MODELS, seed=seed)
    out = {}
    for name, taste in (("planted", dict(utility=self.utility)),
                        ("control", dict(utility=preferences.no_utility))):
      study = self.study(os.path.join(seed_dir, f"round2_{name}"), source)
      rows = self.take_study(study, taste, seed + 1000,
                             self.args.round2_participants)
      result = analysis.analyse(rows,
                                max_playback_speed=self.args.playback_speed)
      out[name] = dict(kruskal_wallis=result["kruskal_wallis"],
                       mean_score={m: v["mean_score"] for m, v in
                                   result["per_model"].items()},
                       pairwise=result["mann_whitney"],
                       ratings_used=result["ratings_used"],
                       participants_implausible=result[
                           "participants_implausible"])
    return out

  # -- one seed --------------------------------------------------------------
  def seed(self, seed: int, manifest: Dict[str, Any],
           test: preferences.PreferencePairs) -> Dict[str, Any]:
    seed_dir = os.path.join(self.out, f"seed{seed}")
    done = os.path.join(seed_dir, "seed_results.json")
    if os.path.isfile(done):
      with open(done) as f:
        return json.load(f)
    pool = os.path.join(self.out, "pool", "stimuli")
    result: Dict[str, Any] = {"seed": seed}
    files, models, loaded = {}, {}, {}
    for name, taste, browser in (
        ("planted", dict(utility=self.utility),
         self.args.browser_participants),
        ("control", dict(utility=preferences.no_utility), 0)):
      study = self.study(os.path.join(seed_dir, f"round1_{name}"), pool)
      log(f"seed {seed}: round 1, {name} listeners")
      rows = self.take_study(study, taste, seed, self.args.participants,
                             browser=browser)
      files[name] = self.export(study)
      loaded[name] = pairs = preferences.load(files[name])
      rm_dir = os.path.join(seed_dir, f"reward_model_{name}")
      held_out = self.reward_model(files[name], rm_dir, seed)
      models[name] = os.path.join(rm_dir, "model")
      result[f"round1_{name}"] = dict(
          ratings=len([r for r in rows if r["kind"] == "pair"]),
          pairs_exported=pairs.num_pairs,
          participants=int(len(np.unique(pairs.participant))),
          held_out_accuracy=held_out["accuracy"],
          held_out_ci95=held_out["accuracy_ci95"],
          held_out_pairs=held_out["pairs_with_preference"],
          best_possible=(self.best_on_held_out(pairs, seed)
                         if name == "planted" else 0.5),
          fresh_accuracy=self.accuracy_on(models[name], test))
    log(f"seed {seed}: learning curve")
    result["curve"] = self.curve(loaded["planted"], seed_dir, seed, test,
                                 result["round1_planted"]["fresh_accuracy"])
    log(f"seed {seed}: tuning and evaluation")
    tuned = self.tune(seed_dir, seed, models["planted"], models["control"],
                      files["planted"])
    result["models"] = self.model_figures(tuned, models["planted"])
    log(f"seed {seed}: round 2")
    result["round2"] = self.round2(seed_dir, tuned, seed)
    atomic_files.write_json(done, result)
    return result

  def run(self) -> Dict[str, Any]:
    os.makedirs(self.out, exist_ok=True)
    with run_lock.hold(self.out, command="listening_study.planted_taste"):
      manifest = self.pool()
      test = self.test_pairs(manifest)
      settings = {k: v for k, v in vars(self.args).items()
                  if k not in ("verbose",)}
      best_test = preferences.best_possible_accuracy(
          test.tokens_a, test.tokens_b, self.utility, self.args.scale,
          self.args.noise)
      seeds = [self.seed(s, manifest, test) for s in self.args.seeds]
      results = dict(settings=settings, test_pairs_best_possible=best_test,
                     seeds=seeds, summary=summarise(seeds))
      atomic_files.write_json(os.path.join(self.out, RESULTS), results)
      with open(os.path.join(self.out, "results.md"), "w") as f:
        f.write(markdown(results))
      plot_curve(results, os.path.join(self.out, "learning_curve.png"))
    return results


# -- summaries -----------------------------------------------------------------
def _pairwise_p(round2: Dict[str, Any], a: str, b: str) -> Optional[float]:
  for p in round2["pairwise"]:
    if {p["a"], p["b"]} == {a, b}:
      return p["p_holm"]
  return None


def summarise(seeds: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """Means over seeds with 95 % t-intervals, and the four checks."""
  def over(get: Callable[[Dict[str, Any]], float]) -> Dict[str, Any]:
    return t_interval([get(s) for s in seeds])
  out: Dict[str, Any] = {}
  for name in ("planted", "control"):
    r = f"round1_{name}"
    out[r] = {k: over(lambda s, k=k, r=r: s[r][k]) for k in (
        "ratings", "held_out_accuracy", "best_possible", "fresh_accuracy")}
  out["curve"] = [dict(ratings=over(lambda s, i=i: s["curve"][i]["ratings"]),
                       accuracy=over(lambda s, i=i: s["curve"][i]["accuracy"]))
                  for i in range(len(seeds[0]["curve"]))]
  models = list(seeds[0]["models"])
  keys = list(seeds[0]["models"][models[0]])
  out["models"] = {m: {k: over(lambda s, m=m, k=k: s["models"][m][k])
                       for k in keys} for m in models}
  out["feature_shift"] = {
      m: over(lambda s, m=m: s["models"][m]["feature"] -
              s["models"]["note_rnn"]["feature"]) for m in models}
  out["log_p_minus_q"] = {
      m: over(lambda s, m=m: s["models"][m]["mean_log_p"] -
              s["models"]["q_paper"]["mean_log_p"]) for m in models}
  wins = {}
  for name in ("planted", "control"):
    counts = {}
    for a in PREFERRED + ("rloo_control",):
      for b in BASELINES:
        counts[f"{a}>{b}"] = sum(
            1 for s in seeds
            if (_pairwise_p(s["round2"][name], a, b) or 1) < analysis.ALPHA
            and s["round2"][name]["mean_score"][a] >
            s["round2"][name]["mean_score"][b])
    counts["kruskal_wallis"] = sum(
        1 for s in seeds
        if s["round2"][name]["kruskal_wallis"]["p"] < analysis.ALPHA)
    wins[name] = counts
  out["round2_significant_seeds"] = wins
  out["round2_mean_score"] = {
      name: {m: over(lambda s, m=m, n=name: s["round2"][n]["mean_score"][m])
             for m in ROUND2_MODELS} for name in ("planted", "control")}
  return out


def _ci(x: Dict[str, Any], digits: int = 3) -> str:
  return f"{x['mean']:.{digits}f} ± {x['ci95']:.{digits}f}"


def markdown(results: Dict[str, Any]) -> str:
  s, settings = results["summary"], results["settings"]
  n = len(results["seeds"])
  lines = [
      f"# Planted taste: {settings['utility']} (scale {settings['scale']}, "
      f"noise {settings['noise']}), {n} seeds", "",
      "Means over seeds ± 95 % t-interval half-widths.", "",
      "## 1. The reward model recovers the taste", "",
      "| study | ratings | held-out accuracy | best possible | on fresh pairs |",
      "|---|---|---|---|---|"]
  for name in ("planted", "control"):
    r = s[f"round1_{name}"]
    lines.append(f"| {name} | {r['ratings']['mean']:.0f} | "
                 f"{_ci(r['held_out_accuracy'])} | {_ci(r['best_possible'])} "
                 f"| {_ci(r['fresh_accuracy'])} |")
  lines += ["", f"Learning curve (accuracy on {settings['test_pairs']} fresh "
            f"pairs; best possible there "
            f"{results['test_pairs_best_possible']:.3f}):", "",
            "| ratings | accuracy |", "|---|---|"]
  for p in s["curve"]:
    lines.append(f"| {p['ratings']['mean']:.0f} | {_ci(p['accuracy'])} |")
  lines += ["", "## 2-4. The tuned models", "",
            "| model | feature | shift vs Note RNN | mean log p | log p − Q's "
            "| r_RM | r_MT | C2ST accuracy | Fréchet | JS pitch class | "
            "JS interval |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for m, v in s["models"].items():
    lines.append(
        f"| {m} | {_ci(v['feature'], 2)} | {_ci(s['feature_shift'][m], 2)} | "
        f"{_ci(v['mean_log_p'])} | {_ci(s['log_p_minus_q'][m])} | "
        f"{_ci(v['r_rm'], 2)} | {_ci(v['mean_r_mt'], 2)} | "
        f"{_ci(v['classifier_accuracy'])} | {_ci(v['frechet_note_rnn'], 2)} "
        f"| {_ci(v['js_pitch_class'])} | {_ci(v['js_interval'])} |")
  lines += ["", "Round 2 (Figure 3 design): mean score per model, and in how "
            f"many of {n} seeds each comparison was significant (Holm, "
            f"α = {analysis.ALPHA}) in the stated direction:", "",
            "| listeners | " + " | ".join(ROUND2_MODELS) + " |",
            "|---|" + "---|" * len(ROUND2_MODELS)]
  for name in ("planted", "control"):
    lines.append(f"| {name} | " + " | ".join(
        _ci(s["round2_mean_score"][name][m], 2) for m in ROUND2_MODELS) +
                 " |")
  lines += ["", "| listeners | " + " | ".join(
      s["round2_significant_seeds"]["planted"]) + " |",
            "|---|" + "---|" * len(s["round2_significant_seeds"]["planted"])]
  for name in ("planted", "control"):
    lines.append(f"| {name} | " + " | ".join(
        f"{v}/{n}" for v in s["round2_significant_seeds"][name].values()) +
                 " |")
  return "\n".join(lines) + "\n"


def plot_curve(results: Dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  s = results["summary"]
  x = [p["ratings"]["mean"] for p in s["curve"]]
  y = [p["accuracy"]["mean"] for p in s["curve"]]
  e = [p["accuracy"]["ci95"] for p in s["curve"]]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.errorbar(x, y, yerr=e, marker="o", capsize=3,
              label=f"reward model ({len(results['seeds'])} seeds, 95 % CI)")
  ax.axhline(results["test_pairs_best_possible"], color="k", ls="--",
             label="best possible (the planted taste)")
  ax.axhline(0.5, color="grey", ls=":", label="chance")
  ax.set_xscale("log")
  ax.set_xticks(x, [f"{v:.0f}" for v in x])
  ax.minorticks_off()
  ax.set_xlabel("ratings collected (the reward model trains on 80 %)")
  ax.set_ylabel("accuracy on fresh rated pairs")
  ax.set_title(f"Planted taste: {results['settings']['utility']}")
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  with atomic_files.open_atomic(path, "wb") as f:
    fig.savefig(f, dpi=120, format="png")
  plt.close(fig)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
  add = parser.add_argument
  add("--output_dir", default=os.path.join("runs", "planted"))
  add("--pool_run", required=True, help="an evaluated run whose models' "
      "melodies make the pool (python -m rl_tuner_tf.evaluate)")
  add("--pool_models", type=lambda t: t.split(","), default=list(POOL_MODELS))
  add("--q_run", required=True, help="a run with Q models of every seed "
      "(<run>/q for seed 0, <run>/seed<s>/q)")
  add("--seeds", type=ints, default=[0, 1, 2, 3, 4])
  add("--per_model", type=int, default=300, help="pool melodies per model")
  add("--participants", type=int, default=100)
  add("--browser_participants", type=int, default=2)
  add("--utility", choices=sorted(preferences.UTILITIES), default="register")
  add("--scale", type=float, default=0.5)
  add("--noise", type=float, default=1.0)
  add("--playback_speed", type=float, default=1000.0,
      help="how much faster than real time the listeners play (HTTP; the "
      "browser ones play at 16x)")
  add("--rm_steps", type=int, default=1000)
  add("--curve", type=ints, default=[250, 500, 1000])
  add("--test_pairs", type=int, default=5000)
  add("--rlhf_notes", type=int, default=480000)
  add("--dpo_notes", type=int, default=1600000)
  add("--eval_melodies", type=int, default=10000)
  add("--round2_per_model", type=int, default=12)
  add("--round2_participants", type=int, default=40)
  console.add_verbose_argument(parser)
  args = parser.parse_args(argv)
  for name in ("pool_run", "q_run"):
    if not os.path.isdir(getattr(args, name)):
      parser.error(f"--{name}: no directory {getattr(args, name)!r}")
  if args.participants < 2 or args.browser_participants > args.participants:
    parser.error("--participants must be >= 2 and >= --browser_participants")
  from rl_tuner_tf import tuning  # pylint: disable=g-import-not-at-top
  for flag, algorithm, extra in (
      ("rlhf_notes", "rloo", dict(reward="rm", reward_model_dir="model")),
      ("dpo_notes", "dpo", dict(dpo_preferences="pairs.npz"))):
    try:  # the tuning runs' settings, checked before hours of work
      tuning.TuningConfig.of(algorithm=algorithm,
                             num_notes=getattr(args, flag), **extra)
    except tuning.ConfigError as e:
      parser.error(f"--{flag}: {e}")
  if args.browser_participants and not os.path.exists(simulate.CHROMIUM):
    parser.error(f"--browser_participants: no {simulate.CHROMIUM} (apt-get "
                 "install chromium chromium-driver, or 0)")
  return args


def main(argv: Optional[Sequence[str]] = None) -> None:
  args = parse_args(argv)
  results = Check(args).run()
  print(markdown(results))


if __name__ == "__main__":
  console.install()
  main()
