"""Quantized NoteSequence -> monophonic melodies in C major / A minor, 48..83.

The steps, in the order they run (reference section 1):

1. ``split_note_sequence_on_time_changes`` so every piece has one tempo and one
   time signature, then ``quantize_note_sequence`` at 4 steps per quarter.
2. Per instrument (drums dropped), ``note_seq.Melody.from_quantized_sequence``
   extracts monophonic lines: where notes start together the highest is kept
   (polyphonic notes ignored) and a silence of ``gap_bars`` bars or more ends a
   melody and the search continues after it.  Instruments whose notes are
   mostly chordal (more than ``max_chord_fraction`` of their onsets shared with
   another note) are accompaniment, not melody, and are skipped.
3. Melodies shorter than ``min_bars`` bars or with fewer than
   ``min_unique_pitches`` distinct pitches are dropped; longer than
   ``max_steps`` steps are truncated.
4. Key: the key signature in force at the melody's start when the sequence has
   one, unless the melody's notes fit a different major scale clearly better
   (MIDI files often carry a default C major signature); otherwise the key is
   estimated from the pitch-class histogram (the major scale holding most of
   the note onsets, ``note_seq.Melody.get_major_key``).  Minor and modal keys
   are mapped to their relative major (A minor and C major share one pitch set).
5. The melody is transposed to C major by the semitone shift plus whole
   octaves that keeps the most notes inside MIDI 48..83 (ties: smallest shift);
   notes still outside are folded in by octaves.
6. Encoded as the 38 classes of ``encoding`` (0 note-off, 1 no-event,
   2..37 = MIDI 48..83).
"""
import collections
import dataclasses
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from note_seq import constants as ns_constants
from note_seq import events_lib
from note_seq import melodies_lib
from note_seq import sequences_lib
from note_seq.protobuf import music_pb2

from data_pipeline import encoding

NOTES_PER_OCTAVE = 12
_KEY_SIGNATURE = music_pb2.NoteSequence.KeySignature

# Semitones from a mode's tonic up to the tonic of the major scale with the
# same pitch set (D dorian -> C major: 2 + 10 = 12).
MODE_TO_RELATIVE_MAJOR = {
    _KEY_SIGNATURE.MAJOR: 0,
    _KEY_SIGNATURE.NOT_SPECIFIED: 0,
    _KEY_SIGNATURE.MINOR: 3,
    _KEY_SIGNATURE.MIXOLYDIAN: 5,
    _KEY_SIGNATURE.DORIAN: 10,
    _KEY_SIGNATURE.PHRYGIAN: 8,
    _KEY_SIGNATURE.LYDIAN: 7,
    _KEY_SIGNATURE.LOCRIAN: 1,
}

_MAJOR_SCALE = np.array(encoding.C_MAJOR_PITCH_CLASSES)


@dataclasses.dataclass(frozen=True)
class MelodyConfig:
  """How melodies are cut from a NoteSequence (part of the cache fingerprint)."""
  steps_per_quarter: int = encoding.STEPS_PER_QUARTER
  gap_bars: float = 1.0
  min_bars: int = 4
  max_steps: int = 512
  min_unique_pitches: int = 5
  max_chord_fraction: float = 0.5
  # A key signature is overruled when another major scale holds this much more
  # of the melody's onsets (fraction of onsets).
  key_signature_tolerance: float = 0.15

  def validate(self) -> "MelodyConfig":
    if self.steps_per_quarter != encoding.STEPS_PER_QUARTER:
      raise ValueError("steps_per_quarter must be "
                       f"{encoding.STEPS_PER_QUARTER} (the 38-class encoding "
                       f"grid), got {self.steps_per_quarter}")
    if not self.gap_bars > 0:
      raise ValueError(f"gap_bars must be > 0, got {self.gap_bars}")
    if self.min_bars < 0:
      raise ValueError(f"min_bars must be >= 0, got {self.min_bars}")
    if self.max_steps < 0:
      raise ValueError(f"max_steps must be >= 0 (0 = no limit), got "
                       f"{self.max_steps}")
    if self.min_unique_pitches < 1:
      raise ValueError("min_unique_pitches must be >= 1, got "
                       f"{self.min_unique_pitches}")
    if not 0.0 <= self.max_chord_fraction <= 1.0:
      raise ValueError("max_chord_fraction must be in [0, 1], got "
                       f"{self.max_chord_fraction}")
    return self


class NoMelodyReason(Exception):
  """Raised with a short reason when a NoteSequence yields no melody."""


