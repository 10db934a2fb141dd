"""Presets: the paper's text, and what the authors' code actually ran.

Each preset is a file here, ``<name>.json``, in the form of a run's
``config.json``: {setting: value} for every tuning setting
(``tuning.TuningConfig``), plus ``"preset": <name>``. A preset is values,
nothing else: ``--preset=magenta`` is the same as ``--config`` of this file,
and flags given on the command line override it.

  paper    (default) the paper's text: c 0.5, gamma 0.5, epsilon-greedy, a
           fixed prior, rules reading tokens as the Note RNN was trained,
           the exact update schedule (one minibatch of 32 every 5 notes),
           Figure 2's mean r_MT per note. The TuningConfig defaults.
  magenta  what magenta's rl_tuner_train.py ran with rl_tuner.py (reference
           section 9): reward_scaler 0.1 (c 10), discount 0.5 (0.95 is only
           the class default), Boltzmann exploration storing the argmax in
           replay while the sampled note is played, G-learning training the
           prior through its target, rules reading tokens 0/1 swapped (its
           Note RNN's hold is 0), Figure 2's r_MT from each melody's last note.
"""
import json
import os
from typing import Any, Dict, Tuple

PRESET_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PRESET = "paper"


def names() -> Tuple[str, ...]:
  """The presets shipped with the package."""
  return tuple(sorted(f[:-len(".json")] for f in os.listdir(PRESET_DIR)
                      if f.endswith(".json")))


def path(name: str) -> str:
  """The file of preset ``name``; ValueError naming the known ones."""
  if name not in names():
    raise ValueError(f"must be one of {', '.join(names())} (got {name!r})")
  return os.path.join(PRESET_DIR, f"{name}.json")


def settings(name: str) -> Dict[str, Any]:
  """{setting: value} of preset ``name`` (its "preset" key left out)."""
  with open(path(name), encoding="utf-8") as f:
    values = json.load(f)
  values.pop("preset", None)
  return values
