"""Builds small MIDI files for the data pipeline tests (pretty_midi)."""
import pretty_midi

QPM = 120.0
SIXTEENTH = 60.0 / QPM / 4  # seconds per step at QPM


def write_midi(path, tracks, key_number=None, time_signature=(4, 4)):
  """tracks: list of (notes, is_drum); notes = [(pitch, start_step, end_step)].

  key_number: pretty_midi key number (0..11 major, 12..23 minor) or None.
  """
  pm = pretty_midi.PrettyMIDI(initial_tempo=QPM)
  pm.time_signature_changes.append(
      pretty_midi.TimeSignature(time_signature[0], time_signature[1], 0.0))
  if key_number is not None:
    pm.key_signature_changes.append(pretty_midi.KeySignature(key_number, 0.0))
  for notes, is_drum in tracks:
    inst = pretty_midi.Instrument(program=0, is_drum=is_drum)
    for pitch, start, end in notes:
      inst.notes.append(pretty_midi.Note(
          velocity=100, pitch=pitch, start=start * SIXTEENTH,
          end=end * SIXTEENTH))
    pm.instruments.append(inst)
  pm.write(str(path))
  return str(path)


def scale_melody(tonic, bars=4, step_len=4, intervals=(0, 2, 4, 5, 7, 9, 11, 12)):
  """A melody of quarter notes walking a major scale up from `tonic`."""
  notes = []
  for i in range(bars * 16 // step_len):
    pitch = tonic + intervals[i % len(intervals)]
    notes.append((pitch, i * step_len, (i + 1) * step_len))
  return notes


def expected_scale_tokens(tonic_class, bars=4, step_len=4,
                          intervals=(0, 2, 4, 5, 7, 9, 11, 12)):
  """The 38-class tokens of `scale_melody` with its tonic at `tonic_class`."""
  tokens = []
  for i in range(bars * 16 // step_len):
    tokens.append(tonic_class + intervals[i % len(intervals)])
    tokens.extend([1] * (step_len - 1))
  return tokens
