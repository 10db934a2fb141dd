"""Loading a melody model and writing its exports (library part of
``python -m export.saved_model``; no flags, so tests and benchmarks import it).

  load_source          tuned model dir | Note RNN checkpoint (default: shipped)
  export_serving_model MelodyGenerator -> <model_base_path>/<version>/
  export_all           both exports (TF Serving + TF-Agents PolicySaver)
"""
import contextlib
import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import tensorflow as tf

from data_pipeline import run_lock
from export import melody_generator
from export import versioning
from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn

EXPORT_INFO = "export_info.json"
TFAGENTS_SUFFIX = "_tfagents_policy"


def load_source(tuned_model_dir: Optional[str] = None,
                note_rnn_checkpoint: Optional[str] = None
                ) -> Tuple[str, note_rnn.NoteRNN, Optional[note_rnn.NoteRNN],
                           Dict[str, Any]]:
  """-> (kind, reward_rnn, q_network or None, provenance dict)."""
  if tuned_model_dir and note_rnn_checkpoint:
    raise ValueError("give a tuned model dir or a Note RNN checkpoint, not both "
                     "(--tuned_model_dir / --note_rnn_checkpoint)")
  if tuned_model_dir:
    algorithm, q_network, reward_rnn, config = melody_policy.load_tuned(tuned_model_dir)
    return algorithm, reward_rnn, q_network, {
        "source": os.path.abspath(tuned_model_dir), "tuned_config": config}
  directory = note_rnn_checkpoint or note_rnn.SHIPPED_CHECKPOINT_DIR
  return "note_rnn", note_rnn.load(directory), None, {
      "source": os.path.abspath(directory)}


def export_serving_model(generator: melody_generator.MelodyGenerator,
                         model_base_path: str,
                         provenance: Optional[Mapping[str, Any]] = None
                         ) -> Tuple[int, str]:
  """Writes a new TF Serving version of ``generator`` -> (version, path)."""
  signatures = generator.signatures()
  info = {
      "kind": generator.kind,
      "max_steps": generator.max_steps,
      "max_batch": generator.max_batch,
      "random_note_max": generator.random_note_max,
      "state_names": list(generator.state_names),
      "signatures": sorted(signatures),
      "tensorflow_version": tf.__version__,
  }
  info.update(provenance or {})

  def write(directory):
    tf.saved_model.save(generator, directory, signatures=signatures)
    with open(os.path.join(directory, EXPORT_INFO), "w") as f:
      json.dump(info, f, indent=2)

  return versioning.save_new_version(model_base_path, write)


def export_all(model_base_path: str, tuned_model_dir: Optional[str] = None,
               note_rnn_checkpoint: Optional[str] = None,
               max_steps: int = melody_generator.DEFAULT_MAX_STEPS,
               max_batch: int = melody_generator.DEFAULT_MAX_BATCH,
               random_note_max: int = melody_generator.DEFAULT_RANDOM_NOTE_MAX,
               export_tfagents_policy: bool = True,
               tfagents_policy_base_path: Optional[str] = None,
               tfagents_greedy: bool = False,
               tfagents_temperature: float = 1.0,
               log: Callable[[str], Any] = lambda message: None
               ) -> Dict[str, Tuple[int, str]]:
  """Both exports, each reported to ``log`` as it starts and once published.
  Returns {"serving": (version, path), "tfagents_policy": ...}."""
  if not model_base_path:
    raise ValueError("model_base_path is required")
  kind, reward_rnn, q_network, provenance = load_source(
      tuned_model_dir, note_rnn_checkpoint)
  generator = melody_generator.MelodyGenerator(
      kind, reward_rnn, q_network, max_steps=max_steps, max_batch=max_batch,
      random_note_max=random_note_max)
  base = tfagents_policy_base_path or (
      model_base_path.rstrip(os.sep) + TFAGENTS_SUFFIX)
  # One export at a time per base path; leftovers of killed ones are removed.
  with contextlib.ExitStack() as locks:
    for path in [model_base_path] + ([base] if export_tfagents_policy else []):
      locks.enter_context(run_lock.hold(path))
      versioning.remove_abandoned_exports(path)
    log(f"serving: exporting the {kind} model under {model_base_path}")
    results = {"serving": export_serving_model(generator, model_base_path,
                                               provenance)}
    log("serving: version {} -> {}".format(*results["serving"]))
    if export_tfagents_policy:
      log(f"tfagents_policy: exporting the TF-Agents policy under {base}")
      # Imported here: TF-Agents (and TFP) take seconds to import and only
      # this export needs them.
      from export import tfagents_policy  # pylint: disable=g-import-not-at-top
      policy = tfagents_policy.build_policy(
          kind, reward_rnn, q_network, greedy=tfagents_greedy,
          temperature=tfagents_temperature)
      results["tfagents_policy"] = tfagents_policy.save_policy(policy, base)
      log("tfagents_policy: version {} -> {}".format(
          *results["tfagents_policy"]))
  return results
