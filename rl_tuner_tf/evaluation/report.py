"""Figure 2 plots and the one-page HTML report of a run.

Layout read here (written by ``rl_tuner_tf.train`` and ``rl_tuner_tf.evaluate``):
  <run_dir>/<algorithm>/figure2.csv       columns step,mean_log_p,mean_r_mt
  <run_dir>/<point>/<algorithm>/figure2.csv   the same, one per grid point
                                          (seeds: mean with a 95 % CI band)
  <run_dir>/[<point>/]<algorithm>/tensorboard/  when each point was written:
                                          Figure 2 against tuning wall time
  <eval_dir>/<model>/table1.json          Table 1 statistics of one model
  <eval_dir>/<model>/samples/*.png|.wav   piano rolls and audio
  <eval_dir>/pianorolls.png               one melody of each model, stacked
                                          (write_piano_rolls, by the
                                          evaluation)
where eval_dir is <run_dir>/evaluation when it exists, else <run_dir>.
The HTML embeds every image and sound as a base64 data URI, so the single
file can be copied anywhere. Figures sit in a CSS grid that puts as many side
by side as the window fits, each with a one-line caption; wide tables scroll
sideways in their own box. Plots are saved with a tight bounding box and
their legends beside the axes, so no text is cut and no curve hidden
(tests/test_figures.py checks every figure).
"""
import base64
import csv
import glob
import html
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from data_pipeline import atomic_files
from rl_tuner_tf.evaluation import samples
from rl_tuner_tf.evaluation import seeds
from rl_tuner_tf.evaluation import table1
from rl_tuner_tf.evaluation import wall_time

FIGURE2_CSV = "figure2.csv"
# (csv column, plot title, y label, what a higher value means).
FIGURE2_QUANTITIES = (
    ("mean_log_p", "Figure 2: mean log p(a|s) under the Reward RNN",
     "mean log p(a|s)", "higher stays closer to the Note RNN"),
    ("mean_r_mt", "Figure 2: mean music-theory reward r_MT",
     "mean r_MT per note", "higher follows the rules more"),
)
# Under the r_MT plots: runs with figure2_r_mt=last_note log another number.
R_MT_NOTE = ("r_MT per note of each melody; the last note's for runs with "
             "figure2_r_mt=last_note")
PIANO_ROLLS = "pianorolls.png"
# One line under each figure of the report, by file name.
CAPTIONS = {
    "sweep_c.png": "Each statistic against c (log axis), a line per "
                   "algorithm: mean ± 95 % CI over its seeds",
    "beyond_rules.png": "Yang & Lerch distance densities to held-out real "
                        "melodies: the nearer the black curve, the more "
                        "like real melodies",
    "beyond_rules_vs_rules.png": "Mean r_MT per note against distance from "
                                 "real melodies, a point per model: up "
                                 "follows the rules, left is nearer real "
                                 "melodies",
    PIANO_ROLLS: "The first sampled melody of each model (same sampler seed "
                 "and index), one pitch range for all: dark = onset, light "
                 "= held",
}
REPORT_FILENAME = "report.html"
# Written by `python -m listening_study.analyze` (the Figure 3 study).
LISTENING_SUMMARY = os.path.join("listening_study", "results", "summary.html")
ALGORITHM_ORDER = ("note_rnn", "q", "psi", "g", "rl_only", "ppo", "rloo")


def _order(names):
  known = [n for n in ALGORITHM_ORDER if n in names]
  return known + sorted(n for n in names if n not in ALGORITHM_ORDER)


def read_figure2_csv(path: str) -> Dict[str, List[float]]:
  """-> {"step": [...], "mean_log_p": [...], "mean_r_mt": [...]}."""
  columns = {"step": [], "mean_log_p": [], "mean_r_mt": []}
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = set(columns) - set(reader.fieldnames or ())
    if missing:
      raise ValueError(f"{path}: missing column(s) {sorted(missing)}; "
                       f"found {reader.fieldnames}")
    for row in reader:
      columns["step"].append(int(float(row["step"])))
      columns["mean_log_p"].append(float(row["mean_log_p"]))
      columns["mean_r_mt"].append(float(row["mean_r_mt"]))
  return columns


