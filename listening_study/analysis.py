"""The paper's analysis of the listening study (section 6, Figure 3).

Each rated pair (not the attention checks) gives one score to each of its two
models: with the 7-point scale (1 = A much better, 4 = no preference,
7 = B much better), the right-hand (B) model scores value - 4 and the
left-hand (A) model 4 - value, both in [-3, 3].  Then:
  * Kruskal-Wallis H over the models' scores (the paper: chi2(3) = 109.48);
  * Mann-Whitney U (two-sided) for each model pair, p-values corrected for
    the number of pairs by Holm's step-down method (family-wise alpha);
  * Figure 3: the number of comparisons each model won (score > 0), with
    error bars sqrt(n p (1 - p)), the std. dev. of a binomial fitted to its
    win/loss data (as the paper's caption says).
Participants who failed the attention check are excluded (counted); the
ratings of participants who have not finished yet are kept.  A preference
study's pairs of two clips of one model say nothing about models: they are
left out of these tests (counted as same_model_pairs).

Implausible sessions are excluded too (counted, with their reasons), unless
asked to include them: the server's own timestamps (design.py's listening
rule, checked again here at `max_playback_speed`) show a rated pair whose
clips were not both served ("missing_audio"), a rating sooner after its pair
was shown than both clips play ("fast_rating"), a whole session shorter than
the audio it rated ("fast_session"), or no server record at all, as for
ratings stored before schema version 2 ("unverified").
"""
import base64
import collections
import datetime
import html
import itertools
import json
import os
from typing import (Any, Collection, Dict, Hashable, Iterable, List, Mapping,
                    Optional, Sequence, Tuple)

import numpy as np
from scipy import stats

from listening_study import design
from listening_study import stimuli as stimuli_lib

ALPHA = 0.05
# Figure 3's bar labels.
DISPLAY = {"note_rnn": "Note RNN", "q": "Q", "psi": "\u03a8", "g": "G",
           "rl_only": "RL only", "ppo": "PPO", "rloo": "RLOO"}


def holm(p_values: Sequence[float]) -> List[float]:
  """Holm-Bonferroni adjusted p-values (same order as given)."""
  p = np.asarray(p_values, np.float64)
  order = np.argsort(p)
  m = len(p)
  adjusted = np.empty(m)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p[i]))
    adjusted[i] = running
  return adjusted.tolist()


IMPLAUSIBLE_REASONS = {
    "unverified": "no server record of showing the pair or of the response "
                  "time (stored before schema version 2)",
    "missing_audio": "a pair rated without both of its clips served",
    "fast_rating": "a rating sooner after its pair was shown than both clips "
                   "play",
    "fast_session": "the whole session shorter than the audio it rated",
}


def _time(value: Any) -> Optional[datetime.datetime]:
  """A timestamp of an export row (datetime, or ISO text from a CSV)."""
  if value is None or value == "":
    return None
  if isinstance(value, datetime.datetime):
    return value
  return datetime.datetime.fromisoformat(str(value))


def _number(value: Any) -> Optional[int]:
  return None if value is None or value == "" else int(value)


def _session_reasons(rows: Sequence[Mapping[str, Any]],
                     max_playback_speed: float) -> List[str]:
  """The implausibility reasons of one participant's rated trials."""
  reasons = set()
  audio_total, start, end = 0, None, None
  for row in rows:
    shown = _time(row.get("shown_at"))
    response, audio = (_number(row.get("response_ms")),
                       _number(row.get("audio_ms")))
    if shown is None or response is None or audio is None:
      reasons.add("unverified")
      continue
    if (_time(row.get("left_served_at")) is None or
        _time(row.get("right_served_at")) is None):
      reasons.add("missing_audio")
    if response < design.min_listen_ms(audio, max_playback_speed):
      reasons.add("fast_rating")
    rated = (_time(row.get("created_at")) or
             shown + datetime.timedelta(milliseconds=response))
    audio_total += audio
    start = shown if start is None else min(start, shown)
    end = rated if end is None else max(end, rated)
  if start is not None and (end - start).total_seconds() * 1000 < (
      design.min_listen_ms(audio_total, max_playback_speed)):
    reasons.add("fast_session")
  return sorted(reasons)


