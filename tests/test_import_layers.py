"""The packages import one way: data_pipeline < rl_tuner_tf < export <
listening_study (a package may import those below it, never above), and no
module imports itself back through others at import time.

Every import statement counts, also those inside functions, because a lazy
import that runs upward still ties the lower package to the upper one.
"""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ("data_pipeline", "rl_tuner_tf", "export", "listening_study")


def _modules():
  """{module name: path} of every module of the layered packages."""
  out = {}
  for package in LAYERS:
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
          out[module.removesuffix(".__init__")] = path
  return out


def _imports(path, module, known, top_level_only):
  """Modules of ``known`` that ``path`` imports (absolute and relative)."""
  tree = ast.parse(open(path, encoding="utf-8").read(), path)
  nodes = tree.body if top_level_only else ast.walk(tree)
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  found = set()
  for node in nodes:
    names = []
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      names = [f"{base}.{a.name}" for a in node.names] + [base]
    for name in names:
      while name and name not in known:  # 'pkg.mod.Class' -> 'pkg.mod'
        name = name.rpartition(".")[0]
      if name and name != module:
        found.add(name)
  return found


def _layer(module):
  return LAYERS.index(module.split(".")[0])


def test_no_package_imports_a_package_above_it():
  known = _modules()
  upward = [f"{m} imports {i}"
            for m, path in sorted(known.items())
            for i in sorted(_imports(path, m, known, top_level_only=False))
            if _layer(i) > _layer(m)]
  assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_no_import_cycle_at_import_time():
  known = _modules()
  graph = {m: _imports(p, m, known, top_level_only=True)
           for m, p in known.items()}
  # A package's __init__ is imported by its submodules' import anyway.
  for m in graph:
    graph[m] = {i for i in graph[m] if not m.startswith(i + ".")}
  state, cycles = {}, []

  def visit(node, stack):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
      elif nxt not in state:
        visit(nxt, stack)
    stack.pop()
    state[node] = "done"

  for module in sorted(graph):
    if module not in state:
      visit(module, [])
  assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_walk_sees_an_upward_and_a_circular_import(tmp_path):
  """The walker itself: a planted upward import and a planted cycle are
  found (so the two tests above can fail)."""
  a = tmp_path / "a.py"
  a.write_text("import os\nfrom rl_tuner_tf import note_rnn\n"
               "def f():\n  from export import exporter\n")
  known = {"rl_tuner_tf.note_rnn": "", "export.exporter": "",
           "data_pipeline.a": str(a)}
  assert _imports(str(a), "data_pipeline.a", known, False) == {
      "rl_tuner_tf.note_rnn", "export.exporter"}
  assert _imports(str(a), "data_pipeline.a", known, True) == {
      "rl_tuner_tf.note_rnn"}
  b = tmp_path / "b.py"
  b.write_text("from . import c\n")
  known = {"export.b": str(b), "export.c": ""}
  assert _imports(str(b), "export.b", known, True) == {"export.c"}


@pytest.mark.parametrize("module", ["data_pipeline.beam_pipeline",
                                    "data_pipeline.convert",
                                    "data_pipeline.tfrecord_format",
                                    "data_pipeline.atomic_files",
                                    "data_pipeline.run_lock"])
def test_beam_worker_and_infrastructure_modules_import_no_tensorflow(module):
  code = (f"import sys, {module}; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'rl_tuner_tf', 'export', 'listening_study')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                       capture_output=True, text=True).stdout
  assert out.strip().splitlines()[-1] == "[]"


def test_absl_flags_are_read_only_by_command_line_modules():
  """A module that names absl's FLAGS is a program (it has a __main__
  block); the library takes configuration values."""
  readers = []
  for module, path in sorted(_modules().items()):
    text = open(path, encoding="utf-8").read()
    if "FLAGS" in text and 'if __name__ == "__main__"' not in text:
      readers.append(module)
  assert not readers, f"library modules reading absl FLAGS: {readers}"


def _project_modules():
  """Every module of the four packages, relative to the checkout."""
  for package in ("data_pipeline", "rl_tuner_tf", "export", "listening_study"):
    for folder, _, names in os.walk(os.path.join(ROOT, package)):
      for name in sorted(names):
        if name.endswith(".py"):
          yield os.path.relpath(os.path.join(folder, name), ROOT)


def test_public_functions_are_typed():
  """Every public function and method (top level of a module, or of a
  public class) of the project's packages has annotated arguments and
  return value."""
  untyped = []
  modules = list(_project_modules())
  assert len(modules) > 80
  for relative in modules:
    tree = ast.parse(open(os.path.join(ROOT, relative), encoding="utf-8").read())
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    for node in tree.body:
      if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
        functions += [n for n in node.body if isinstance(n, ast.FunctionDef)]
    for fn in functions:
      if fn.name.startswith("_"):
        continue
      arguments = [a for a in fn.args.args + fn.args.kwonlyargs
                   if a.arg not in ("self", "cls")]
      if fn.returns is None or any(a.annotation is None for a in arguments):
        untyped.append(f"{relative}:{fn.lineno} {fn.name}")
  assert not untyped, "untyped public functions:\n" + "\n".join(untyped)
