"""MIDI files <-> 38-class token melodies, through note-seq NoteSequences.

    midi_file_to_melodies(path)            MIDI file -> [int8 token arrays]
    tokens_to_note_sequence(tokens, qpm)   tokens -> NoteSequence (4/4, 16ths)
    tokens_to_midi_file(tokens, path, qpm) tokens -> MIDI file (80 qpm default)

Reading never guesses at bytes itself: note_seq.midi_io (pretty_midi/mido)
parses the file.  Unusable files raise `UnusableFileError` whose `reason` is one
of the short strings in `SKIP_REASONS` (the manifest counts them).

This module does not import TensorFlow, so pipeline workers start quickly.
"""
import collections
import contextlib
import ctypes
import os
import signal
import threading
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from note_seq import midi_io
from note_seq.protobuf import music_pb2

from data_pipeline import encoding
from data_pipeline import melodies as melodies_lib

MIDI_HEADER = b"MThd"
MIDI_EXTENSIONS = (".mid", ".midi", ".kar", ".smf")

SKIP_REASONS = (
    "empty file",
    "not a MIDI file",
    "corrupt or truncated MIDI",
    "no notes",
    "drum-only",
    "polyphonic-only",
    "no melody passed the filters",
    "parse timeout",
    "unexpected error",
)

DEFAULT_TIMEOUT_S = 30.0  # per file; see process_midi_file


class _ParseTimeout(BaseException):
  """Raised by the interval timer inside a too-slow parse (a BaseException,
  so that no `except Exception` of a parsing library swallows it)."""


class UnusableFileError(Exception):
  """A file that yields no melody; `reason` is one of SKIP_REASONS."""

  def __init__(self, reason, detail=""):
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason = reason
    self.detail = detail


def read_midi_file(path: str) -> music_pb2.NoteSequence:
  """MIDI file -> NoteSequence, or UnusableFileError (empty / non-MIDI / corrupt)."""
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise UnusableFileError("empty file")
  # Standard MIDI files start with MThd; RIFF-wrapped MIDI (RMID) holds one.
  if not (data.startswith(MIDI_HEADER) or
          (data.startswith(b"RIFF") and MIDI_HEADER in data[:64])):
    raise UnusableFileError("not a MIDI file", "no MThd header")
  if not data.startswith(MIDI_HEADER):
    data = data[data.index(MIDI_HEADER):]
  try:
    return midi_io.midi_to_note_sequence(data)
  except Exception as e:  # pylint: disable=broad-except
    # pretty_midi/mido raise many types (EOFError, KeyError, ValueError, ...)
    # for truncated or corrupt data; note_seq wraps most as MIDIConversionError.
    raise UnusableFileError("corrupt or truncated MIDI",
                            f"{type(e).__name__}: {e}") from e


def note_sequence_to_melodies(
    sequence: music_pb2.NoteSequence,
    config: melodies_lib.MelodyConfig = melodies_lib.MelodyConfig(),
    stats: Optional[collections.Counter[str]] = None) -> List[np.ndarray]:
  """NoteSequence -> [int8 token arrays]; UnusableFileError when none."""
  try:
    return melodies_lib.note_sequence_to_token_melodies(sequence, config, stats)
  except melodies_lib.NoMelodyReason as e:
    raise UnusableFileError(str(e)) from e


def midi_file_to_melodies(
    path: str, config: melodies_lib.MelodyConfig = melodies_lib.MelodyConfig(),
    stats: Optional[collections.Counter[str]] = None) -> List[np.ndarray]:
  """MIDI file -> list of int8 token arrays (values 0..37), one per melody.

  Raises UnusableFileError (with `.reason`) when the file yields no melody.
  """
  return note_sequence_to_melodies(read_midi_file(path), config, stats)


def _raise_in_thread(thread_id, exception_type):
  """Makes `exception_type` raise in thread `thread_id` at its next bytecode
  (None clears a pending one): CPython's PyThreadState_SetAsyncExc."""
  ctypes.pythonapi.PyThreadState_SetAsyncExc(
      ctypes.c_ulong(thread_id),
      None if exception_type is None else ctypes.py_object(exception_type))