def implausible_sessions(
    rows: Iterable[Mapping[str, Any]],
    max_playback_speed: float = design.MAX_PLAYBACK_SPEED
) -> Dict[Hashable, List[str]]:
  """{participant_id: [reasons]} of the sessions whose stored timestamps
  break the listening rule at max_playback_speed (module docstring); every
  rated trial counts, attention checks included."""
  by_participant = collections.defaultdict(list)
  for row in rows:
    by_participant[row["participant_id"]].append(row)
  out = {}
  for participant, session in by_participant.items():
    reasons = _session_reasons(session, max_playback_speed)
    if reasons:
      out[participant] = reasons
  return out


def model_scores(rows: Iterable[Mapping[str, Any]],
                 models: Optional[Sequence[str]] = None,
                 exclude_failed_attention: bool = True,
                 exclude_participants: Collection[Hashable] = ()
                 ) -> Tuple[Dict[str, List[int]], Dict[str, int]]:
  """-> ({model: [scores]}, info) from export rows (see module docstring),
  without the ratings of exclude_participants."""
  pair_rows, excluded, same_model = [], set(), 0
  for row in rows:
    if row["kind"] != "pair":
      continue
    if row["left_model"] == row["right_model"]:
      same_model += 1  # a preference study's pair of one model's clips
      continue
    if exclude_failed_attention and row["attention_passed"] is False:
      excluded.add(row["participant_id"])
      continue
    if row["participant_id"] in exclude_participants:
      continue
    pair_rows.append(row)
  if models is None:
    names = {r["left_model"] for r in pair_rows} | {r["right_model"]
                                                     for r in pair_rows}
    models = stimuli_lib.order_models(names)
  scores = {m: [] for m in models}
  for row in pair_rows:
    preference_for_right = int(row["value"]) - design.SCALE_MID
    if row["left_model"] in scores:
      scores[row["left_model"]].append(-preference_for_right)
    if row["right_model"] in scores:
      scores[row["right_model"]].append(preference_for_right)
  info = {"ratings_used": len(pair_rows), "same_model_pairs": same_model,
          "participants_excluded_attention": len(excluded),
          "participants": len({r["participant_id"] for r in pair_rows})}
  return scores, info


def analyse(rows: Iterable[Mapping[str, Any]],
            models: Optional[Sequence[str]] = None,
            exclude_failed_attention: bool = True,
            alpha: float = ALPHA, exclude_implausible: bool = True,
            max_playback_speed: float = design.MAX_PLAYBACK_SPEED
            ) -> Dict[str, Any]:
  """The paper's tests on export rows, after the exclusions of the module
  docstring; the implausible sessions are reported either way."""
  rows = list(rows)
  implausible = implausible_sessions(rows, max_playback_speed)
  scores, info = model_scores(rows, models, exclude_failed_attention,
                              implausible if exclude_implausible else ())
  reasons = collections.Counter(r for v in implausible.values() for r in v)
  info.update(
      participants_implausible=len(implausible),
      implausible_excluded=bool(exclude_implausible),
      implausible_reasons={k: reasons.get(k, 0) for k in IMPLAUSIBLE_REASONS},
      implausible_sessions=[dict(participant_id=p, reasons=r)
                            for p, r in sorted(implausible.items(),
                                               key=lambda x: str(x[0]))],
      max_playback_speed=float(max_playback_speed))
  models = list(scores)
  per_model = {}
  for m in models:
    s = np.asarray(scores[m])
    n = len(s)
    wins = int((s > 0).sum())
    p = wins / n if n else 0.0
    per_model[m] = dict(comparisons=n, wins=wins, ties=int((s == 0).sum()),
                        losses=int((s < 0).sum()),
                        win_std=float(np.sqrt(n * p * (1 - p))),
                        mean_score=float(s.mean()) if n else float("nan"),
                        median_score=float(np.median(s)) if n else float("nan"))
  usable = [m for m in models if len(scores[m]) > 0]
  kw = dict(H=float("nan"), df=len(usable) - 1, p=float("nan"))
  if len(usable) >= 2:
    try:
      h, p = stats.kruskal(*[scores[m] for m in usable])
      kw.update(H=float(h), p=float(p))
    except ValueError:  # all scores identical
      kw.update(H=0.0, p=1.0)
  pairs = []
  for a, b in itertools.combinations(usable, 2):
    u, p = stats.mannwhitneyu(scores[a], scores[b], alternative="two-sided")
    pairs.append(dict(a=a, b=b, U=float(u), p=float(p),
                      n_a=len(scores[a]), n_b=len(scores[b]),
                      higher=a if per_model[a]["mean_score"] >
                      per_model[b]["mean_score"] else b))
  for pair, adjusted in zip(pairs, holm([x["p"] for x in pairs]) if pairs
                            else []):
    pair["p_holm"] = float(adjusted)
    pair["significant"] = bool(adjusted < alpha)
  ranking = sorted(usable, key=lambda m: -per_model[m]["mean_score"])
  return dict(models=models, per_model=per_model, kruskal_wallis=kw,
              mann_whitney=pairs, ranking=ranking, alpha=alpha,
              correction="Holm-Bonferroni over the "
                         f"{len(pairs)} model pairs", **info)


