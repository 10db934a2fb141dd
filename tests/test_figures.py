"""Every PNG the evaluation and the listening study write keeps its text in
the saved image: no title, axis label, tick label, legend entry or
annotation is cut at the edge, and legends sit beside the data, not on it.
Also the report's layout: a grid of captioned figures, tables that scroll.

Each figure is checked as it is saved (Figure.savefig is wrapped): the
canvas is drawn, every Text artist that was drawn is measured, and its
extent must lie inside the area the save writes (the figure, or its tight
bounding box when saved with bbox_inches="tight")."""
import csv
import json
import re

import matplotlib
matplotlib.use("Agg")
from matplotlib import figure as mpl_figure  # noqa: E402
from matplotlib import legend as mpl_legend  # noqa: E402
from matplotlib import text as mpl_text  # noqa: E402
from matplotlib import transforms  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from listening_study import analysis  # noqa: E402
from rl_tuner_tf.evaluation import beyond_rules  # noqa: E402
from rl_tuner_tf.evaluation import report  # noqa: E402
from rl_tuner_tf.evaluation import samples  # noqa: E402
from rl_tuner_tf.evaluation import seeds  # noqa: E402
from rl_tuner_tf.evaluation import table1  # noqa: E402

TOLERANCE = 1.0  # pixels


def _drawn_texts(fig, monkeypatch):
  """Draws the figure; -> the non-empty Text artists that were drawn."""
  drawn = []
  draw = mpl_text.Text.draw

  def recording_draw(self, renderer):
    draw(self, renderer)
    if self.get_visible() and self.get_text().strip():
      drawn.append(self)
  with monkeypatch.context() as m:
    m.setattr(mpl_text.Text, "draw", recording_draw)
    fig.canvas.draw()
  return drawn


def _saved_area(fig, renderer, kwargs):
  """The display-space box savefig writes, at the figure's dpi."""
  bbox_inches = kwargs.get("bbox_inches", matplotlib.rcParams["savefig.bbox"])
  if bbox_inches != "tight":
    return fig.bbox
  pad = kwargs.get("pad_inches", matplotlib.rcParams["savefig.pad_inches"])
  tight = fig.get_tightbbox(renderer).padded(pad)
  return transforms.TransformedBbox(tight, fig.dpi_scale_trans)


def _inside(inner, outer):
  return (inner.x0 >= outer.x0 - TOLERANCE and inner.x1 <= outer.x1 + TOLERANCE
          and inner.y0 >= outer.y0 - TOLERANCE
          and inner.y1 <= outer.y1 + TOLERANCE)


def _problems(fig, kwargs, monkeypatch):
  """Texts cut by the saved area or by their clip box; legends on axes."""
  texts = _drawn_texts(fig, monkeypatch)
  renderer = fig.canvas.get_renderer()
  area = _saved_area(fig, renderer, kwargs)
  problems = []
  for text in texts:
    extent = text.get_window_extent(renderer)
    if not _inside(extent, area):
      problems.append(f"cut: {text.get_text()!r} {extent} outside {area}")
    clip = text.get_clip_box() if text.get_clip_on() else None
    if clip is not None and not _inside(extent, clip):
      problems.append(f"clipped: {text.get_text()!r}")
  legends = [a for a in fig.findobj(mpl_legend.Legend) if a.get_visible()]
  for legend in legends:
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
      if ax.axison and box.overlaps(ax.get_window_extent(renderer)):
        problems.append(f"legend on the data of {ax.get_title()!r}")
  return problems


@pytest.fixture
def checked(monkeypatch):
  """[(saved file, problems)] of every figure saved while the test runs."""
  saved = []
  savefig = mpl_figure.Figure.savefig

  def checking_savefig(fig, fname, *args, **kwargs):
    saved.append((getattr(fname, "name", fname),
                  _problems(fig, kwargs, monkeypatch)))
    return savefig(fig, fname, *args, **kwargs)
  monkeypatch.setattr(mpl_figure.Figure, "savefig", checking_savefig)
  return saved


