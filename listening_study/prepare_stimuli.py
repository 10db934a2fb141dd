r"""Renders a run's listening-study stimuli.

  python -m listening_study.prepare_stimuli --run_dir=runs/paper --per_model=12
  python -m listening_study.prepare_stimuli --run_dir=runs/paper \
      --design=preferences --per_model=500 --render=on_demand \
      --models=note_rnn,q,psi,g,rl_only,ppo,rloo

Reads <run>/evaluation/<model>/melodies.npy, picks --per_model melodies per
model (seeded; all-rest melodies are skipped and counted in the manifest),
writes <run>/listening_study/stimuli/{audio/<id>.wav, midi/<id>.mid,
manifest.json}.  The manifest (id -> model) is private: the server never
serves it.  --design=preferences makes a preference-collection study (pairs
drawn at random from the whole pool: stimuli.py, design.py); --render=
on_demand writes only the manifest and lets the server render each clip the
first time it is asked for (for pools of thousands of melodies).
"""
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from absl import flags
from data_pipeline import console

import listening_study
from listening_study import stimuli

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("run_dir", None, "Run directory (with evaluation/).")
  flags.DEFINE_string("study_dir", None,
                      "Study directory; default <run_dir>/listening_study.")
  flags.DEFINE_integer("per_model", 12, "Melodies per model.")
  flags.DEFINE_integer("seed", 0, "Seed of the choice of melodies.")
  flags.DEFINE_list("models", None, "Models to include; default the paper's "
                    "four (note_rnn,q,psi,g) where present, else all found.")
  flags.DEFINE_string("soundfont", None, "General MIDI .sf2; default the first "
                      f"of {', '.join(stimuli.SOUNDFONT_CANDIDATES)}.")
  flags.DEFINE_bool("force", False, "Replace existing stimuli.")
  define_design_flags()
  flags.mark_flag_as_required("run_dir")


def define_design_flags() -> None:
  """--design and --render (here and in serve, which renders if missing)."""
  flags.DEFINE_enum("design", "figure3", stimuli.DESIGNS,
                    "figure3: the paper's study (participants rate model "
                    "pairs); preferences: participants rate pairs drawn at "
                    "random from the whole pool (use a large --per_model).")
  flags.DEFINE_enum("render", "ahead", stimuli.RENDER_MODES,
                    "ahead: render every clip now; on_demand: the server "
                    "renders each clip the first time it is asked for.")


def prepare_if_missing(run_dir: str, study: str, per_model: int,
                       seed: int = 0, models: Optional[Sequence[str]] = None,
                       soundfont: Optional[str] = None,
                       force: bool = False, design: str = "figure3",
                       render_mode: str = "ahead") -> Dict[str, Any]:
  out = listening_study.stimuli_dir(study)
  if not force and os.path.isfile(os.path.join(out, stimuli.MANIFEST)):
    print(f"stimuli already in {out} (use --force to replace)")
    return stimuli.load_manifest(out)
  if force and os.path.isdir(out):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(out)
  manifest = stimuli.prepare(run_dir, out, per_model=per_model, seed=seed,
                             models=models, soundfont=soundfont, design=design,
                             render_mode=render_mode)
  how = ("rendered" if render_mode == "ahead" else
         "to be rendered on demand")
  print(f"{len(manifest['stimuli'])} stimuli ({per_model} per model: "
        f"{', '.join(manifest['models'])}; design {design}) {how} with "
        f"{manifest['renderer']} into {out}; loudness: "
        f"{manifest['loudness']['method']}; all-rest melodies skipped: "
        f"{manifest['excluded_silent_melodies']}")
  return manifest


def main(argv: List[str]) -> None:
  del argv
  if not os.path.isdir(FLAGS.run_dir):
    sys.exit(f"--run_dir: no directory {FLAGS.run_dir!r}")
  study = FLAGS.study_dir or listening_study.study_dir(FLAGS.run_dir)
  try:
    prepare_if_missing(FLAGS.run_dir, study, FLAGS.per_model, FLAGS.seed,
                       FLAGS.models, FLAGS.soundfont, FLAGS.force,
                       FLAGS.design, FLAGS.render)
  except stimuli.StimuliError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  define_flags()
  console.run(main)
