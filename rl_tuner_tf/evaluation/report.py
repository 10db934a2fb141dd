"""Figure 2 plots and the one-page HTML report of a run.

Layout read here (written by ``rl_tuner_tf.train`` and ``rl_tuner_tf.evaluate``):
  <run_dir>/<algorithm>/figure2.csv       columns step,mean_log_p,mean_r_mt
  <run_dir>/<point>/<algorithm>/figure2.csv   the same, one per grid point
                                          (seeds: mean with a 95 % CI band)
  <run_dir>/[<point>/]<algorithm>/tensorboard/  when each point was written:
                                          Figure 2 against tuning wall time
  <eval_dir>/<model>/table1.json          Table 1 statistics of one model
  <eval_dir>/<model>/samples/*.png|.wav   piano rolls and audio
where eval_dir is <run_dir>/evaluation when it exists, else <run_dir>.
The HTML embeds every image and sound as a base64 data URI, so the single
file can be copied anywhere.
"""
import base64
import csv
import glob
import html
import json
import os

from data_pipeline import atomic_files
from rl_tuner_tf.evaluation import seeds
from rl_tuner_tf.evaluation import table1
from rl_tuner_tf.evaluation import wall_time

FIGURE2_CSV = "figure2.csv"
FIGURE2_QUANTITIES = (
    ("mean_log_p", "Mean log p(a|s) under the Reward RNN"),
    ("mean_r_mt", "Mean music-theory reward r_MT (per note; last note's\n"
                  "with figure2_r_mt=last_note)"),
)
REPORT_FILENAME = "report.html"
# Written by `python -m listening_study.analyze` (the Figure 3 study).
LISTENING_SUMMARY = os.path.join("listening_study", "results", "summary.html")
ALGORITHM_ORDER = ("note_rnn", "q", "psi", "g", "rl_only", "ppo", "rloo")


def _order(names):
  known = [n for n in ALGORITHM_ORDER if n in names]
  return known + sorted(n for n in names if n not in ALGORITHM_ORDER)


def read_figure2_csv(path):
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


def figure2_curves(run_dir):
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


def mean_curve(runs, key):
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


