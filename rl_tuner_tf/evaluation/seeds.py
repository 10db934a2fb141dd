"""Table 1 over seeds and grids: mean +- 95 % confidence intervals, c sweeps.

A run of several seeds (``--seeds``) or a c / gamma grid evaluates one model
per run, named ``<algorithm>`` or ``<algorithm>_<point>`` (e.g. ``q_c2-seed3``;
rl_tuner_tf/grid.py). Models that differ only by seed form a *group*
(``q_c2``); each statistic of a group is summarised as

  mean = (1/n) sum_i x_i,   95 % CI half-width = t_{0.975, n-1} * s / sqrt(n)

over its n seeds (s the sample standard deviation; no interval for n = 1).
Written next to the per-model results:
  <eval_dir>/table1.json        {group: {"seeds": [...], "stats": {statistic:
                                 {"mean", "ci95", "per_seed": {seed: value}}}}}
  <eval_dir>/table1_seeds.md    the groups' means +- CI beside the paper
  <eval_dir>/sweep_c.md, sweep_c.png   each statistic against c, per
                                 algorithm (when the groups differ in c)
"""
import math
import os
import re
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple)

import numpy as np

from data_pipeline import atomic_files
from rl_tuner_tf.evaluation import table1

# Run settings copied into each model's table1.json (from its tuned.json).
RUN_KEYS = ("preset", "c", "gamma", "seed", "token_reading", "exploration",
            "g_updates_prior", "boltzmann_store_argmax",
            "minibatches_per_update", "num_notes")
STATISTICS = tuple(key for key, _, _ in table1.ROWS)
SWEEP_STATISTICS = ("notes_excessively_repeated", "notes_not_in_key",
                    "melodies_starting_with_tonic", "leaps_resolved",
                    "notes_in_motif", "mean_log_p", "mean_r_mt",
                    "kl_objective")


def value_of(stats: Mapping[str, Any], key: str) -> Optional[float]:
  """A model's number for ``key`` (the objective: its mean over melodies)."""
  value = stats.get(key)
  if isinstance(value, dict):  # kl_objective
    return value.get("mean")
  return value


def group_and_seed(name: str, stats: Mapping[str, Any]
                   ) -> Tuple[str, Optional[int]]:
  """('q_c2', 3) for model 'q_c2-seed3'; (name, seed or None) otherwise."""
  kind = stats.get("kind", name)
  seed = stats.get("run_settings", {}).get("seed")
  if not name.startswith(kind):
    return name, seed
  label = name[len(kind):].lstrip("_")
  kept = [p for p in label.split("-") if p and not p.startswith("seed")]
  return kind + ("_" + "-".join(kept) if kept else ""), seed


def _order_key(name):
  """(the paper's column of the name's algorithm, then its grid label with
  numbers compared as numbers): q_c0.5 < q_c2 < q_c10 < psi < ..."""
  order = table1.MODEL_ORDER
  kinds = [k for k in order if name == k or name.startswith(k + "_")]
  kind = max(kinds, key=len) if kinds else None
  rest = name[len(kind):] if kind else name
  parts = re.split(r"(\d+(?:\.\d+)?)", rest)
  label = tuple((0, float(p), "") if i % 2 else (1, 0.0, p)
                for i, p in enumerate(parts) if p)
  return (order.index(kind) if kind else len(order), "" if kind else name,
          label)


def ordered(results: Mapping[str, Any]) -> Dict[str, Any]:
  """results in the paper's column order, a grid's points under their
  algorithm by c / seed value (q_c0.5, q_c2, q_c10), unknown names last."""
  return {n: results[n] for n in sorted(results, key=_order_key)}


