"""ABC tune books -> one MIDI file per tune (the embedded corpus's first stage).

Each tune book is split at its ``X:`` lines (the text before the first ``X:`` is
the book's file header and is prepended to every tune).  Each tune is parsed by
``note_seq.abc_parser`` first; tunes it rejects (it has no rests, tuplets,
chords, variant endings, parts, ...) are parsed by music21's ABC reader:
music21's tokenizer handles lengths, broken rhythms, tuplets, key-signature and
bar accidentals, and ``music21.abcFormat.translate.parseTokens`` turns the
tokens into notes (we skip music21's bar making and beaming, which only matter
for engraving and cost 80 % of its time).  From a music21 part we keep the
first voice, the highest note of a chord, merge tied notes and drop grace notes.

Either way the tune becomes a NoteSequence (notes, time signatures, the key
signature -- modes mapped to their relative major, since a MIDI key signature
is only major/minor -- and the tempo) written as a MIDI file (mido; see
write_single_tempo_midi).  The MIDI
files then go through the same pipeline as any user's MIDI files.
"""
import re
from typing import List, Tuple

import mido
from note_seq import abc_parser
from note_seq import constants as ns_constants
from note_seq import midi_io
from note_seq.protobuf import music_pb2

from data_pipeline import melodies as melodies_lib

_X_LINE = re.compile(r"^X:", re.MULTILINE)
_KEY_SIGNATURE = music_pb2.NoteSequence.KeySignature
DEFAULT_QPM = float(ns_constants.DEFAULT_QUARTERS_PER_MINUTE)  # 120
VELOCITY = 100


class TuneParseError(Exception):
  """Neither parser could read a tune."""


def split_tunebook(text: str) -> Tuple[str, List[str]]:
  """Tune book text -> (file header, [tune texts]); each tune starts with X:."""
  starts = [m.start() for m in _X_LINE.finditer(text)]
  if not starts:
    return text, []
  header = text[:starts[0]]
  tunes = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
  return header, tunes


def tune_reference(tune_text: str) -> str:
  m = re.match(r"X:\s*(\S*)", tune_text)
  return m.group(1) if m else ""


def _normalise_key_signatures(sequence):
  """Modal keys -> relative major (same signature) so MIDI can store them."""
  for key in sequence.key_signatures:
    if key.mode not in (_KEY_SIGNATURE.MAJOR, _KEY_SIGNATURE.MINOR):
      key.key = (key.key + melodies_lib.MODE_TO_RELATIVE_MAJOR.get(key.mode, 0)
                 ) % 12
      key.mode = _KEY_SIGNATURE.MAJOR


def parse_tune_note_seq(tune_text: str, header: str = ""
                        ) -> music_pb2.NoteSequence:
  """note_seq.abc_parser -> NoteSequence; raises on anything it rejects."""
  # A blank line ends a tune in ABC: keep only the first paragraph.
  body = re.split(r"\n\s*\n", tune_text.strip("\n"), maxsplit=1)[0]
  tunes, exceptions = abc_parser.parse_abc_tunebook(
      (header.strip("\n") + "\n\n" if header.strip() else "") + body + "\n")
  if exceptions:
    raise TuneParseError(f"note_seq: {type(exceptions[0]).__name__}: "
                         f"{exceptions[0]}")
  if len(tunes) != 1:
    raise TuneParseError(f"note_seq: {len(tunes)} tunes in one X: section")
  sequence = next(iter(tunes.values()))
  if not sequence.tempos:
    sequence.tempos.add(time=0.0, qpm=DEFAULT_QPM)
  return sequence


