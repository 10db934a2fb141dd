"""Listening material: MIDI, WAV (note-seq's sine synthesiser) and piano-roll
PNGs of a few melodies per model."""
import os
import wave

import numpy as np

from data_pipeline import encoding

SAMPLE_RATE = 16000


def melody_events(tokens):
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


def melody_to_note_sequence(tokens, qpm=encoding.DEFAULT_QPM, velocity=100):
  """A 16th-note-grid melody -> NoteSequence (a note lasts until the next
  note or note-off; no-event holds)."""
  import note_seq  # pylint: disable=g-import-not-at-top
  melody = note_seq.Melody(melody_events(tokens),
                           steps_per_quarter=encoding.STEPS_PER_QUARTER)
  return melody.to_sequence(velocity=velocity, qpm=qpm)


def write_wav(path, audio, sample_rate=SAMPLE_RATE):
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


def piano_roll_png(tokens, path, title=None):
  """Piano roll of one melody: one row per pitch, one column per 16th."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
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
  fig, ax = plt.subplots(figsize=(8, 3))
  ax.imshow(roll, origin="lower", aspect="auto", cmap="Blues", vmin=0, vmax=2,
            extent=(-0.5, len(tokens) - 0.5, encoding.MIN_PITCH - 0.5,
                    encoding.MAX_PITCH + 0.5), interpolation="nearest")
  for bar in range(0, len(tokens) + 1, encoding.STEPS_PER_BAR):
    ax.axvline(bar - 0.5, color="0.5", linewidth=0.8)
  for c in range(encoding.MIN_PITCH, encoding.MAX_PITCH + 1, 12):
    ax.axhline(c - 0.5, color="0.85", linewidth=0.5)
  ax.set_yticks(list(range(encoding.MIN_PITCH, encoding.MAX_PITCH + 1, 12)))
  ax.set_yticklabels([f"C{p // 12 - 1}" for p in
                      range(encoding.MIN_PITCH, encoding.MAX_PITCH + 1, 12)])
  ax.set_xlabel("16th-note step")
  ax.set_title(title or "melody")
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def write_samples(melodies, directory, num_samples=5, prefix="sample",
                  qpm=encoding.DEFAULT_QPM, title=None):
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