def figure2_curves(run_dir: str
                   ) -> Dict[str, List[Dict[str, List[Optional[float]]]]]:
  """{group: [curve, ...]}: the run's figure2.csv files, those of the seeds of
  one grid group (e.g. q at c 2: <run>/c2-seed*/q/) together."""
  curves = {}
  for pattern in (os.path.join("*", FIGURE2_CSV),
                  os.path.join("*", "*", FIGURE2_CSV)):
    for path in sorted(glob.glob(os.path.join(run_dir, pattern))):
      data = read_figure2_csv(path)
      if not data["step"]:
        continue
      at = wall_time.seconds_at_steps(os.path.dirname(path))
      data["seconds"] = [at.get(step) for step in data["step"]]
      parts = os.path.relpath(os.path.dirname(path), run_dir).split(os.sep)
      algorithm = parts[-1]
      name = "_".join([algorithm] + parts[:-1])
      group, _ = seeds.group_and_seed(name, {"kind": algorithm})
      curves.setdefault(group, []).append(data)
  return curves


def mean_curve(runs: Sequence[Mapping[str, Sequence[Optional[float]]]],
               key: str
               ) -> Tuple[List[int], List[Optional[float]],
                          Optional[List[float]]]:
  """(steps, mean, 95 % CI half-width or None) over runs, at their common
  steps."""
  common = sorted(set.intersection(*[set(r["step"]) for r in runs]))
  values = [[r[key][r["step"].index(s)] for r in runs] for s in common]
  pairs = [seeds.interval(v) for v in values]
  halves = [h for _, h in pairs]
  return (common, [m for m, _ in pairs],
          None if any(h is None for h in halves) else halves)


def _with_seconds(runs):
  """Each run's points that have a wall time, as curves over those steps
  (a step is kept only when every run has its time)."""
  timed = [{s for s, t in zip(r["step"], r["seconds"]) if t is not None}
           for r in runs]
  common = set.intersection(*timed)
  return [{k: [v for s, v in zip(r["step"], r[k]) if s in common]
           for k in ("step", "mean_log_p", "mean_r_mt", "seconds")}
          for r in runs]


def figure2_caption(name: str) -> Optional[str]:
  """One line saying what figure2_<quantity>[_wall_time].png shows."""
  for key, _, y_label, meaning in FIGURE2_QUANTITIES:
    for suffix, against in (("", "notes composed"),
                            ("_wall_time", "tuning wall time")):
      if name == f"figure2_{key}{suffix}.png":
        what = y_label[0].upper() + y_label[1:]
        return f"{what} during tuning, by {against}: {meaning}"
  return None


def _legend_beside(ax, count):
  """The legend right of the axes (never on the curves); two columns when
  there are many curves, so it stays within the plot's height."""
  ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
            fontsize=8 if count > 8 else 9, ncol=2 if count > 12 else 1,
            frameon=False)