def plot_figure2(run_dir, output_dir=None):
  """Two PNGs per quantity, every algorithm's curve on each -> [png paths]:
  against notes composed (figure2_<quantity>.png, the paper's Figure 2) and
  against tuning wall time (figure2_<quantity>_wall_time.png, the seeds'
  mean time at each point). A group of seeds is drawn as its mean with a
  95 % confidence band.

  Reads <run_dir>/<algorithm>/figure2.csv and <run_dir>/<point>/<algorithm>/
  figure2.csv, and their runs' TensorBoard events for the wall time; returns
  [] when there is no figure2.csv.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
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
  for key, label in FIGURE2_QUANTITIES:
    for suffix, x_label, groups in axes:
      fig, ax = plt.subplots(figsize=(6, 4))
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
      ax.set_ylabel(label)
      ax.set_title(f"Figure 2: {label}")
      ax.grid(alpha=0.3)
      ax.legend()
      fig.tight_layout()
      path = os.path.join(output_dir, f"figure2_{key}{suffix}.png")
      with atomic_files.open_atomic(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
      plt.close(fig)
      paths.append(path)
  return paths


def _data_uri(path, mime):
  with open(path, "rb") as f:
    return f"data:{mime};base64," + base64.b64encode(f.read()).decode("ascii")


def _html_table(results):
  header, rows = table1.table_cells(results)
  out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(c)}</th>"
                                     for c in header) + "</tr>"]
  for row in rows:
    out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row)
               + "</tr>")
  out.append("</table>")
  out.append(f"<p>{html.escape(table1.table_footnote(results))}</p>")
  return "\n".join(out)


def _markdown_to_html(text):
  """The Markdown tables and paragraphs this package writes, as HTML."""
  out, rows = [], []

  def flush():
    if rows:
      out.append("<table>" + "".join(rows) + "</table>")
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


def _table_section(eval_dir, stem, title, intro=None, width=None,
                   figures=None):
  """<eval_dir>/<stem>.md and its figures (default <stem>.png; those that
  exist) as an HTML section; [] if the table is absent."""
  table = os.path.join(eval_dir, stem + ".md")
  if not os.path.exists(table):
    return []
  parts = [f"<h2>{html.escape(title)}</h2>"]
  if intro:
    parts.append(f"<p>{html.escape(intro)}</p>")
  with open(table) as f:
    parts.append(_markdown_to_html(f.read()))
  size = f" width='{width}'" if width else ""
  for name in figures or [stem + ".png"]:
    png = os.path.join(eval_dir, name)
    if os.path.exists(png):
      parts.append(f"<img alt='{name}'{size} "
                   f"src='{_data_uri(png, 'image/png')}'>")
  return parts


def load_table1_results(eval_dir):
  """{model: stats} from <eval_dir>/<model>/table1.json."""
  results = {}
  for path in glob.glob(os.path.join(eval_dir, "*", "table1.json")):
    with open(path) as f:
      results[os.path.basename(os.path.dirname(path))] = json.load(f)
  return seeds.ordered(results)


def write_report(run_dir, eval_dir=None, title=None, notes=None):
  """Writes <run_dir>/report.html and returns its path."""
  if not os.path.isdir(run_dir):
    raise FileNotFoundError(f"run directory {run_dir!r} does not exist")
  if eval_dir is None:
    candidate = os.path.join(run_dir, "evaluation")
    eval_dir = candidate if os.path.isdir(candidate) else run_dir
  results = load_table1_results(eval_dir)
  figures = plot_figure2(run_dir)

  parts = [
      "<!DOCTYPE html><html><head><meta charset='utf-8'>",
      f"<title>{html.escape(title or 'RL Tuner run report')}</title>",
      "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
      "table{border-collapse:collapse}td,th{border:1px solid #ccc;"
      "padding:3px 8px;text-align:right}td:first-child{text-align:left}"
      ".sample{display:inline-block;margin:6px;vertical-align:top}"
      "</style></head><body>",
      f"<h1>{html.escape(title or 'RL Tuner run report')}</h1>",
      f"<p>Run directory: <code>{html.escape(os.path.abspath(run_dir))}</code></p>",
  ]
  if notes:
    parts.append(f"<p>{html.escape(notes)}</p>")
  if os.path.isfile(os.path.join(run_dir, LISTENING_SUMMARY)):
    parts.append("<p><strong>Figure 3 (listening study):</strong> <a href='"
                 f"{html.escape(LISTENING_SUMMARY.replace(os.sep, '/'))}'>"
                 "summary of the ratings and tests</a></p>")
  parts.append("<h2>Table 1: music-theory statistics (ours beside the paper)</h2>")
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
      width=1080, figures=["beyond_rules.png", "beyond_rules_vs_rules.png"])
  parts.append("<h2>Figure 2: during tuning</h2>")
  if figures:
    for path in figures:
      parts.append(f"<img alt='{html.escape(os.path.basename(path))}' "
                   f"src='{_data_uri(path, 'image/png')}'>")
  else:
    parts.append("<p>No figure2.csv found in the run's algorithm folders.</p>")
  parts.append("<h2>Samples</h2>")
  for model in results:
    sample_dir = os.path.join(eval_dir, model, "samples")
    pngs = sorted(glob.glob(os.path.join(sample_dir, "*.png")))
    if not pngs:
      continue
    parts.append(f"<h3>{html.escape(model)}</h3>")
    for png in pngs:
      wav = os.path.splitext(png)[0] + ".wav"
      parts.append("<div class='sample'>")
      parts.append(f"<img width='480' src='{_data_uri(png, 'image/png')}'><br>")
      if os.path.exists(wav):
        parts.append(f"<audio controls src='{_data_uri(wav, 'audio/wav')}'>"
                     "</audio>")
      parts.append("</div>")
  parts.append("</body></html>")
  path = os.path.join(run_dir, REPORT_FILENAME)
  atomic_files.write_text(path, "\n".join(parts))
  return path