def _music21_key(obj):
  """music21 Key/KeySignature -> (key 0..11, NoteSequence mode)."""
  from music21 import key as m21_key  # pylint: disable=g-import-not-at-top
  modes = {"major": _KEY_SIGNATURE.MAJOR, "minor": _KEY_SIGNATURE.MINOR,
           "dorian": _KEY_SIGNATURE.DORIAN, "phrygian": _KEY_SIGNATURE.PHRYGIAN,
           "lydian": _KEY_SIGNATURE.LYDIAN,
           "mixolydian": _KEY_SIGNATURE.MIXOLYDIAN,
           "locrian": _KEY_SIGNATURE.LOCRIAN,
           "aeolian": _KEY_SIGNATURE.MINOR, "ionian": _KEY_SIGNATURE.MAJOR}
  if isinstance(obj, m21_key.Key) and obj.mode in modes:
    return obj.tonic.pitchClass, modes[obj.mode]
  # Bare signature: n sharps (negative: flats) -> major key 7n mod 12.
  return (7 * obj.sharps) % 12, _KEY_SIGNATURE.MAJOR


def _voice_id(chunk):
  for token in chunk.tokens:
    if getattr(token, "tag", None) == "V":
      return (token.data.split() or [""])[0]
  return None


def _first_voice(handler):
  """Shared metadata + every section of the first voice that has notes.

  music21's splitByVoice cuts at each V: field, so one voice's music may come
  in several interleaved sections (and V: declarations in the header come as
  note-less sections); this gathers the sections of one voice, in order.
  """
  from music21 import abcFormat  # pylint: disable=g-import-not-at-top
  chunks = handler.splitByVoice()
  if len(chunks) <= 1:
    return handler
  voiced = [(_voice_id(c), c) for c in chunks[1:]]
  with_notes = [v for v, c in voiced
                if any(isinstance(t, abcFormat.ABCNote) for t in c.tokens)]
  if not with_notes:
    return handler
  result = chunks[0]
  for voice, chunk in voiced:
    if voice == with_notes[0]:
      result = result + chunk
  return result


def parse_tune_music21(tune_text: str, header: str = ""
                       ) -> music_pb2.NoteSequence:
  """music21's ABC reader -> NoteSequence (first voice, chords -> top note)."""
  # pylint: disable=g-import-not-at-top
  from music21 import abcFormat
  from music21 import chord as m21_chord
  from music21 import key as m21_key
  from music21 import meter
  from music21 import note as m21_note
  from music21 import stream
  from music21 import tempo as m21_tempo
  from music21.abcFormat import translate
  # pylint: enable=g-import-not-at-top
  handler = abcFormat.ABCHandler()
  handler.process(header + tune_text)
  handler = _first_voice(handler)
  part = stream.Part()
  transposition, _ = translate.parseTokens(handler, part, part, False)
  if transposition:
    part.transpose(transposition, inPlace=True)

  # No measures were made, so the part is already flat.
  events = sorted(part.elements, key=lambda e: float(e.offset))
  qpm = DEFAULT_QPM
  for e in events:
    if isinstance(e, m21_tempo.MetronomeMark):
      try:
        bpm = float(e.getQuarterBPM())
        if bpm > 0:
          qpm = bpm
      except (TypeError, ValueError, AttributeError):
        pass
      break
  seconds_per_quarter = 60.0 / qpm

  sequence = music_pb2.NoteSequence()
  sequence.ticks_per_quarter = ns_constants.STANDARD_PPQ
  sequence.tempos.add(time=0.0, qpm=qpm)
  last_ts = None
  last_key = None
  sounding = {}  # pitch -> note proto still open for a tie
  for e in events:
    offset = float(e.offset)
    time = offset * seconds_per_quarter
    if isinstance(e, meter.TimeSignature):
      ts = (e.numerator, e.denominator)
      if ts != last_ts:
        sequence.time_signatures.add(time=time, numerator=ts[0],
                                     denominator=ts[1])
        last_ts = ts
    elif isinstance(e, (m21_key.Key, m21_key.KeySignature)):
      k = _music21_key(e)
      if k != last_key:
        sequence.key_signatures.add(time=time, key=k[0], mode=k[1])
        last_key = k
    elif isinstance(e, (m21_note.Note, m21_chord.Chord)):
      if e.duration.isGrace or e.quarterLength <= 0:
        continue
      if isinstance(e, m21_chord.Chord):
        pitch = max(p.midi for p in e.pitches)
      else:
        pitch = e.pitch.midi
      end = (offset + float(e.quarterLength)) * seconds_per_quarter
      tie = e.tie.type if e.tie is not None else None
      pending = sounding.get(pitch)
      if (tie in ("stop", "continue") and pending is not None and
          abs(pending.end_time - time) < 1e-6):
        pending.end_time = end
      else:
        note = sequence.notes.add(pitch=pitch, velocity=VELOCITY,
                                  start_time=time, end_time=end)
        pending = note
      if tie in ("start", "continue"):
        sounding[pitch] = pending
      else:
        sounding.pop(pitch, None)
  if not sequence.notes:
    raise TuneParseError("music21: no notes")
  sequence.total_time = max(n.end_time for n in sequence.notes)
  return sequence