def melody_to_tokens(events: Iterable[int]) -> np.ndarray:
  """note_seq Melody events (-1 off, -2 no-event, pitch) -> int8 classes."""
  events = np.asarray(list(events), dtype=np.int64)
  tokens = np.empty(events.shape, dtype=np.int8)
  tokens[events == ns_constants.MELODY_NOTE_OFF] = encoding.NOTE_OFF
  tokens[events == ns_constants.MELODY_NO_EVENT] = encoding.NO_EVENT
  is_pitch = events >= 0
  tokens[is_pitch] = encoding.pitch_to_class(events[is_pitch])
  return tokens


def tokens_to_melody(tokens: Union[Sequence[int], np.ndarray],
                     steps_per_bar: int = encoding.STEPS_PER_BAR
                     ) -> melodies_lib.Melody:
  """int classes -> note_seq Melody (inverse of `melody_to_tokens`)."""
  tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
  if tokens.size and (tokens.min() < 0 or tokens.max() >= encoding.NUM_CLASSES):
    raise ValueError(f"tokens must be in [0, {encoding.NUM_CLASSES - 1}], got "
                     f"min {tokens.min()} max {tokens.max()}")
  events = np.where(tokens == encoding.NOTE_OFF, ns_constants.MELODY_NOTE_OFF,
                    ns_constants.MELODY_NO_EVENT)
  is_pitch = tokens >= encoding.NUM_SPECIAL_EVENTS
  events[is_pitch] = encoding.class_to_pitch(tokens[is_pitch])
  return melodies_lib.Melody(
      events=[int(e) for e in events],
      steps_per_quarter=encoding.STEPS_PER_QUARTER,
      steps_per_bar=steps_per_bar)


def pitch_class_histogram(pitches: Union[Sequence[int], np.ndarray]
                          ) -> np.ndarray:
  """Counts of each pitch class (C = 0) among MIDI pitches."""
  pitches = np.asarray(pitches, dtype=np.int64)
  return np.bincount(pitches % NOTES_PER_OCTAVE, minlength=NOTES_PER_OCTAVE)


def major_key_fit(histogram: Union[Sequence[float], np.ndarray]
                  ) -> np.ndarray:
  """[12]: fraction of onsets inside each major scale (C major = 0 ... B = 11)."""
  histogram = np.asarray(histogram, dtype=np.float64)
  total = max(histogram.sum(), 1.0)
  return np.array([histogram[(_MAJOR_SCALE + k) % NOTES_PER_OCTAVE].sum()
                   for k in range(NOTES_PER_OCTAVE)]) / total


def estimate_major_key(pitches: Union[Sequence[int], np.ndarray]) -> int:
  """The major key (0 = C) whose scale holds most note onsets; ties -> lowest.

  Same rule as ``note_seq.Melody.get_major_key``.
  """
  return int(np.argmax(major_key_fit(pitch_class_histogram(pitches))))


def key_signature_at(sequence: music_pb2.NoteSequence, time: float
                     ) -> Optional[music_pb2.NoteSequence.KeySignature]:
  """The KeySignature in force at `time` (seconds), or None."""
  current = None
  for key in sorted(sequence.key_signatures, key=lambda k: k.time):
    if key.time <= time + 1e-9:
      current = key
    elif current is None:
      # A signature shortly after the start still describes the opening.
      current = key
      break
    else:
      break
  return current


def choose_major_key(
    pitches: Union[Sequence[int], np.ndarray],
    key_signature: Optional[music_pb2.NoteSequence.KeySignature],
    tolerance: float) -> Tuple[int, str]:
  """Returns (major key 0..11, source) with source in {'signature', 'estimated',
  'overruled'} (signature present but the notes contradict it)."""
  fit = major_key_fit(pitch_class_histogram(pitches))
  estimated = int(np.argmax(fit))
  if key_signature is None:
    return estimated, "estimated"
  offset = MODE_TO_RELATIVE_MAJOR.get(key_signature.mode, 0)
  signature_key = (key_signature.key + offset) % NOTES_PER_OCTAVE
  if fit[signature_key] + tolerance < fit[estimated]:
    return estimated, "overruled"
  return signature_key, "signature"


def transpose_amount(pitches: Union[Sequence[int], np.ndarray],
                     major_key: int) -> int:
  """Semitones moving `major_key` to C and the notes best into 48..83.

  Among shifts (-major_key mod 12) + 12 * octave, takes the one keeping the
  most notes inside [MIN_PITCH, MAX_PITCH]; ties go to the smallest |shift|.
  """
  pitches = np.asarray(pitches, dtype=np.int64)
  base = (-major_key) % NOTES_PER_OCTAVE
  best = None
  for octave in range(-10, 11):
    shift = base + NOTES_PER_OCTAVE * octave
    moved = pitches + shift
    inside = int(np.sum((moved >= encoding.MIN_PITCH) &
                        (moved <= encoding.MAX_PITCH)))
    score = (inside, -abs(shift))
    if best is None or score > best[0]:
      best = (score, shift)
  return best[1]