def _assert_nothing_cut(saved, count):
  assert len(saved) == count, [name for name, _ in saved]
  found = [f"{name}: {p}" for name, problems in saved for p in problems]
  assert not found, "\n".join(found)


def _write_figure2(path, steps, offset):
  """A figure2.csv with values in the ranges of a real run (log p about -1
  to -4, r_MT from about -40 to 10)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["step", "mean_log_p", "mean_r_mt"])
    for i, step in enumerate(steps):
      writer.writerow([step, -1.25 - 0.4 * offset - 0.05 * i,
                       -36.5 + 3 * offset + 4.5 * i])


@pytest.fixture
def timed(monkeypatch):
  """Every run's Figure 2 points get a wall time (no TensorBoard files)."""
  monkeypatch.setattr(report.wall_time, "seconds_at_steps",
                      lambda _: {s: s * 6e-4 for s in range(0, 10**6 + 1,
                                                            10**5)})


def test_figure2_of_a_five_seed_study(tmp_path, checked, timed):
  """The paper study's layout: six methods, five seeds each."""
  steps = list(range(0, 10**6 + 1, 10**5))
  for i, algorithm in enumerate(report.ALGORITHM_ORDER[1:]):
    _write_figure2(tmp_path / algorithm / "figure2.csv", steps, i)
    for seed in range(1, 5):
      _write_figure2(tmp_path / f"seed{seed}" / algorithm / "figure2.csv",
                     steps, i + 0.1 * seed)
  paths = report.plot_figure2(str(tmp_path))
  assert len(paths) == 4
  _assert_nothing_cut(checked, 4)


def test_figure2_of_a_large_grid(tmp_path, checked, timed):
  """Many curves: the legend must still fit beside the plot."""
  steps = list(range(0, 10**6 + 1, 2 * 10**5))
  for i, algorithm in enumerate(("q", "psi", "g", "ppo", "rloo")):
    for j, c in enumerate(("0.5", "1", "2", "10")):
      _write_figure2(tmp_path / f"c{c}" / algorithm / "figure2.csv", steps,
                     i + j / 4)
  assert len(report.plot_figure2(str(tmp_path))) == 4
  _assert_nothing_cut(checked, 4)


MELODY = [14, 1, 1, 1, 18, 0, 21, 1, 30, 1, 0, 0, 2, 1, 37, 1] * 2


def test_piano_roll_and_samples(tmp_path, checked):
  samples.piano_roll_png(MELODY, str(tmp_path / "one.png"),
                         title="rloo_c0.5-seed2 #4")
  _assert_nothing_cut(checked, 1)


def test_piano_rolls_of_several_models(tmp_path, checked):
  melodies = {"note_rnn": MELODY, "q": [0] * 32, "psi_c0.5-seed3": [16] * 32,
              "rl_only": [37, 1] * 16, "ppo": MELODY[::-1]}
  path = samples.piano_rolls_png(melodies, str(tmp_path / "rolls.png"))
  assert open(path, "rb").read(4) == b"\x89PNG"
  _assert_nothing_cut(checked, 1)


def test_piano_rolls_read_the_first_melody_of_each_group(tmp_path, checked):
  eval_dir = tmp_path / "evaluation"
  results = {}
  for name, kind, first in (("q_seed1", "q", 20), ("note_rnn", "note_rnn", 14),
                            ("q", "q", 16), ("g", "g", 18)):
    (eval_dir / name).mkdir(parents=True)
    melodies = np.full((3, 32), 1, np.int32)
    melodies[:, 0] = [first, first + 1, first + 2]
    np.save(eval_dir / name / "melodies.npy", melodies)
    results[name] = {"kind": kind}
  path = report.write_piano_rolls(str(eval_dir), results)
  assert path == str(eval_dir / report.PIANO_ROLLS)
  assert report.piano_roll_models(results) == ["note_rnn", "q", "g"]
  _assert_nothing_cut(checked, 1)
  assert report.write_piano_rolls(str(tmp_path / "none"), {}) is None


def _stats(offset):
  return {key: {"mean": offset + i / 10, "ci95": 0.01}
          for i, key in enumerate(seeds.STATISTICS)}


