"""The 38-class melody encoding (reference section 1).

0 = note-off (a rest starts), 1 = no-event (hold what is sounding),
2..37 = MIDI pitches 48..83 (C3..B5). 16th-note grid, 4 steps per quarter.
"""
from typing import Union

import numpy as np

NUM_CLASSES = 38
NOTE_OFF = 0
NO_EVENT = 1
NUM_SPECIAL_EVENTS = 2
MIN_PITCH = 48  # C3
MAX_PITCH = 83  # B5
STEPS_PER_QUARTER = 4
STEPS_PER_BAR = 16
DEFAULT_QPM = 80.0
TONIC_CLASS = 14  # C4 = MIDI 60

# Classes whose pitch class is in C major (C D E F G A B), plus note-off/no-event.
C_MAJOR_PITCH_CLASSES = (0, 2, 4, 5, 7, 9, 11)


def pitch_to_class(pitch: Union[int, np.integer, np.ndarray]
                   ) -> Union[np.integer, np.ndarray]:
  """MIDI pitch in [48, 83] -> class in [2, 37]."""
  pitch = np.asarray(pitch)
  if np.any((pitch < MIN_PITCH) | (pitch > MAX_PITCH)):
    raise ValueError(f"pitch outside [{MIN_PITCH}, {MAX_PITCH}]: {pitch}")
  return pitch - MIN_PITCH + NUM_SPECIAL_EVENTS


def class_to_pitch(cls: Union[int, np.integer, np.ndarray]
                   ) -> Union[np.integer, np.ndarray]:
  """Class in [2, 37] -> MIDI pitch in [48, 83]."""
  cls = np.asarray(cls)
  if np.any((cls < NUM_SPECIAL_EVENTS) | (cls >= NUM_CLASSES)):
    raise ValueError(f"class is not a pitch class: {cls}")
  return cls - NUM_SPECIAL_EVENTS + MIN_PITCH


def key_mask() -> np.ndarray:
  """Boolean [38]: True for classes in the C major key set (0 and 1 included)."""
  mask = np.zeros(NUM_CLASSES, dtype=bool)
  mask[[NOTE_OFF, NO_EVENT]] = True
  for cls in range(NUM_SPECIAL_EVENTS, NUM_CLASSES):
    mask[cls] = (class_to_pitch(cls) % 12) in C_MAJOR_PITCH_CLASSES
  return mask
