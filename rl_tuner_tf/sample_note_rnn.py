r"""Melodies from the Note RNN alone, written as MIDI.

    python -m rl_tuner_tf.sample_note_rnn                       # shipped model
    python -m rl_tuner_tf.sample_note_rnn --primer_note=67 --temperature=0.8 \
        --num_melodies=4 --num_steps=128 --output_dir=/tmp/samples
    python -m rl_tuner_tf.sample_note_rnn --primer_midi=tune.mid \
        --checkpoint_dir=runs/note_rnn/export

Each melody is the primer followed by `num_steps` sampled 16th-note steps:
the primer (one note, or the first melody of a MIDI file) is run through the
LSTM, then every step draws the next class from softmax(logits / temperature)
(temperature 0: argmax) and feeds it back: rl_tuner_tf/compose.py's loop and
random scheme, so a seed gives what the evaluation and the exported
SavedModel give for the same primer.
"""
import dataclasses
import os
import sys
from typing import (TYPE_CHECKING, Any, Callable, List, Optional, Sequence,
                    Tuple, Union)

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
import numpy as np
import tensorflow as tf

from data_pipeline import encoding
from rl_tuner_tf import compose
from rl_tuner_tf import configuration
from rl_tuner_tf import note_rnn

if TYPE_CHECKING:
  from absl import flags


class NoteRNNSampler:
  """Batched sampling from a NoteRNN: compose.py's loop and random scheme,
  the same as the evaluation's and the exported SavedModel's."""

  def __init__(self, model):
    self.model = model
    self._sample = tf.function(self._sample_impl)

  def _sample_impl(self, primers, num_steps, temperature, seed):
    model = self.model

    def step(previous, state):
      logits, state = model.step(previous, state)
      return logits, logits, state

    out = compose.compose(step, primers, num_steps, temperature, seed,
                          model.zero_state(tf.shape(primers)[0]),
                          with_log_pi=False)
    return out["tokens"]  # [B, num_steps]

  def sample(self, primers: Union[np.ndarray, Sequence[Sequence[int]]],
             num_steps: int, temperature: float = 1.0,
             seed: int = 0) -> np.ndarray:
    """primers int [B, P] (P >= 1) -> sampled int32 [B, num_steps] (no primer).

    temperature > 0 samples softmax(logits / temperature); 0 takes the argmax.
    """
    primers = tf.convert_to_tensor(np.asarray(primers, np.int32))
    if primers.shape.rank != 2 or primers.shape[1] < 1:
      raise ValueError(f"primers must be [batch, length >= 1], got {primers.shape}")
    values = primers.numpy()
    if values.min() < 0 or values.max() >= encoding.NUM_CLASSES:
      raise ValueError(f"primer classes must be in 0..{encoding.NUM_CLASSES - 1}")
    if num_steps < 1:
      raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not temperature >= 0:
      raise ValueError(f"temperature must be >= 0, got {temperature}")
    return self._sample(primers, tf.constant(num_steps, tf.int32),
                        tf.constant(temperature, tf.float32),
                        tf.constant(seed, tf.int64)).numpy()


def note_primer(pitch: int) -> np.ndarray:
  """A one-step primer: MIDI pitch -> [class]."""
  if not encoding.MIN_PITCH <= pitch <= encoding.MAX_PITCH:
    raise ValueError(f"--primer_note must be a MIDI pitch in "
                     f"{encoding.MIN_PITCH}..{encoding.MAX_PITCH}, got {pitch}")
  return np.array([int(encoding.pitch_to_class(pitch))], np.int32)


def midi_primer(path: str, max_steps: int = 0) -> np.ndarray:
  """First melody of a MIDI file, optionally cut to `max_steps`.

  Uses the data pipeline's extraction (so the primer is transposed to C major
  / A minor like the training data) without its corpus filters on length and
  pitch variety: any primer with one note works.
  """
  from data_pipeline import convert  # pylint: disable=g-import-not-at-top
  from data_pipeline import melodies as melodies_lib  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--primer_midi {path!r} does not exist")
  config = melodies_lib.MelodyConfig(min_bars=0, min_unique_pitches=1,
                                     max_steps=0)
  melodies = convert.midi_file_to_melodies(path, config)
  tokens = np.asarray(melodies[0], np.int32)
  return tokens[:max_steps] if max_steps else tokens


