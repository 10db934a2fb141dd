"""Listening material: MIDI, WAV (note-seq's sine synthesiser) and piano-roll
PNGs of a few melodies per model, and one figure of a melody of each model."""
import os
from typing import (BinaryIO, Dict, List, Mapping, Optional, Sequence,
                    Tuple, TYPE_CHECKING, Union)
import wave

import numpy as np
import numpy.typing as npt

from data_pipeline import encoding

if TYPE_CHECKING:
  from note_seq.protobuf import music_pb2

SAMPLE_RATE = 16000


def melody_events(tokens: npt.ArrayLike) -> List[int]:
  """Class tokens -> note-seq Melody events (-1 note-off, -2 no-event, pitch)."""
  import note_seq  # pylint: disable=g-import-not-at-top
  events = []
  for token in np.asarray(tokens).tolist():
    if token == encoding.NOTE_OFF:
      events.append(note_seq.MELODY_NOTE_OFF)
    elif token == encoding.NO_EVENT:
      events.append(note_seq.MELODY_NO_EVENT)
    else:
      events.append(int(encoding.class_to_pitch(token)))
  return events


def melody_to_note_sequence(tokens: npt.ArrayLike,
                            qpm: float = encoding.DEFAULT_QPM,
                            velocity: int = 100) -> "music_pb2.NoteSequence":
  """A 16th-note-grid melody -> NoteSequence (a note lasts until the next
  note or note-off; no-event holds)."""
  import note_seq  # pylint: disable=g-import-not-at-top
  melody = note_seq.Melody(melody_events(tokens),
                           steps_per_quarter=encoding.STEPS_PER_QUARTER)
  return melody.to_sequence(velocity=velocity, qpm=qpm)


def write_wav(path: str, audio: npt.ArrayLike,
              sample_rate: int = SAMPLE_RATE) -> None:
  """Float audio in [-1, 1] (peak-normalised here) -> 16-bit mono WAV."""
  audio = np.asarray(audio, np.float64)
  peak = np.max(np.abs(audio)) if audio.size else 0.0
  if peak > 0:
    audio = 0.8 * audio / peak
  with wave.open(path, "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(sample_rate)
    f.writeframes((audio * 32767).astype("<i2").tobytes())


PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#",
               "B")


def _roll(tokens: npt.ArrayLike) -> np.ndarray:
  """[pitch row, step] of one melody: 2 at an onset, 1 while held, else 0;
  row 0 is encoding.MIN_PITCH."""
  tokens = np.asarray(tokens)
  num_pitches = encoding.MAX_PITCH - encoding.MIN_PITCH + 1
  roll = np.zeros((num_pitches, len(tokens)))
  sounding = None
  for step, token in enumerate(tokens.tolist()):
    if token == encoding.NOTE_OFF:
      sounding = None
    elif token != encoding.NO_EVENT:
      sounding = token - encoding.NUM_SPECIAL_EVENTS
      roll[sounding, step] = 2.0  # onset
      continue
    if sounding is not None:
      roll[sounding, step] = 1.0  # held
  return roll


def _pitch_name(pitch: int) -> str:
  return f"{PITCH_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _draw_roll(ax, roll: np.ndarray, low: int, high: int) -> None:
  """A piano roll on ax, pitches low..high, bar lines, octave lines, the
  C's (or the range's ends when it holds no C) named on the y axis."""
  steps = roll.shape[1]
  rows = roll[low - encoding.MIN_PITCH:high - encoding.MIN_PITCH + 1]
  ax.imshow(rows, origin="lower", aspect="auto", cmap="Blues", vmin=0,
            vmax=2, extent=(-0.5, steps - 0.5, low - 0.5, high + 0.5),
            interpolation="nearest")
  for bar in range(0, steps + 1, encoding.STEPS_PER_BAR):
    ax.axvline(bar - 0.5, color="0.5", linewidth=0.8)
  named = [p for p in range(low, high + 1) if p % 12 == 0] or [low, high]
  for c in named:
    ax.axhline(c - 0.5, color="0.85", linewidth=0.5)
  ax.set_yticks(named)
  ax.set_yticklabels([_pitch_name(p) for p in named])


