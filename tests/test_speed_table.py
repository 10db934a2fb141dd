"""Benchmark figures as data: the shared writer (benchmarks/results_io.py)
writes the documented format, benchmarks/speed_table.py renders it, and
docs/speed.md holds exactly the table generated from the committed
benchmarks/results/*.json. No benchmark runs."""
import json
import os
import re
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCHMARKS)

import results_io  # noqa: E402  pylint: disable=wrong-import-position
import speed_table  # noqa: E402  pylint: disable=wrong-import-position

PAGE = f"# Speed\n\nText.\n\n{speed_table.START}\nold\n{speed_table.END}\n"


def _write_result(directory, name, rows, argv, load=0.5):
  return results_io.write(name, rows, argv, str(directory), load_at_start=load)


def test_writer_writes_the_documented_fields(tmp_path):
  path = _write_result(tmp_path, "tuning", [
      results_io.row("q: combined loop", 1234.5, "notes/s"),
      results_io.row("q: full default run, estimated", 512.0, "s",
                     target="<= 600 s", note="1,000,000 notes"),
  ], [os.path.join(BENCHMARKS, "bench_tuning.py"), "--algorithms=q"])
  assert path == str(tmp_path / "tuning.json")
  assert not [n for n in os.listdir(tmp_path) if n != "tuning.json"]
  with open(path, encoding="utf-8") as f:
    result = json.load(f)
  assert list(result) == list(results_io.FIELDS)
  assert result["benchmark"] == "tuning"
  assert result["command"] == ("python benchmarks/bench_tuning.py "
                               "--algorithms=q")
  assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["date"])
  machine = result["machine"]
  assert list(machine) == list(results_io.MACHINE_FIELDS)
  assert machine["cores"] == os.cpu_count()
  assert machine["load_average_1m_at_start"] == 0.5
  assert isinstance(machine["load_average_1m_at_end"], float)
  assert machine["python"].count(".") == 2
  assert machine["gpu"] is None or all(machine["gpu"])
  assert result["rows"] == [
      {"what": "q: combined loop", "value": 1234.5, "unit": "notes/s"},
      {"what": "q: full default run, estimated", "value": 512.0, "unit": "s",
       "target": "<= 600 s", "note": "1,000,000 notes"}]


def test_writer_quotes_arguments_and_refuses_non_figures(tmp_path):
  rows = [results_io.row("steps", np.float64(12.3456789), "steps/s"),
          results_io.row("lost", np.int64(0), "ratings")]
  _write_result(tmp_path, "note_rnn", rows,
                ["benchmarks/bench_note_rnn.py", "--layer_sizes=100;64,64"])
  with open(tmp_path / "note_rnn.json", encoding="utf-8") as f:
    result = json.load(f)
  assert result["command"] == (
      "python benchmarks/bench_note_rnn.py '--layer_sizes=100;64,64'")
  assert [r["value"] for r in result["rows"]] == [12.3457, 0]
  for bad in ([], [results_io.row("x", float("nan"), "s")],
              [results_io.row("x", "fast", "s")], [{"what": "x", "value": 1}]):
    with pytest.raises(ValueError):
      _write_result(tmp_path, "bad", bad, ["bench_bad.py"])
  assert not os.path.exists(tmp_path / "bad.json")


def test_table_renders_each_row_with_its_benchmark(tmp_path):
  results = tmp_path / "results"
  _write_result(results, "export", [
      results_io.row("exported SavedModel, batch 1: median latency", 3.25,
                     "ms", target="<= 10 ms"),
      results_io.row("speed-up over the unfused loop, batch 1", 2.5,
                     "ratio")], ["benchmarks/bench_export.py", "--repeats=5"])
  _write_result(results, "tuning", [
      results_io.row("q: combined loop", 12345.6, "notes/s", note="B 400")],
                ["benchmarks/bench_tuning.py", "--algorithms=q"])
  lines = speed_table.table_lines(speed_table.load_all(str(results)))
  assert lines[:2] == [speed_table.HEADER, speed_table.SEPARATOR]
  export_first, export_second, tuning = lines[2:]
  assert export_first.startswith(
      "| export | exported SavedModel, batch 1: median latency | 3.25 ms | "
      "<= 10 ms | ")
  assert "`python benchmarks/bench_export.py --repeats=5` |" in export_first
  assert export_second == ("|  | speed-up over the unfused loop, batch 1 | "
                           "2.50 ratio |  |  |  |  |")
  assert tuning.startswith("| tuning | q: combined loop — B 400 | "
                           "12,346 notes/s |  | ")
  assert f"{os.cpu_count()} cores, load 0.50 -> " in tuning
  assert "`python benchmarks/bench_tuning.py --algorithms=q` |" in tuning

  docs = tmp_path / "speed.md"
  docs.write_text(PAGE, encoding="utf-8")
  assert speed_table.check(str(results), str(docs)) is not None
  assert speed_table.main(["--check", f"--results_dir={results}",
                           f"--docs={docs}"]) == 1
  assert speed_table.main([f"--results_dir={results}", f"--docs={docs}"]) == 0
  page = docs.read_text(encoding="utf-8")
  assert page.startswith("# Speed\n\nText.\n\n")
  assert "\n".join(lines) in page and "old" not in page
  assert speed_table.check(str(results), str(docs)) is None


def test_a_results_file_without_a_field_is_named(tmp_path):
  _write_result(tmp_path, "evaluate", [results_io.row("q", 1.0, "s")],
                ["benchmarks/bench_evaluate.py"])
  path = tmp_path / "evaluate.json"
  result = json.loads(path.read_text(encoding="utf-8"))
  del result["machine"]["cpu"]
  path.write_text(json.dumps(result), encoding="utf-8")
  with pytest.raises(speed_table.ResultsError,
                     match=r"evaluate\.json: missing field 'machine\.cpu'"):
    speed_table.load_all(str(tmp_path))
  del result["rows"][0]["unit"]
  result["machine"]["cpu"] = "x"
  path.write_text(json.dumps(result), encoding="utf-8")
  with pytest.raises(speed_table.ResultsError,
                     match=r"evaluate\.json: missing field 'rows\[0\]\.unit'"):
    speed_table.load_all(str(tmp_path))


def test_no_results_give_the_header_only(tmp_path):
  assert speed_table.table_lines(
      speed_table.load_all(str(tmp_path / "none"))) == [
          speed_table.HEADER, speed_table.SEPARATOR]


def test_docs_speed_page_is_generated_from_the_committed_results():
  message = speed_table.check()
  assert message is None, message


@pytest.mark.parametrize("script", sorted(
    n for n in os.listdir(BENCHMARKS)
    if n.startswith("bench_") and n.endswith(".py")))
def test_every_benchmark_writes_its_figures_under_its_name(script):
  with open(os.path.join(BENCHMARKS, script), encoding="utf-8") as f:
    source = f.read()
  name = script[len("bench_"):-len(".py")]
  # Its results file is named after it (a benchmark may add a suffix per
  # configuration, as the listening study's does per database).
  assert re.search(r"results_io\.write\(", source), script
  assert f'"{name}"' in source, script
  assert re.search(r"results_io\.(add_argument|define_flag)\(", source), script
