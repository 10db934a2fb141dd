"""Every command line of the tuning, evaluation, Note RNN training and sampling jobs
written in the README, WORKSPACE.md and docs/ still parses: its flags exist
(renamed ones kept as aliases) and the tuning settings it gives resolve to
a valid configuration. Nothing runs."""
import glob
import os
import re
import shlex

from absl import flags
import pytest

from rl_tuner_tf import evaluate
from rl_tuner_tf import sample_note_rnn
from rl_tuner_tf import train
from rl_tuner_tf import train_note_rnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = {"rl_tuner_tf.train": train, "rl_tuner_tf.evaluate": evaluate,
           "rl_tuner_tf.train_note_rnn": train_note_rnn,
           "rl_tuner_tf.sample_note_rnn": sample_note_rnn}
_COMMAND = re.compile(r"python -m (rl_tuner_tf\.(?:train_note_rnn|train|"
                      r"evaluate|sample_note_rnn))\b([^`\n]*)")


def documented_commands():
  """(where, module name, argv) of every documented command of MODULES."""
  found = []
  paths = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "WORKSPACE.md")]
  paths += sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                            recursive=True))
  for path in paths:
    text = open(path, encoding="utf-8").read().replace("\\\n", " ")
    for number, line in enumerate(text.splitlines(), 1):
      for match in _COMMAND.finditer(line):
        rest = match.group(2).split("  #")[0].split(" # ")[0]
        rest = rest.replace("[", " ").replace("]", " ").replace("...", " ")
        rest = re.sub(r"<[^>]*>", "x", rest)
        argv = [a for a in shlex.split(rest) if a.startswith("--")]
        where = f"{os.path.relpath(path, ROOT)}:{number}"
        found.append((where, match.group(1), argv))
  return found


COMMANDS = documented_commands()


def test_the_documents_hold_commands_of_each_job():
  modules = {module for _, module, _ in COMMANDS}
  assert modules == set(MODULES), modules
  assert len(COMMANDS) > 20


@pytest.mark.parametrize("where,module,argv", COMMANDS,
                         ids=[c[0] for c in COMMANDS])
def test_documented_command_parses(where, module, argv):
  flag_values = flags.FlagValues()
  MODULES[module].define_flags(flag_values)
  flags.DEFINE_bool("verbose", False, "console.run's flag",
                    flag_values=flag_values)
  flag_values([module] + argv)
  if module == "rl_tuner_tf.train":
    preset, settings, dims = train.resolve(flag_values)
    for algorithm in dims["algorithm"]:
      for c in dims["c"]:
        train.tuning.TuningConfig.from_settings(dict(
            {k: v for k, v in settings.items()
             if k in train.tuning.TuningConfig.setting_names()},
            algorithm=algorithm, c=c))
    assert preset in ("paper", "magenta"), where