def piano_roll_png(tokens: npt.ArrayLike, path: str,
                   title: Optional[str] = None) -> None:
  """Piano roll of one melody: one row per pitch, one column per 16th."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 2.4), layout="constrained")
  _draw_roll(ax, _roll(tokens), encoding.MIN_PITCH, encoding.MAX_PITCH)
  ax.set_xlabel("16th-note step")
  ax.set_title(title or "melody")
  fig.savefig(path, dpi=80, bbox_inches="tight")
  plt.close(fig)


def shared_pitch_range(melodies: Sequence[npt.ArrayLike], margin: int = 2
                       ) -> Tuple[int, int]:
  """(lowest, highest) MIDI pitch of all the melodies, widened by margin
  semitones within the encoding's range; the whole range when none has a
  note. One range for several rolls makes their heights comparable."""
  tokens = np.concatenate([np.asarray(m).ravel() for m in melodies] or
                          [np.zeros(0, np.int64)])
  notes = tokens[tokens >= encoding.NUM_SPECIAL_EVENTS]
  if notes.size == 0:
    return encoding.MIN_PITCH, encoding.MAX_PITCH
  pitches = notes - encoding.NUM_SPECIAL_EVENTS + encoding.MIN_PITCH
  return (max(encoding.MIN_PITCH, int(pitches.min()) - margin),
          min(encoding.MAX_PITCH, int(pitches.max()) + margin))


def piano_rolls_png(melodies: Mapping[str, npt.ArrayLike],
                    path: Union[str, BinaryIO],
                    title: Optional[str] = "The first melody each model sampled"
                    ) -> Union[str, BinaryIO]:
  """One melody per model stacked in one figure, a row per model in the
  order given, labelled with its name: the same pitch range and steps on
  every row, so the models read side by side. PNG to path (a file name or
  a binary file) -> path."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  if not melodies:
    raise ValueError("no melodies to draw")
  low, high = shared_pitch_range(list(melodies.values()))
  row_height = 0.4 + 0.018 * (high - low)
  fig, axes = plt.subplots(len(melodies), 1, sharex=True, squeeze=False,
                           figsize=(8, 0.7 + row_height * len(melodies)),
                           layout="constrained")
  for ax, (name, tokens) in zip(axes[:, 0], melodies.items()):
    _draw_roll(ax, _roll(tokens), low, high)
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
  steps = max(len(np.asarray(m)) for m in melodies.values())
  axes[-1, 0].set_xticks(range(0, steps, encoding.STEPS_PER_QUARTER))
  axes[-1, 0].set_xlabel("16th-note step (a bar line every 16)")
  if title:
    fig.suptitle(title, fontsize=11)
  fig.savefig(path, dpi=100, format="png", bbox_inches="tight")
  plt.close(fig)
  return path


def write_samples(melodies: npt.ArrayLike, directory: str,
                  num_samples: int = 5, prefix: str = "sample",
                  qpm: float = encoding.DEFAULT_QPM,
                  title: Optional[str] = None
                  ) -> List[Dict[str, Union[str, List[int]]]]:
  """Writes <prefix>_<i>.mid / .wav / .png for the first num_samples melodies.

  Returns a list of {"midi", "wav", "png", "tokens"} dicts.
  """
  import note_seq  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  written = []
  for i, tokens in enumerate(np.asarray(melodies)[:num_samples]):
    base = os.path.join(directory, f"{prefix}_{i}")
    sequence = melody_to_note_sequence(tokens, qpm=qpm)
    note_seq.sequence_proto_to_midi_file(sequence, base + ".mid")
    if sequence.notes:
      audio = note_seq.midi_synth.synthesize(sequence, SAMPLE_RATE)
    else:  # all rests: silence of the melody's length
      seconds = len(tokens) * 60.0 / qpm / encoding.STEPS_PER_QUARTER
      audio = np.zeros(int(seconds * SAMPLE_RATE))
    write_wav(base + ".wav", audio)
    piano_roll_png(tokens, base + ".png",
                   title=f"{title or prefix} #{i}")
    written.append({"midi": base + ".mid", "wav": base + ".wav",
                    "png": base + ".png", "tokens": tokens.tolist()})
  return written
