"""MIDI <-> tokens: encoding round trip, exact tokens, transposition, extraction."""
import collections

import numpy as np
import pytest

from data_pipeline import convert
from data_pipeline import encoding
from data_pipeline import melodies

import data_midi_helpers as midi_helpers

C4 = 60


def test_token_melody_round_trip():
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, encoding.NUM_CLASSES, size=200).astype(np.int8)
  tokens[0] = 14  # a melody starts with a note (leading note-offs are rests)
  back = melodies.melody_to_tokens(melodies.tokens_to_melody(tokens))
  np.testing.assert_array_equal(back, tokens)


def test_tokens_reject_out_of_range():
  with pytest.raises(ValueError):
    melodies.tokens_to_melody([2, 38])


def test_tokens_midi_file_round_trip(tmp_path):
  # C major, inside 48..83, ending on a held note: MIDI -> same tokens.
  phrase = [14, 1, 1, 1, 16, 1, 0, 1, 18, 1, 19, 1, 21, 1, 1, 1,
            23, 1, 25, 1, 26, 1, 1, 1, 2, 1, 37, 1, 14, 1, 1, 1]
  tokens = np.array(phrase * 4, dtype=np.int8)
  path = convert.tokens_to_midi_file(tokens, tmp_path / "m.mid")
  sequence = convert.tokens_to_note_sequence(tokens)
  assert sequence.tempos[0].qpm == encoding.DEFAULT_QPM == 80
  assert sequence.notes[0].pitch == 60
  # One step at 80 qpm = 60 / 80 / 4 s.
  assert sequence.notes[1].start_time == pytest.approx(4 * 60 / 80 / 4)
  (back,) = convert.midi_file_to_melodies(path)
  np.testing.assert_array_equal(back, tokens)


def test_midi_file_becomes_expected_tokens(tmp_path):
  # G major scale in quarter notes from G4, with a G major key signature:
  # transposed down to C (-7) -> C4..C5, class 14 = C4.
  notes = midi_helpers.scale_melody(67)
  notes.append((72, 64, 66))  # an eighth C5 (becomes F4 = class 19)
  notes.append((71, 68, 72))  # after an eighth rest, B4 (becomes E4)
  path = midi_helpers.write_midi(tmp_path / "g.mid", [(notes, False)],
                                 key_number=7)
  (tokens,) = convert.midi_file_to_melodies(path)
  expected = midi_helpers.expected_scale_tokens(14)
  expected += [19, 1, 0, 1, 18, 1, 1, 1]
  assert tokens.dtype == np.int8
  assert tokens.tolist() == expected


@pytest.mark.parametrize("tonic", list(range(53, 65)))
def test_every_major_key_transposes_to_c(tmp_path, tonic):
  path = midi_helpers.write_midi(tmp_path / "k.mid",
                                 [(midi_helpers.scale_melody(tonic), False)],
                                 key_number=tonic % 12)
  (tokens,) = convert.midi_file_to_melodies(path)
  pitches = encoding.class_to_pitch(tokens[tokens >= 2])
  assert set(pitches % 12) <= set(encoding.C_MAJOR_PITCH_CLASSES)
  assert pitches[0] % 12 == 0  # the tonic became C
  assert pitches.min() >= 48 and pitches.max() <= 83


def test_key_estimated_without_signature(tmp_path):
  # E major scale, no key signature: histogram says E major -> C major.
  path = midi_helpers.write_midi(tmp_path / "e.mid",
                                 [(midi_helpers.scale_melody(64), False)])
  stats = collections.Counter()
  (tokens,) = convert.midi_file_to_melodies(path, stats=stats)
  assert stats["key_from_estimated"] == 1
  assert tokens.tolist() == midi_helpers.expected_scale_tokens(14)


def test_minor_key_signature_goes_to_a_minor(tmp_path):
  # E natural minor from E4 with an E minor signature -> A minor (A4 = 69).
  minor = (0, 2, 3, 5, 7, 8, 10, 12)
  notes = midi_helpers.scale_melody(64, intervals=minor)
  path = midi_helpers.write_midi(tmp_path / "em.mid", [(notes, False)],
                                 key_number=12 + 4)
  (tokens,) = convert.midi_file_to_melodies(path)
  expected = midi_helpers.expected_scale_tokens(
      encoding.pitch_to_class(69), intervals=minor)
  assert tokens.tolist() == expected


def test_wrong_key_signature_is_overruled(tmp_path):
  # A default C major signature on a melody in A major (3 sharps).
  stats = collections.Counter()
  path = midi_helpers.write_midi(tmp_path / "a.mid",
                                 [(midi_helpers.scale_melody(57), False)],
                                 key_number=0)
  (tokens,) = convert.midi_file_to_melodies(path, stats=stats)
  assert stats["key_from_overruled"] == 1
  pitches = encoding.class_to_pitch(tokens[tokens >= 2])
  assert set(pitches % 12) <= set(encoding.C_MAJOR_PITCH_CLASSES)


def test_octave_folding_into_range():
  # C major notes from C1 to C8: wider than 48..83, every note folded in.
  pitches = np.array([24, 36, 48, 60, 72, 84, 96, 108])
  shift = melodies.transpose_amount(pitches, major_key=0)
  assert shift % 12 == 0
  melody = melodies.melodies_lib.Melody(events=list(pitches))
  melody.transpose(shift, min_note=48, max_note=84)
  tokens = melodies.melody_to_tokens(melody)
  assert tokens.min() >= 2 and tokens.max() <= 37
  assert set(encoding.class_to_pitch(tokens) % 12) == {0}


def test_melody_in_range_is_not_shifted_by_octaves():
  assert melodies.transpose_amount([48, 60, 83], major_key=0) == 0
  # Too high by an octave: shifted down exactly one octave.
  assert melodies.transpose_amount([72, 84, 95], major_key=0) == -12


def test_polyphonic_notes_keep_highest(tmp_path):
  notes = midi_helpers.scale_melody(60)
  notes.append((55, 0, 4))  # one chord note under the first melody note
  path = midi_helpers.write_midi(tmp_path / "p.mid", [(notes, False)],
                                 key_number=0)
  (tokens,) = convert.midi_file_to_melodies(path)
  assert tokens.tolist() == midi_helpers.expected_scale_tokens(14)


def test_long_gap_splits_melodies_and_drums_dropped(tmp_path):
  first = midi_helpers.scale_melody(60)                 # bars 0-3
  second = [(p, s + 6 * 16, e + 6 * 16) for p, s, e in first]  # bars 6-9
  drums = [(36, s, s + 1) for s in range(0, 160, 4)]
  path = midi_helpers.write_midi(tmp_path / "gap.mid",
                                 [(first + second, False), (drums, True)],
                                 key_number=0)
  result = convert.midi_file_to_melodies(path)
  assert len(result) == 2
  for tokens in result:
    assert tokens.tolist() == midi_helpers.expected_scale_tokens(14)


def test_short_melody_dropped_by_min_bars(tmp_path):
  path = midi_helpers.write_midi(
      tmp_path / "s.mid", [(midi_helpers.scale_melody(60, bars=2), False)])
  with pytest.raises(convert.UnusableFileError) as e:
    convert.midi_file_to_melodies(path)
  assert e.value.reason == "no melody passed the filters"
  config = melodies.MelodyConfig(min_bars=2)
  (tokens,) = convert.midi_file_to_melodies(path, config)
  assert len(tokens) == 32


def test_bad_config_named():
  with pytest.raises(ValueError, match="gap_bars"):
    melodies.MelodyConfig(gap_bars=0).validate()
