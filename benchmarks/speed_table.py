r"""Rewrites the table of docs/speed.md from benchmarks/results/*.json.

    python benchmarks/speed_table.py            # regenerate the table
    python benchmarks/speed_table.py --check    # exit 1: docs/speed.md stale

Each benchmark writes its figures to benchmarks/results/<name>.json
(results_io.py); this script renders all of them as one Markdown table
between the markers ``<!-- speed-table:start -->`` and
``<!-- speed-table:end -->`` of docs/speed.md, leaving the rest of the page
alone. --check compares instead of writing (tests/test_speed_table.py runs
the same comparison), so the table in the docs is never typed by hand.
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results_io  # noqa: E402  pylint: disable=wrong-import-position
from data_pipeline import atomic_files  # noqa: E402  (results_io's path)

DEFAULT_DOCS = os.path.join(results_io.REPO, "docs", "speed.md")
START = "<!-- speed-table:start -->"
END = "<!-- speed-table:end -->"
HEADER = ("| benchmark | what | value unit | target | "
          "machine (cpu, cores, load) | date | how to rerun |")
SEPARATOR = "|---|---|---:|---|---|---|---|"


class ResultsError(ValueError):
  """A results file that is not in results_io's format (names the file)."""


def _require(mapping, fields, path, prefix=""):
  for field in fields:
    if field not in mapping:
      raise ResultsError(f"{path}: missing field '{prefix}{field}'")


def load(path):
  """Reads and checks one results file -> its dict; a ResultsError names
  the file and the first missing or malformed field."""
  try:
    with open(path, encoding="utf-8") as f:
      result = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ResultsError(f"{path}: not readable JSON ({e})") from e
  if not isinstance(result, dict):
    raise ResultsError(f"{path}: not a JSON object")
  _require(result, results_io.FIELDS, path)
  if not isinstance(result["machine"], dict):
    raise ResultsError(f"{path}: field 'machine' is not an object")
  _require(result["machine"], results_io.MACHINE_FIELDS, path, "machine.")
  if not isinstance(result["rows"], list) or not result["rows"]:
    raise ResultsError(f"{path}: field 'rows' is not a non-empty list")
  for i, r in enumerate(result["rows"]):
    if not isinstance(r, dict):
      raise ResultsError(f"{path}: rows[{i}] is not an object")
    _require(r, results_io.ROW_FIELDS, path, f"rows[{i}].")
  try:
    results_io.check_rows(result["rows"])
  except ValueError as e:
    raise ResultsError(f"{path}: {e}") from e
  return result


def load_all(results_dir):
  """Every ``<results_dir>/*.json``, sorted by file name (none if the
  folder does not exist yet)."""
  paths = sorted(glob.glob(os.path.join(glob.escape(results_dir), "*.json")))
  return [load(p) for p in paths]


def format_value(value):
  """A figure for reading: thousands separated, about 3 significant digits
  (the raw number stays in the JSON)."""
  if isinstance(value, int):
    return f"{value:,}"
  magnitude = abs(value)
  if magnitude >= 100:
    return f"{value:,.0f}"
  if magnitude >= 10:
    return f"{value:.1f}"
  if magnitude >= 1:
    return f"{value:.2f}"
  return f"{value:.3g}"


def _load_text(value):
  return "?" if value is None else f"{value:.2f}"


def format_machine(m):
  """"cpu, N cores, load a -> b" (+ the GPUs when there were any)."""
  text = (f"{m['cpu'] or 'unknown CPU'}, {m['cores']} cores, load "
          f"{_load_text(m['load_average_1m_at_start'])} -> "
          f"{_load_text(m['load_average_1m_at_end'])}")
  if m.get("gpu"):
    text += ", GPU " + " + ".join(m["gpu"])
  return text


def _cell(text):
  """Text safe inside a Markdown table cell."""
  return str(text).replace("|", "\\|").replace("\n", " ")


def table_lines(results):
  """The Markdown table of ``results`` (load_all's list): one line per
  row; a benchmark's name, machine, date and command on its first row."""
  lines = [HEADER, SEPARATOR]
  for result in results:
    for i, r in enumerate(result["rows"]):
      first = i == 0
      what = r["what"] + (f" — {r['note']}" if r.get("note") else "")
      cells = [
          _cell(result["benchmark"]) if first else "",
          _cell(what),
          _cell(f"{format_value(r['value'])} {r['unit']}"),
          _cell(r.get("target", "")),
          _cell(format_machine(result["machine"])) if first else "",
          _cell(result["date"]) if first else "",
          f"`{_cell(result['command'])}`" if first else "",
      ]
      lines.append("| " + " | ".join(cells) + " |")
  return lines


def with_table(page, lines, docs_path=DEFAULT_DOCS):
  """``page`` with the text between its markers replaced by ``lines``."""
  start, end = page.find(START), page.find(END)
  if start < 0 or end < start:
    raise ResultsError(f"{docs_path}: no '{START}' ... '{END}' markers")
  head = page[:start + len(START)]
  return head + "\n" + "\n".join(lines) + "\n" + page[end:]


def expected_page(results_dir=results_io.DEFAULT_DIR, docs_path=DEFAULT_DOCS):
  """(current text of docs_path, the text this script would write)."""
  with open(docs_path, encoding="utf-8") as f:
    page = f.read()
  return page, with_table(page, table_lines(load_all(results_dir)), docs_path)


def _shown(path):
  """A path for a message: relative to the checkout when inside it."""
  relative = os.path.relpath(os.path.abspath(path), results_io.REPO)
  return os.path.abspath(path) if relative.startswith("..") else relative


def check(results_dir=results_io.DEFAULT_DIR, docs_path=DEFAULT_DOCS):
  """None when docs_path holds the table of results_dir, else a message
  saying what to run."""
  page, expected = expected_page(results_dir, docs_path)
  if page == expected:
    return None
  command = "python benchmarks/speed_table.py"
  if os.path.abspath(results_dir) != results_io.DEFAULT_DIR:
    command += f" --results_dir={_shown(results_dir)}"
  if os.path.abspath(docs_path) != DEFAULT_DOCS:
    command += f" --docs={_shown(docs_path)}"
  return (f"{_shown(docs_path)} is out of date with "
          f"{_shown(results_dir)}/*.json; run: {command}")


def update(results_dir=results_io.DEFAULT_DIR, docs_path=DEFAULT_DOCS):
  """Rewrites docs_path's table (atomically) -> whether it changed."""
  page, expected = expected_page(results_dir, docs_path)
  if page != expected:
    atomic_files.write_text(docs_path, expected)
  return page != expected


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="exit 1 if the docs differ instead of writing")
  parser.add_argument("--results_dir", default=results_io.DEFAULT_DIR)
  parser.add_argument("--docs", default=DEFAULT_DOCS)
  args = parser.parse_args(argv)
  try:
    if args.check:
      message = check(args.results_dir, args.docs)
      if message:
        print(message, file=sys.stderr)
        return 1
      print(f"{args.docs} is up to date")
      return 0
    changed = update(args.results_dir, args.docs)
  except ResultsError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"{args.docs} {'rewritten' if changed else 'already up to date'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