def tune_to_note_sequence(tune_text: str, header: str = ""
                          ) -> Tuple[music_pb2.NoteSequence, str]:
  """-> (NoteSequence, parser name); TuneParseError when both parsers fail."""
  try:
    sequence = parse_tune_note_seq(tune_text, header)
    if sequence.notes:
      return sequence, "note_seq"
  except Exception:  # pylint: disable=broad-except
    pass  # fall back to music21 below
  try:
    return parse_tune_music21(tune_text, header), "music21"
  except TuneParseError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise TuneParseError(f"music21: {type(e).__name__}: {e}") from e


_MIDO_KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MIDO_MINOR_KEYS = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m",
                    "Am", "Bbm", "Bm")
PPQ = ns_constants.STANDARD_PPQ  # 220 ticks per quarter


def write_single_tempo_midi(sequence: music_pb2.NoteSequence,
                            path: str) -> None:
  """Writes a one-tempo NoteSequence as a type-1 MIDI file with mido.

  The same layout note_seq.midi_io (pretty_midi) writes -- a timing track
  (tempo, time and key signatures) and one note track -- but converting
  seconds to ticks with the single tempo directly: pretty_midi's general
  writer took a third of the corpus's ABC -> MIDI time.  Sequences with tempo
  changes go through note_seq.midi_io.
  """
  if len(sequence.tempos) > 1:
    midi_io.sequence_proto_to_midi_file(sequence, path)
    return
  qpm = sequence.tempos[0].qpm if sequence.tempos else DEFAULT_QPM
  ticks_per_second = qpm / 60.0 * PPQ

  def tick(seconds):
    return int(round(seconds * ticks_per_second))

  # (tick, order, meta?, type, fields); messages are built once, in order.
  meta = [(0, 0, True, "set_tempo", {"tempo": mido.bpm2tempo(qpm)})]
  for ts in sequence.time_signatures:
    meta.append((tick(ts.time), 1, True, "time_signature",
                 {"numerator": ts.numerator, "denominator": ts.denominator}))
  for key in sequence.key_signatures:
    names = (_MIDO_MINOR_KEYS if key.mode == _KEY_SIGNATURE.MINOR
             else _MIDO_KEYS)
    meta.append((tick(key.time), 2, True, "key_signature",
                 {"key": names[key.key % 12]}))
  notes = []
  for n in sequence.notes:
    start, end = tick(n.start_time), tick(n.end_time)
    if end <= start:
      continue
    # At equal ticks note-offs go before note-ons (repeated pitches).
    notes.append((start, 1, False, "note_on",
                  {"note": n.pitch, "velocity": n.velocity or VELOCITY}))
    notes.append((end, 0, False, "note_on", {"note": n.pitch, "velocity": 0}))

  midi = mido.MidiFile(type=1, ticks_per_beat=PPQ)
  for events in (meta, notes):
    track = mido.MidiTrack()
    now = 0
    for t, _, is_meta, kind, fields in sorted(events,
                                              key=lambda e: (e[0], e[1])):
      cls = mido.MetaMessage if is_meta else mido.Message
      track.append(cls(kind, time=t - now, **fields))
      now = t
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi.tracks.append(track)
  midi.save(path)


def tune_to_midi_file(tune_text: str, path: str, header: str = "") -> str:
  """Writes one ABC tune as a MIDI file; returns the parser that read it."""
  sequence, parser = tune_to_note_sequence(tune_text, header)
  _normalise_key_signatures(sequence)
  write_single_tempo_midi(sequence, path)
  return parser