def interval(values: Iterable[Optional[float]]
             ) -> Tuple[Optional[float], Optional[float]]:
  """(mean, 95 % CI half-width or None) of finite values over seeds."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  x = np.asarray([v for v in values if v is not None and math.isfinite(v)],
                 np.float64)
  if x.size == 0:
    return None, None
  if x.size == 1:
    return float(x[0]), None
  half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
  return float(x.mean()), float(half)


def aggregate(results: Mapping[str, Mapping[str, Any]]
              ) -> Dict[str, Dict[str, Any]]:
  """{model: stats} -> {group: {"models", "seeds", "kind", "run_settings",
  "stats": {statistic: {"mean", "ci95", "per_seed"}}}}."""
  groups = {}
  for name, stats in results.items():
    group, seed = group_and_seed(name, stats)
    entry = groups.setdefault(group, {"models": [], "seeds": [],
                                      "kind": stats.get("kind", group),
                                      "run_settings": {}})
    entry["models"].append(name)
    entry["seeds"].append(seed)
    settings = dict(stats.get("run_settings", {}))
    settings.pop("seed", None)
    entry["run_settings"] = settings
  for group, entry in groups.items():
    summary = {}
    for key in STATISTICS:
      values = [value_of(results[m], key) for m in entry["models"]]
      mean, half = interval(values)
      summary[key] = {"mean": mean, "ci95": half,
                      "per_seed": {str(s): v for s, v in
                                   zip(entry["seeds"], values)}}
    entry["stats"] = summary
  return ordered(groups)


def _cell(summary, style):
  mean, half = summary["mean"], summary["ci95"]
  if mean is None:
    return "n/a"
  if style == "objective":
    style = "float"
  if style == "percent":
    text = f"{100 * mean:.3g} %" if half is None else (
        f"{100 * mean:.3g} ± {100 * half:.2g} %")
  else:
    text = f"{mean:.3f}" if half is None else f"{mean:.3f} ± {half:.3f}"
  return text


def markdown_table(groups: Mapping[str, Mapping[str, Any]]) -> str:
  """Each group's mean +- CI (and n seeds) beside the paper's value."""
  header = ["statistic"]
  for group, entry in groups.items():
    header.append(f"{group} (n={len(entry['models'])})")
    if entry["kind"] in table1.PAPER_TABLE1:
      header.append(f"{entry['kind']} (paper)")
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for key, label, style in table1.ROWS:
    cells = [label]
    for entry in groups.values():
      cells.append(_cell(entry["stats"][key], style))
      if entry["kind"] in table1.PAPER_TABLE1:
        paper = table1.PAPER_TABLE1[entry["kind"]].get(key)
        cells.append(_cell({"mean": paper, "ci95": None}, style))
    lines.append("| " + " | ".join(cells) + " |")
  return ("\n".join(lines) + "\n\nMean ± 95 % confidence interval (Student t) "
          "over the seeds of each group; n = number of seeds.\n")


def sweep(groups: Mapping[str, Mapping[str, Any]], parameter: str = "c"
          ) -> Dict[str, List[Tuple[float, Dict[str, Any]]]]:
  """{algorithm: [(value, {statistic: summary})]} sorted by value, for the
  algorithms evaluated at more than one value of ``parameter``."""
  by_kind = {}
  for entry in groups.values():
    value = entry["run_settings"].get(parameter)
    if value is not None:
      by_kind.setdefault(entry["kind"], []).append((value, entry["stats"]))
  return {kind: sorted(points, key=lambda p: p[0])
          for kind, points in by_kind.items()
          if len({v for v, _ in points}) > 1}


def sweep_markdown(
    curves: Mapping[str, Sequence[Tuple[float, Mapping[str, Any]]]],
    parameter: str = "c") -> str:
  styles = {key: style for key, _, style in table1.ROWS}
  labels = {key: label for key, label, _ in table1.ROWS}
  lines = []
  for kind, points in curves.items():
    lines.append(f"### {kind}\n")
    lines.append("| " + " | ".join([parameter] + [labels[k] for k in
                                                  SWEEP_STATISTICS]) + " |")
    lines.append("|" + "---|" * (len(SWEEP_STATISTICS) + 1))
    for value, stats in points:
      lines.append("| " + " | ".join(
          [f"{value:g}"] + [_cell(stats[k], styles[k])
                            for k in SWEEP_STATISTICS]) + " |")
    lines.append("")
  return "\n".join(lines)


def plot_sweep(curves: Mapping[str, Sequence[Tuple[float, Mapping[str, Any]]]],
               path: str, parameter: str = "c") -> str:
  """One panel per statistic: mean +- CI against the parameter, a line per
  algorithm (log x axis); one legend for all panels, below them, so it
  covers no curve. Saved with a tight bounding box: no text is cut."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  labels = {key: label for key, label, _ in table1.ROWS}
  cols = 4
  rows = math.ceil(len(SWEEP_STATISTICS) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows),
                           layout="constrained", squeeze=False)
  for ax, key in zip(axes.flat, SWEEP_STATISTICS):
    for kind, points in curves.items():
      xs = [v for v, _ in points]
      ys = [s[key]["mean"] for _, s in points]
      errs = [s[key]["ci95"] or 0.0 for _, s in points]
      ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=kind)
    ax.set_xscale("log")
    values = sorted({v for points in curves.values() for v, _ in points})
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.set_xlabel(parameter)
    ax.set_title(labels[key], fontsize=9)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(SWEEP_STATISTICS):]:
    ax.axis("off")
  handles, names = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, names, loc="outside lower center", frameon=False,
             ncol=min(len(names), 8), fontsize=10)
  with atomic_files.open_atomic(path, "wb") as f:
    fig.savefig(f, format="png", dpi=90, bbox_inches="tight")
  plt.close(fig)
  return path


def write_summaries(results: Mapping[str, Mapping[str, Any]],
                    output_dir: str) -> Dict[str, Dict[str, Any]]:
  """Writes the over-seeds table (when a group has several seeds or there are
  several groups per algorithm) and the c sweep; returns the groups."""
  groups = aggregate(results)
  several = (any(len(e["models"]) > 1 for e in groups.values())
             or len({e["kind"] for e in groups.values()}) < len(groups))
  if not several:
    return groups
  atomic_files.write_json(os.path.join(output_dir, "table1.json"),
                          table1.to_json_ready(groups))
  atomic_files.write_text(os.path.join(output_dir, "table1_seeds.md"),
                          markdown_table(groups))
  curves = sweep(groups, "c")
  if curves:
    atomic_files.write_text(os.path.join(output_dir, "sweep_c.md"),
                            sweep_markdown(curves, "c"))
    plot_sweep(curves, os.path.join(output_dir, "sweep_c.png"), "c")
  return groups