def plot_figure2(run_dir: str, output_dir: Optional[str] = None
                 ) -> List[str]:
  """Two PNGs per quantity, every algorithm's curve on each -> [png paths]:
  against notes composed (figure2_<quantity>.png, the paper's Figure 2) and
  against tuning wall time (figure2_<quantity>_wall_time.png, the seeds'
  mean time at each point). A group of seeds is drawn as its mean with a
  95 % confidence band.

  Reads <run_dir>/<algorithm>/figure2.csv and <run_dir>/<point>/<algorithm>/
  figure2.csv, and their runs' TensorBoard events for the wall time; returns
  [] when there is no figure2.csv. Saved with a tight bounding box and the
  legend beside the axes, so no text is cut and no curve hidden.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  curves = figure2_curves(run_dir)
  if not curves:
    return []
  output_dir = output_dir or run_dir
  os.makedirs(output_dir, exist_ok=True)
  timed = {name: _with_seconds(runs) for name, runs in curves.items()}
  timed = {name: runs for name, runs in timed.items() if runs[0]["step"]}
  axes = [("", "training step (notes)", curves)]
  if timed:
    axes.append(("_wall_time", "tuning wall time (s)", timed))
  paths = []
  for key, title, y_label, _ in FIGURE2_QUANTITIES:
    for suffix, x_label, groups in axes:
      fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
      for name in _order(groups):
        steps, mean, half = mean_curve(groups[name], key)
        # Against wall time: the seeds' mean time at each of those steps.
        x = mean_curve(groups[name], "seconds")[1] if suffix else steps
        n = len(groups[name])
        line, = ax.plot(x, mean, marker="o", markersize=3,
                        label=name if n == 1 else f"{name} (mean of {n})")
        if half is not None:
          ax.fill_between(x, [m - h for m, h in zip(mean, half)],
                          [m + h for m, h in zip(mean, half)],
                          color=line.get_color(), alpha=0.2, linewidth=0)
      ax.set_xlabel(x_label)
      if not suffix:  # 0, 200k, ..., 1M notes rather than an offset 1e6
        ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
      ax.set_ylabel(y_label)
      ax.set_title(title, fontsize=11)
      ax.grid(alpha=0.3)
      _legend_beside(ax, len(groups))
      if key == "mean_r_mt":
        fig.text(0.01, 0.0, R_MT_NOTE, fontsize=7.5, color="0.35",
                 ha="left", va="top")
      path = os.path.join(output_dir, f"figure2_{key}{suffix}.png")
      with atomic_files.open_atomic(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png", bbox_inches="tight")
      plt.close(fig)
      paths.append(path)
  return paths


def piano_roll_models(results: Mapping[str, Mapping[str, Any]]
                      ) -> List[str]:
  """The model drawn for each group of seeds (its first, in the report's
  order): the piano rolls show one row per method or grid point, not one
  per seed."""
  firsts = {}
  for name, stats in seeds.ordered(results).items():
    firsts.setdefault(seeds.group_and_seed(name, stats)[0], name)
  return list(firsts.values())


def write_piano_rolls(eval_dir: str,
                      results: Optional[Mapping[str, Mapping[str, Any]]] = None,
                      models: Optional[Sequence[str]] = None,
                      path: Optional[str] = None, index: int = 0
                      ) -> Optional[str]:
  """<eval_dir>/pianorolls.png (or path): melody ``index`` of each model's
  <eval_dir>/<model>/melodies.npy stacked, a row per model: ``models`` in
  the order given, else one per group of ``results`` (piano_roll_models).
  Every model's melodies come from the same sampler seed, so the rows are
  the same draw of each model. -> the path, or None when no model has
  melodies."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if models is None:
    models = piano_roll_models(results or {})
  melodies = {}
  for model in models:
    file = os.path.join(eval_dir, model, "melodies.npy")
    if os.path.exists(file):
      melodies[model] = np.load(file, mmap_mode="r")[index]
  if not melodies:
    return None
  path = path or os.path.join(eval_dir, PIANO_ROLLS)
  with atomic_files.open_atomic(path, "wb") as f:
    samples.piano_rolls_png(melodies, f)
  return path


STYLE = (
    "body{font-family:sans-serif;max-width:1400px;margin:auto;"
    "padding:0 16px;line-height:1.35}"
    "h2{margin-top:1.6em;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;font-size:0.9em}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
    "td{white-space:nowrap}th{vertical-align:bottom}"
    "td:first-child,th:first-child{text-align:left;white-space:normal;"
    "min-width:11em;position:sticky;left:0;background:#fff}"
    ".scroll{overflow-x:auto;max-width:100%;margin:0.6em 0}"
    ".grid{display:grid;gap:18px 24px;align-items:start;"
    "grid-template-columns:repeat(auto-fit,minmax(520px,1fr))}"
    ".grid.samples{grid-template-columns:repeat(auto-fill,minmax(250px,1fr))}"
    "figure{margin:0}figure.wide{grid-column:1/-1}"
    "figure.rolls{max-width:900px;margin-bottom:1em}"
    "figure img{width:100%;height:auto;display:block}"
    "figure audio{width:100%;margin-top:4px}"
    "figcaption{font-size:0.88em;color:#444;margin-top:4px}"
)