def test_sweep(tmp_path, checked):
  curves = {kind: [(c, _stats(i)) for c in (0.5, 1, 2, 10)]
            for i, kind in enumerate(("q", "psi", "g", "ppo", "rloo"))}
  seeds.plot_sweep(curves, str(tmp_path / "sweep_c.png"))
  _assert_nothing_cut(checked, 1)


def test_listening_study_figure3(tmp_path, checked):
  models = ["note_rnn", "q", "psi", "g", "rl_only", "ppo", "rloo"]
  per_model = {m: {"comparisons": 48, "wins": 5 + 4 * i, "win_std": 3.0}
               for i, m in enumerate(models)}
  analysis.plot_figure3({"models": models, "per_model": per_model},
                        str(tmp_path / "figure3.png"))
  _assert_nothing_cut(checked, 1)


def test_report_lays_figures_out_in_a_captioned_grid(tmp_path, timed):
  run_dir = tmp_path / "run"
  steps = [0, 500, 1000]
  for i, algorithm in enumerate(("q", "psi")):
    _write_figure2(run_dir / algorithm / "figure2.csv", steps, i)
  eval_dir = run_dir / "evaluation"
  results = {}
  for name in ("note_rnn", "q", "psi"):
    melodies = np.array([MELODY, MELODY[::-1]], np.int32)
    (eval_dir / name).mkdir(parents=True)
    np.save(eval_dir / name / "melodies.npy", melodies)
    samples.write_samples(melodies, str(eval_dir / name / "samples"), 1,
                          prefix=name)
    stats = table1.compute_table1(melodies)
    stats["kind"] = name
    results[name] = stats
    with open(eval_dir / name / "table1.json", "w") as f:
      json.dump(table1.to_json_ready(stats), f)
  report.write_piano_rolls(str(eval_dir), results)
  page = open(report.write_report(str(run_dir))).read()
  assert "display:grid" in page and "auto-fit" in page
  images = page.count("<img ")
  assert images == 4 + 1 + 3  # Figure 2, the piano rolls, a sample each
  assert page.count("<figure") == images
  captions = re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)
  assert len(captions) == images and all(c.strip() for c in captions)
  assert all("\n" not in c for c in captions)  # one line each
  assert page.count("<table") == page.count("<div class='scroll'><table")
  samples_at = page.index("<h2>Samples</h2>")
  assert page.index("pianorolls.png") > samples_at
  assert page.index("pianorolls.png") < page.index("<h3>note_rnn</h3>")


def test_beyond_rules_densities(tmp_path, checked):
  grid = np.linspace(0, 10, 50)

  def density(shift):
    return np.exp(-(grid - shift) ** 2).tolist()
  floor = {"yl_densities": {k: {"grid": grid.tolist(),
                                "reference_intra": density(3),
                                "inter": density(3.2)}
                            for k in beyond_rules.YL_FEATURES}}
  models = {m: {"yl_densities": {k: {"grid": grid.tolist(),
                                     "inter": density(3 + i)}
                                 for k in beyond_rules.YL_FEATURES}}
            for i, m in enumerate(["note_rnn", "q", "psi", "g", "ppo",
                                   "rloo"])}
  beyond_rules.plot_densities(floor, models, str(tmp_path / "d.png"))
  _assert_nothing_cut(checked, 1)


def test_beyond_rules_against_the_rules(tmp_path, checked):
  points = [(kind, f"c{c:g}", [2.5 - c / 4 + i, 2.4 - c / 4 + i],
             {"frechet_note_rnn": [4 + c - i, 4.2 + c - i],
              "classifier_accuracy": [0.99 - c / 50, 0.98 - c / 50]})
            for i, kind in enumerate(("q", "psi", "g", "ppo", "rloo"))
            for c in (0.5, 1, 2, 10)]
  beyond_rules.plot_rules_against_realism(
      points, {"frechet_note_rnn": 0.1, "classifier_accuracy": 0.55},
      str(tmp_path / "vs.png"))
  _assert_nothing_cut(checked, 1)