def plot_figure3(result: Mapping[str, Any], path: str) -> str:
  """Figure 3: comparisons each model won, with binomial error bars; wider
  with more models so their names do not collide, saved with a tight
  bounding box so no text is cut."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  models = [m for m in result["models"]
            if result["per_model"][m]["comparisons"]]
  wins = [result["per_model"][m]["wins"] for m in models]
  errors = [result["per_model"][m]["win_std"] for m in models]
  fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(models) + 1), 3.6),
                         layout="constrained")
  ax.bar([DISPLAY.get(m, m) for m in models], wins, yerr=errors, capsize=6,
         color=["#999999" if m == "note_rnn" else "#4c72b0" for m in models])
  for i, m in enumerate(models):
    ax.text(i, wins[i] + errors[i] + 0.3,
            f"{wins[i]}/{result['per_model'][m]['comparisons']}",
            ha="center", va="bottom", fontsize=8)
  ax.set_ylabel("times preferred")
  ax.set_title("Figure 3: melodies preferred, by model")
  ax.set_ylim(0, max([w + e for w, e in zip(wins, errors)] + [1]) * 1.2)
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)
  return path


def implausible_text(result: Mapping[str, Any]) -> str:
  """One sentence on the implausible sessions: how many, why, and whether
  they were excluded."""
  n = result["participants_implausible"]
  if not n:
    return ("no implausible sessions (every rated pair's clips served, and "
            "no rating sooner than both clips play at "
            f"{result['max_playback_speed']:g}x)")
  why = ", ".join(f"{k}: {v}" for k, v in result["implausible_reasons"].items()
                  if v)
  return (f"{n} implausible session{'s' if n != 1 else ''} ({why}; listening "
          f"rule at {result['max_playback_speed']:g}x), "
          + ("excluded" if result["implausible_excluded"] else
             "INCLUDED (--include_implausible)"))


def format_text(result: Mapping[str, Any]) -> str:
  kw = result["kruskal_wallis"]
  lines = [f"ratings used: {result['ratings_used']} from "
           f"{result['participants']} participants "
           f"({result['participants_excluded_attention']} excluded by the "
           "attention check)", implausible_text(result),
           f"{'model':<10}{'comparisons':>12}{'wins':>6}{'ties':>6}"
           f"{'losses':>8}{'mean score':>12}"]
  for m in result["models"]:
    s = result["per_model"][m]
    lines.append(f"{m:<10}{s['comparisons']:>12}{s['wins']:>6}{s['ties']:>6}"
                 f"{s['losses']:>8}{s['mean_score']:>12.3f}")
  lines.append(f"Kruskal-Wallis: H({kw['df']}) = {kw['H']:.3f}, "
               f"p = {kw['p']:.3g}")
  lines.append(f"Mann-Whitney U, two-sided, {result['correction']}:")
  for x in result["mann_whitney"]:
    lines.append(f"  {x['a']:>8} vs {x['b']:<8} U = {x['U']:9.1f}  "
                 f"p = {x['p']:.3g}  p_holm = {x['p_holm']:.3g}  "
                 f"{'significant' if x['significant'] else 'n.s.':<11} "
                 f"(higher: {x['higher']})")
  lines.append("ranking by mean score: " + " > ".join(result["ranking"]))
  return "\n".join(lines)


def write_summary_html(result: Mapping[str, Any], figure_path: str, path: str,
                       csv_name: str = "ratings.csv") -> str:
  with open(figure_path, "rb") as f:
    figure = base64.b64encode(f.read()).decode()
  kw = result["kruskal_wallis"]
  implausible = implausible_text(result)
  implausible = implausible[0].upper() + implausible[1:]
  rows = "".join(
      f"<tr><td>{html.escape(m)}</td><td>{s['comparisons']}</td>"
      f"<td>{s['wins']}</td><td>{s['ties']}</td><td>{s['losses']}</td>"
      f"<td>{s['mean_score']:.3f}</td></tr>"
      for m, s in result["per_model"].items())
  tests = "".join(
      f"<tr><td>{html.escape(x['a'])} vs {html.escape(x['b'])}</td>"
      f"<td>{x['U']:.1f}</td><td>{x['p']:.3g}</td><td>{x['p_holm']:.3g}</td>"
      f"<td>{'yes' if x['significant'] else 'no'}</td>"
      f"<td>{html.escape(x['higher'])}</td></tr>"
      for x in result["mann_whitney"])
  page = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>Listening study: summary</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}</style>
</head><body>
<h1>Listening study (the paper's Figure 3)</h1>
<p>{result['ratings_used']} pair ratings from {result['participants']} participants
({result['participants_excluded_attention']} participants excluded by the attention
check). <span id="implausible">{html.escape(implausible)}.</span>
Each rating gives the preferred model a positive score and the other the
opposite score on a 7-point scale (&minus;3 &hellip; 3). Ratings: <a href="{html.escape(csv_name)}">{html.escape(csv_name)}</a>.</p>
<img alt="Figure 3" src="data:image/png;base64,{figure}">
<h2>Per model</h2>
<table><tr><th>model</th><th>comparisons</th><th>wins</th><th>ties</th><th>losses</th><th>mean score</th></tr>{rows}</table>
<h2>Tests</h2>
<p>Kruskal-Wallis H over models: H({kw['df']}) = {kw['H']:.3f}, p = {kw['p']:.3g}
(paper: &chi;<sup>2</sup>(3) = 109.480, p &lt; 0.001).</p>
<p>Mann-Whitney U (two-sided) for each model pair; {html.escape(result['correction'])},
&alpha; = {result['alpha']}.</p>
<table><tr><th>pair</th><th>U</th><th>p</th><th>p (Holm)</th><th>significant</th><th>rated higher</th></tr>{tests}</table>
</body></html>"""
  with open(path, "w") as f:
    f.write(page)
  return path


def write_results(rows: Sequence[Mapping[str, Any]], output_dir: str,
                  models: Optional[Sequence[str]] = None,
                  exclude_failed_attention: bool = True,
                  exclude_implausible: bool = True,
                  max_playback_speed: float = design.MAX_PLAYBACK_SPEED
                  ) -> Dict[str, Any]:
  """ratings.csv, analysis.json, figure3.png, summary.html -> paths."""
  from listening_study import app as study_app  # pylint: disable=g-import-not-at-top
  os.makedirs(output_dir, exist_ok=True)
  csv_path = os.path.join(output_dir, "ratings.csv")
  with open(csv_path, "w", newline="") as f:
    study_app.write_csv(f, rows)
  result = analyse(rows, models, exclude_failed_attention,
                   exclude_implausible=exclude_implausible,
                   max_playback_speed=max_playback_speed)
  json_path = os.path.join(output_dir, "analysis.json")
  with open(json_path, "w") as f:
    json.dump(result, f, indent=1)
  figure = plot_figure3(result, os.path.join(output_dir, "figure3.png"))
  summary = write_summary_html(result, figure,
                               os.path.join(output_dir, "summary.html"))
  return dict(csv=csv_path, json=json_path, figure=figure, summary=summary,
              result=result)