@contextlib.contextmanager
def _deadline(timeout_s):
  """Raises _ParseTimeout in the body after `timeout_s` seconds.

  In a process's main thread (the old worker processes, the in-process Beam
  runner) a real-time interval timer (SIGALRM), which also interrupts a
  blocking system call; in any other thread (Beam's SDK workers run bundles
  in a thread pool) a timer thread raises it asynchronously in this thread,
  which interrupts Python code (the MIDI parsers are pure Python), not a
  blocking C call. Either way nothing is raised once the body has ended.
  """
  if timeout_s is None or timeout_s <= 0:
    yield
    return
  if threading.current_thread() is threading.main_thread():
    def on_alarm(signum, frame):
      del signum, frame
      raise _ParseTimeout()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
      yield
    finally:
      signal.setitimer(signal.ITIMER_REAL, 0)
      signal.signal(signal.SIGALRM, previous)
    return
  thread_id = threading.get_ident()
  lock = threading.Lock()
  state = {"done": False, "fired": False}

  def fire():
    with lock:
      if not state["done"]:
        state["fired"] = True
        _raise_in_thread(thread_id, _ParseTimeout)
  timer = threading.Timer(timeout_s, fire)
  timer.daemon = True
  timer.start()
  try:
    yield
  finally:
    with lock:
      state["done"] = True
      if state["fired"]:
        _raise_in_thread(thread_id, None)  # not delivered yet: drop it
    timer.cancel()


def process_midi_file(
    path: str, config: melodies_lib.MelodyConfig = melodies_lib.MelodyConfig(),
    timeout_s: Optional[float] = None
) -> Tuple[List[np.ndarray], Optional[str], str, Dict[str, int]]:
  """Never raises: -> (melodies, reason or None, detail, stats dict).

  timeout_s: a file whose parse takes longer is skipped with the reason
  "parse timeout" (see _deadline: any thread, SIGALRM in the main thread).
  """
  stats = collections.Counter()
  try:
    with _deadline(timeout_s):
      melodies = midi_file_to_melodies(path, config, stats)
    return melodies, None, "", dict(stats)
  except UnusableFileError as e:
    return [], e.reason, e.detail, dict(stats)
  except _ParseTimeout:
    return [], "parse timeout", f"took longer than {timeout_s:g} s", {}
  except Exception as e:  # pylint: disable=broad-except
    return [], "unexpected error", f"{type(e).__name__}: {e}", dict(stats)


def tokens_to_note_sequence(tokens: Union[Sequence[int], np.ndarray],
                            qpm: float = encoding.DEFAULT_QPM,
                            velocity: int = 100,
                            program: int = 0) -> music_pb2.NoteSequence:
  """Token melody -> NoteSequence at `qpm` in 4/4 (16th-note steps).

  Note-off (0) ends the sounding note, no-event (1) holds it, 2..37 start MIDI
  pitch 48..83; the end of the melody ends any held note.
  """
  if qpm <= 0:
    raise ValueError(f"qpm must be > 0, got {qpm}")
  melody = melodies_lib.tokens_to_melody(tokens)
  sequence = melody.to_sequence(velocity=velocity, program=program, qpm=qpm)
  time_signature = sequence.time_signatures.add()
  time_signature.numerator = 4
  time_signature.denominator = 4
  key = sequence.key_signatures.add()
  key.key = 0
  key.mode = music_pb2.NoteSequence.KeySignature.MAJOR
  sequence.total_time = max(sequence.total_time, len(melody) * 60.0 / qpm /
                            encoding.STEPS_PER_QUARTER)
  return sequence


def tokens_to_midi_file(tokens: Union[Sequence[int], np.ndarray], path: str,
                        qpm: float = encoding.DEFAULT_QPM) -> str:
  """Writes a token melody as a MIDI file; returns `path`."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  midi_io.note_sequence_to_midi_file(tokens_to_note_sequence(tokens, qpm), path)
  return path


def is_midi_path(path: str) -> bool:
  return path.lower().endswith(MIDI_EXTENSIONS)