def write_midi(melodies: Union[np.ndarray, Sequence[Sequence[int]]],
               output_dir: str, qpm: float = encoding.DEFAULT_QPM,
               prefix: str = "note_rnn") -> List[str]:
  """Writes each token melody to output_dir/prefix_NN.mid; returns the paths."""
  from data_pipeline import convert  # pylint: disable=g-import-not-at-top
  os.makedirs(output_dir, exist_ok=True)
  paths = []
  for i, tokens in enumerate(melodies):
    path = os.path.join(output_dir, f"{prefix}_{i:02d}.mid")
    convert.tokens_to_midi_file(np.asarray(tokens), path, qpm=qpm)
    paths.append(path)
  return paths


_setting = configuration.setting


@dataclasses.dataclass(frozen=True)
class SampleConfig(configuration.Values):
  """What ``python -m rl_tuner_tf.sample_note_rnn`` samples (its flags)."""
  checkpoint_dir: str = _setting(
      note_rnn.SHIPPED_CHECKPOINT_DIR, "Note RNN folder written by "
      "note_rnn.save (default: the shipped checkpoint).")
  layer_sizes: Optional[Tuple[int, ...]] = _setting(
      None, "Expected layer sizes, e.g. 64,64 (default: the checkpoint's); a "
      "mismatch is an error.", check=configuration.optional(
          configuration.positive_ints))
  primer_note: int = _setting(
      60, "Primer MIDI pitch (48..83).",
      check=configuration.in_range(encoding.MIN_PITCH, encoding.MAX_PITCH))
  primer_midi: Optional[str] = _setting(
      None, "Primer MIDI file (its first melody); overrides --primer_note.")
  primer_steps: int = _setting(
      0, "Use at most this many steps of --primer_midi (0: all).",
      check=configuration.at_least(0))
  num_melodies: int = _setting(4, "Melodies to sample.",
                               check=configuration.positive_int)
  num_steps: int = _setting(64, "Steps to sample after the primer.",
                            check=configuration.positive_int)
  temperature: float = _setting(1.0, "Softmax temperature (0: argmax).",
                                check=configuration.non_negative)
  seed: int = _setting(0, "Sampling seed.")
  qpm: float = _setting(encoding.DEFAULT_QPM, "Tempo of the MIDI files.",
                        check=configuration.positive)
  output_dir: str = _setting(os.path.join("runs", "note_rnn_samples"),
                             "Where the MIDI files go.")


def sample(config: SampleConfig,
           log: Callable[[str], Any] = print) -> List[str]:
  """Samples config.num_melodies melodies after the primer and writes them
  as MIDI; returns the paths."""
  primer = (midi_primer(config.primer_midi, config.primer_steps)
            if config.primer_midi else note_primer(config.primer_note))
  model = note_rnn.load(config.checkpoint_dir, layer_sizes=config.layer_sizes)
  primers = np.tile(primer[np.newaxis], [config.num_melodies, 1])
  sampled = NoteRNNSampler(model).sample(primers, config.num_steps,
                                         config.temperature, config.seed)
  melodies = np.concatenate([primers, sampled], axis=1)
  paths = write_midi(melodies, config.output_dir, qpm=config.qpm)
  for path, tokens in zip(paths, melodies):
    log(f"{path}: {' '.join(map(str, tokens))}")
  return paths


def define_flags(flag_values: Optional["flags.FlagValues"] = None
                 ) -> "flags.FlagValues":
  """One flag per SampleConfig field, on ``flag_values`` (default FLAGS)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flag_values if flag_values is not None else flags.FLAGS
  configuration.define_flags(SampleConfig, flag_values)
  return flag_values


def main(argv: List[str],
         flag_values: Optional["flags.FlagValues"] = None) -> None:
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from data_pipeline import convert  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  flag_values = flag_values if flag_values is not None else flags.FLAGS
  try:
    config = SampleConfig.from_flags(flag_values)
  except configuration.ConfigError as e:
    raise app.UsageError(str(e)) from None
  try:
    sample(config)
  except (ValueError, FileNotFoundError, convert.UnusableFileError) as e:
    # (ValueError includes note_rnn.CheckpointMismatchError)
    print(f"ERROR: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  from data_pipeline import console  # pylint: disable=g-import-not-at-top
  define_flags()
  console.run(main)