def _data_uri(path, mime):
  with open(path, "rb") as f:
    return f"data:{mime};base64," + base64.b64encode(f.read()).decode("ascii")


def _figure(path, caption, kind=None, audio=None):
  """A <figure>: the PNG (embedded, as wide as its grid cell), an optional
  sound and a one-line caption; kind "wide" spans the whole grid row."""
  name = html.escape(os.path.basename(path))
  parts = [f"<figure class='{kind}'>" if kind else "<figure>",
           f"<img alt='{name}' src='{_data_uri(path, 'image/png')}'>"]
  if audio:
    parts.append(f"<audio controls src='{_data_uri(audio, 'audio/wav')}'>"
                 "</audio>")
  parts.append(f"<figcaption>{html.escape(caption)}</figcaption></figure>")
  return "".join(parts)


def _grid(figures, samples_grid=False):
  """Figures side by side, as many per row as fit the window."""
  kind = "grid samples" if samples_grid else "grid"
  return "\n".join([f"<div class='{kind}'>"] + list(figures) + ["</div>"])


def _caption(path):
  name = os.path.basename(path)
  return (figure2_caption(name) or CAPTIONS.get(name)
          or os.path.splitext(name)[0].replace("_", " "))


def _html_table(results):
  header, rows = table1.table_cells(results)
  out = ["<div class='scroll'><table>",
         "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header)
         + "</tr>"]
  for row in rows:
    out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row)
               + "</tr>")
  out.append("</table></div>")
  out.append(f"<p>{html.escape(table1.table_footnote(results))}</p>")
  return "\n".join(out)


def _markdown_to_html(text):
  """The Markdown tables and paragraphs this package writes, as HTML (each
  table scrolls sideways in its own box rather than widen the page)."""
  out, rows = [], []

  def flush():
    if rows:
      out.append("<div class='scroll'><table>" + "".join(rows)
                 + "</table></div>")
      rows.clear()
  for line in text.splitlines():
    if line.startswith("|"):
      cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
      if all(set(c) <= set("-") for c in cells):
        continue
      tag = "th" if not rows else "td"
      rows.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>"
                                   for c in cells) + "</tr>")
      continue
    flush()
    if line.startswith("### "):
      out.append(f"<h3>{html.escape(line[4:])}</h3>")
    elif line.strip():
      out.append(f"<p>{html.escape(line)}</p>")
  flush()
  return "\n".join(out)


def _table_section(eval_dir, stem, title, intro=None, figures=None):
  """<eval_dir>/<stem>.md and its figures (default <stem>.png; those that
  exist, each the width of the page) as an HTML section; [] if the table is
  absent."""
  table = os.path.join(eval_dir, stem + ".md")
  if not os.path.exists(table):
    return []
  parts = [f"<h2>{html.escape(title)}</h2>"]
  if intro:
    parts.append(f"<p>{html.escape(intro)}</p>")
  with open(table) as f:
    parts.append(_markdown_to_html(f.read()))
  pngs = [os.path.join(eval_dir, n) for n in figures or [stem + ".png"]]
  pngs = [p for p in pngs if os.path.exists(p)]
  if pngs:
    parts.append(_grid(_figure(p, _caption(p), "wide") for p in pngs))
  return parts


def load_table1_results(eval_dir: str) -> Dict[str, Dict[str, Any]]:
  """{model: stats} from <eval_dir>/<model>/table1.json."""
  results = {}
  for path in glob.glob(os.path.join(eval_dir, "*", "table1.json")):
    with open(path) as f:
      results[os.path.basename(os.path.dirname(path))] = json.load(f)
  return seeds.ordered(results)