def _chord_fraction(notes):
  """Fraction of notes whose start step is shared with another note."""
  starts = collections.Counter(n.quantized_start_step for n in notes)
  shared = sum(c for c in starts.values() if c > 1)
  return shared / max(len(notes), 1)


def _melody_pitches(melody):
  return [e for e in melody if e >= 0]


def extract_melodies_from_quantized(quantized: music_pb2.NoteSequence,
                                    config: MelodyConfig,
                                    stats: collections.Counter[str]
                                    ) -> Iterator[melodies_lib.Melody]:
  """Yields note_seq Melody objects (original pitches) from one quantized piece.

  `stats` (a Counter) is updated with what was dropped and why.
  """
  steps_per_bar = int(sequences_lib.steps_per_bar_in_quantized_sequence(
      quantized))
  by_instrument = collections.defaultdict(list)
  for note in quantized.notes:
    if note.is_drum:
      stats["drum_notes"] += 1
      continue
    if note.velocity == 0:
      continue
    by_instrument[note.instrument].append(note)

  for instrument in sorted(by_instrument):
    notes = by_instrument[instrument]
    if _chord_fraction(notes) > config.max_chord_fraction:
      stats["polyphonic_tracks"] += 1
      continue
    stats["monophonic_tracks"] += 1
    search_start = 0
    while True:
      melody = melodies_lib.Melody()
      melody.from_quantized_sequence(
          quantized, search_start_step=search_start, instrument=instrument,
          gap_bars=config.gap_bars, ignore_polyphonic_notes=True,
          pad_end=False, filter_drums=True)
      if not len(melody):  # pylint: disable=g-explicit-length-test
        break
      # Continue after this melody, at the next bar boundary of the search grid.
      search_start = (melody.end_step +
                      (search_start - melody.end_step) % steps_per_bar)
      if len(melody) < config.min_bars * steps_per_bar:
        stats["melodies_too_short"] += 1
        continue
      if config.max_steps and len(melody) > config.max_steps:
        melody.set_length(config.max_steps)
        stats["melodies_truncated"] += 1
      pitches = _melody_pitches(melody)
      if len(set(pitches)) < config.min_unique_pitches:
        stats["melodies_too_few_pitches"] += 1
        continue
      yield melody


def note_sequence_to_token_melodies(
    sequence: music_pb2.NoteSequence, config: MelodyConfig = MelodyConfig(),
    stats: Optional[collections.Counter[str]] = None) -> List[np.ndarray]:
  """NoteSequence (unquantized, seconds) -> list of int8 token arrays.

  Raises NoMelodyReason(reason) when nothing usable is found, with reasons
  'no notes', 'drum-only', 'polyphonic-only', 'no melody passed the filters'.
  """
  stats = collections.Counter() if stats is None else stats
  if not sequence.notes:
    raise NoMelodyReason("no notes")
  if all(n.is_drum for n in sequence.notes):
    raise NoMelodyReason("drum-only")

  melodies = []
  pieces = sequences_lib.split_note_sequence_on_time_changes(sequence)
  for piece in pieces:
    if not piece.notes:
      continue
    try:
      quantized = sequences_lib.quantize_note_sequence(
          piece, config.steps_per_quarter)
      steps_per_bar = sequences_lib.steps_per_bar_in_quantized_sequence(
          quantized)
      if steps_per_bar % 1 or steps_per_bar <= 0:
        raise events_lib.NonIntegerStepsPerBarError(steps_per_bar)
    except (sequences_lib.BadTimeSignatureError,
            sequences_lib.MultipleTimeSignatureError,
            sequences_lib.MultipleTempoError,
            sequences_lib.NegativeTimeError,
            events_lib.NonIntegerStepsPerBarError):
      stats["pieces_bad_time_signature"] += 1
      continue
    seconds_per_step = 60.0 / (
        piece.tempos[0].qpm if piece.tempos else
        ns_constants.DEFAULT_QUARTERS_PER_MINUTE) / config.steps_per_quarter
    for melody in extract_melodies_from_quantized(quantized, config, stats):
      pitches = _melody_pitches(melody)
      key_sig = key_signature_at(piece, melody.start_step * seconds_per_step)
      major_key, source = choose_major_key(
          pitches, key_sig, config.key_signature_tolerance)
      stats["key_from_" + source] += 1
      melody.transpose(transpose_amount(pitches, major_key),
                       min_note=encoding.MIN_PITCH,
                       max_note=encoding.MAX_PITCH + 1)
      melodies.append(melody_to_tokens(melody))

  if not melodies:
    if stats["polyphonic_tracks"] and not stats["monophonic_tracks"]:
      raise NoMelodyReason("polyphonic-only")
    raise NoMelodyReason("no melody passed the filters")
  return melodies