def _samples_section(eval_dir, results):
  """The piano rolls of every model (pianorolls.png) first, then each
  model's sample piano rolls with their audio."""
  parts = ["<h2>Samples</h2>"]
  rolls = os.path.join(eval_dir, PIANO_ROLLS)
  if os.path.exists(rolls):
    parts.append(_figure(rolls, _caption(rolls), "rolls"))
  for model in results:
    sample_dir = os.path.join(eval_dir, model, "samples")
    pngs = sorted(glob.glob(os.path.join(sample_dir, "*.png")))
    if not pngs:
      continue
    parts.append(f"<h3>{html.escape(model)}</h3>")
    figures = []
    for png in pngs:
      stem = os.path.splitext(png)[0]
      wav = stem + ".wav"
      number = stem.rsplit("_", 1)[-1]  # <prefix>_<i>, samples.write_samples
      figures.append(_figure(
          png, f"{model} #{number}: piano roll and audio",
          audio=wav if os.path.exists(wav) else None))
    parts.append(_grid(figures, samples_grid=True))
  return parts


def write_report(run_dir: str, eval_dir: Optional[str] = None,
                 title: Optional[str] = None, notes: Optional[str] = None
                 ) -> str:
  """Writes <run_dir>/report.html and returns its path: the tables, then
  the figures in a grid that fits the window, each with a one-line caption.
  """
  if not os.path.isdir(run_dir):
    raise FileNotFoundError(f"run directory {run_dir!r} does not exist")
  if eval_dir is None:
    candidate = os.path.join(run_dir, "evaluation")
    eval_dir = candidate if os.path.isdir(candidate) else run_dir
  results = load_table1_results(eval_dir)
  figures = plot_figure2(run_dir)

  parts = [
      "<!DOCTYPE html><html><head><meta charset='utf-8'>",
      "<meta name='viewport' content='width=device-width, initial-scale=1'>",
      f"<title>{html.escape(title or 'RL Tuner run report')}</title>",
      f"<style>{STYLE}</style></head><body>",
      f"<h1>{html.escape(title or 'RL Tuner run report')}</h1>",
      "<p>Run directory: "
      f"<code>{html.escape(os.path.abspath(run_dir))}</code></p>",
  ]
  if notes:
    parts.append(f"<p>{html.escape(notes)}</p>")
  if os.path.isfile(os.path.join(run_dir, LISTENING_SUMMARY)):
    parts.append("<p><strong>Figure 3 (listening study):</strong> <a href='"
                 f"{html.escape(LISTENING_SUMMARY.replace(os.sep, '/'))}'>"
                 "summary of the ratings and tests</a></p>")
  parts.append("<h2>Table 1: music-theory statistics (ours beside the "
               "paper)</h2>")
  if results:
    parts.append(_html_table(results))
  else:
    parts.append(f"<p>No table1.json under {html.escape(eval_dir)}.</p>")
  seeds_table = os.path.join(eval_dir, "table1_seeds.md")
  if os.path.exists(seeds_table):
    parts.append("<h2>Table 1 over seeds (mean ± 95 % CI)</h2>")
    with open(seeds_table) as f:
      parts.append(_markdown_to_html(f.read()))
  parts += _table_section(eval_dir, "sweep_c", "Statistics against c")
  parts += _table_section(
      eval_dir, "beyond_rules",
      "Beyond the rules: against real held-out melodies",
      intro="Metrics no reward optimises, each model's melodies against "
      "held-out melodies of the Note RNN's corpus; the first row is real "
      "against real (the floor). Jensen–Shannon divergences in bits (0 = same "
      "histogram), Yang & Lerch overlapping areas (1 = as close as real "
      "melodies), a Fréchet distance in the Note RNN's LSTM space, a "
      "classifier's held-out accuracy at telling the model from real melodies "
      "(0.5 = cannot), diversity and copying of training melodies "
      "(rl_tuner_tf/evaluation/beyond_rules.py); below the table the Yang & "
      "Lerch distance densities, then each model's mean r_MT against its "
      "distance from real melodies. Not a listening test.",
      figures=["beyond_rules.png", "beyond_rules_vs_rules.png"])
  parts.append("<h2>Figure 2: during tuning</h2>")
  if figures:
    parts.append(_grid(_figure(p, _caption(p)) for p in figures))
  else:
    parts.append("<p>No figure2.csv found in the run's algorithm folders.</p>")
  parts += _samples_section(eval_dir, results)
  parts.append("</body></html>")
  path = os.path.join(run_dir, REPORT_FILENAME)
  atomic_files.write_text(path, "\n".join(parts))
  return path
