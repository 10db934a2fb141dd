"""Stimuli: N melodies per model -> MIDI + loudness-normalised WAV, under
opaque random ids, with a private manifest (id -> model).

Rendering: FluidSynth with a General MIDI SoundFont (Debian's
timgm6mb-soundfont / fluid-soundfont-gm) through note-seq's FluidSynth support
(needs the pyfluidsynth package and libfluidsynth).  Without them, note-seq's
sine synthesiser is used and a warning says so (the manifest records which).

Loudness: every clip is padded/trimmed to the same length (melody + 1 s
release), then scaled so that its gated RMS (RMS over the 50 ms frames louder
than -60 dBFS, a simplified ITU-R BS.1770 gate) is TARGET_RMS_DBFS; if that
would push a sample above PEAK_CEILING_DBFS the clip is scaled down to the
ceiling instead (the manifest records each clip's final levels).
"""
from __future__ import annotations

import glob
import json
import os
import secrets
import sys
import wave
from typing import (TYPE_CHECKING, Any, Collection, Dict, List, Mapping,
                    Optional, Sequence, Tuple, Union)

import numpy as np

from data_pipeline import encoding

if TYPE_CHECKING:
  from note_seq.protobuf import music_pb2

SAMPLE_RATE = 44100
TARGET_RMS_DBFS = -23.0
PEAK_CEILING_DBFS = -1.0
GATE_DBFS = -60.0
FRAME_SECONDS = 0.05
TAIL_SECONDS = 1.0
MANIFEST = "manifest.json"
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
# The paper's Figure 3 compares these four; others (rl_only) only by --models.
PAPER_MODELS = ("note_rnn", "q", "psi", "g")
MODEL_ORDER = ("note_rnn", "q", "psi", "g", "rl_only")


class StimuliError(ValueError):
  pass


def order_models(names: Collection[str]) -> List[str]:
  known = [n for n in MODEL_ORDER if n in names]
  return known + sorted(n for n in names if n not in MODEL_ORDER)


def find_models(run_dir: str) -> Dict[str, str]:
  """{model: path of melodies.npy} under <run_dir>/evaluation/<model>/."""
  paths = glob.glob(os.path.join(run_dir, "evaluation", "*", "melodies.npy"))
  found = {os.path.basename(os.path.dirname(p)): p for p in paths}
  return {m: found[m] for m in order_models(found)}


def find_soundfont(path: Optional[str] = None) -> Optional[str]:
  if path:
    if not os.path.isfile(path):
      raise StimuliError(f"--soundfont: no file {path!r}")
    return path
  for candidate in SOUNDFONT_CANDIDATES:
    if os.path.isfile(candidate):
      return os.path.realpath(candidate)
  return None


def fluidsynth_available() -> bool:
  try:
    import fluidsynth  # pylint: disable=g-import-not-at-top
    return fluidsynth is not None
  except Exception:  # pylint: disable=broad-except  (ImportError or missing lib)
    return False


def dbfs(x: float) -> float:
  return float(20 * np.log10(max(float(x), 1e-12)))


def gated_rms(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
  frame = max(1, int(FRAME_SECONDS * sample_rate))
  n = len(audio) // frame
  if n == 0:
    return float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0
  frames = np.asarray(audio[:n * frame], np.float64).reshape(n, frame)
  power = np.mean(np.square(frames), axis=1)
  loud = power > 10 ** (GATE_DBFS / 10)
  if not loud.any():
    return 0.0
  return float(np.sqrt(np.mean(power[loud])))


def normalise(audio: np.ndarray, sample_rate: int = SAMPLE_RATE
              ) -> Tuple[np.ndarray, Dict[str, Union[float, bool]]]:
  """-> (audio, info): gated RMS to TARGET_RMS_DBFS, peak <= ceiling."""
  audio = np.asarray(audio, np.float64)
  rms = gated_rms(audio, sample_rate)
  if rms <= 0:
    raise StimuliError("silent clip cannot be loudness-normalised")
  gain = 10 ** (TARGET_RMS_DBFS / 20) / rms
  peak = float(np.max(np.abs(audio)))
  ceiling = 10 ** (PEAK_CEILING_DBFS / 20)
  limited = peak * gain > ceiling
  if limited:
    gain = ceiling / peak
  out = audio * gain
  # measured over the same frames as before the gain (the gate is absolute)
  return out, {"gated_rms_dbfs": round(dbfs(rms * gain), 2),
               "peak_dbfs": round(dbfs(np.max(np.abs(out))), 2),
               "peak_limited": bool(limited)}


def write_wav(path: str, audio: np.ndarray,
              sample_rate: int = SAMPLE_RATE) -> None:
  """Float audio in [-1, 1] -> 16-bit mono PCM WAV (no metadata chunks)."""
  pcm = np.clip(np.round(np.asarray(audio) * 32767), -32768, 32767)
  with wave.open(path, "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(sample_rate)
    f.writeframes(pcm.astype("<i2").tobytes())


def render(sequence: music_pb2.NoteSequence, soundfont: Optional[str],
           sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """NoteSequence -> float audio; FluidSynth when soundfont is given."""
  import note_seq  # pylint: disable=g-import-not-at-top
  if soundfont:
    return np.asarray(note_seq.fluidsynth(sequence, sample_rate,
                                          sf2_path=soundfont), np.float64)
  return np.asarray(note_seq.midi_synth.synthesize(sequence, sample_rate),
                    np.float64)


def prepare(run_dir: Optional[str], output_dir: str, per_model: int = 12,
            seed: int = 0, models: Optional[Sequence[str]] = None,
            soundfont: Optional[str] = None, qpm: float = encoding.DEFAULT_QPM,
            allow_sine: bool = True,
            melodies: Optional[Mapping[str, np.ndarray]] = None
            ) -> Dict[str, Any]:
  """Writes <output_dir>/{audio,midi}/<id>.* and manifest.json; returns the
  manifest dict.  `melodies` ({model: int array [N, T]}) replaces reading the
  run (for tests)."""
  from data_pipeline import convert  # pylint: disable=g-import-not-at-top
  if per_model < 1:
    raise StimuliError(f"--per_model must be >= 1, got {per_model}")
  if melodies is None:
    found = find_models(run_dir)
    if not found:
      raise StimuliError(
          f"no <run>/evaluation/<model>/melodies.npy under {run_dir!r}; "
          "run `python -m rl_tuner_tf.evaluate --run_dir=...` first")
    if models is None:
      paper = [m for m in PAPER_MODELS if m in found]
      models = paper if len(paper) >= 2 else list(found)
    missing = [m for m in models if m not in found]
    if missing:
      raise StimuliError(f"--models: no melodies for {missing}; "
                         f"found {list(found)}")
    melodies = {m: np.load(found[m]) for m in models}
  models = list(melodies) if models is None else list(models)
  if len(models) < 2:
    raise StimuliError(f"need at least two models, got {models}")

  sf2 = find_soundfont(soundfont)
  renderer = "fluidsynth"
  if sf2 is None or not fluidsynth_available():
    why = ("no General MIDI SoundFont found (apt-get install timgm6mb-soundfont)"
           if sf2 is None else
           "pyfluidsynth/libfluidsynth not importable (pip install pyfluidsynth;"
           " apt-get install fluidsynth)")
    if not allow_sine:
      raise StimuliError(f"cannot render with FluidSynth: {why}")
    print(f"WARNING: rendering with note-seq's sine synthesiser, not a real "
          f"instrument, because {why}.", file=sys.stderr)
    renderer, sf2 = "note_seq_sine", None

  audio_dir = os.path.join(output_dir, "audio")
  midi_dir = os.path.join(output_dir, "midi")
  os.makedirs(audio_dir, exist_ok=True)
  os.makedirs(midi_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  stimuli, excluded, jobs = {}, {}, []
  for model in models:
    tokens = np.asarray(melodies[model])
    if tokens.ndim != 2 or tokens.size == 0:
      raise StimuliError(f"{model}: melodies must be [N, T], got {tokens.shape}")
    if tokens.min() < 0 or tokens.max() >= encoding.NUM_CLASSES:
      raise StimuliError(f"{model}: tokens outside [0, {encoding.NUM_CLASSES})")
    audible = np.flatnonzero((tokens >= encoding.NUM_SPECIAL_EVENTS).any(1))
    excluded[model] = int(len(tokens) - len(audible))
    if len(audible) < per_model:
      raise StimuliError(f"{model}: only {len(audible)} melodies with notes, "
                         f"--per_model={per_model}")
    chosen = np.sort(rng.choice(audible, size=per_model, replace=False))
    jobs.extend((model, index) for index in chosen.tolist())
  # Render in a random order, then give every file one mtime: neither file
  # times nor their order group the clips by model.
  steps = max(np.asarray(melodies[m]).shape[1] for m in models)
  seconds = steps * 60.0 / qpm / encoding.STEPS_PER_QUARTER + TAIL_SECONDS
  length = int(round(seconds * SAMPLE_RATE))  # one length for every clip
  for job in rng.permutation(len(jobs)).tolist():
    model, index = jobs[job]
    tokens = np.asarray(melodies[model])
    seq = convert.tokens_to_note_sequence(tokens[index], qpm=qpm)
    audio = render(seq, sf2)[:length]
    audio = np.pad(audio, (0, length - len(audio)))
    audio, levels = normalise(audio)
    stimulus_id = secrets.token_hex(8)
    while stimulus_id in stimuli:
      stimulus_id = secrets.token_hex(8)
    write_wav(os.path.join(audio_dir, stimulus_id + ".wav"), audio)
    convert.tokens_to_midi_file(tokens[index],
                                os.path.join(midi_dir, stimulus_id + ".mid"),
                                qpm=qpm)
    stimuli[stimulus_id] = dict(model=model, melody_index=index,
                                tokens=tokens[index].tolist(),
                                seconds=round(length / SAMPLE_RATE, 3),
                                **levels)
  stamp = 946684800  # 2000-01-01T00:00:00Z
  for stimulus_id in stimuli:
    for path in (os.path.join(audio_dir, stimulus_id + ".wav"),
                 os.path.join(midi_dir, stimulus_id + ".mid")):
      os.utime(path, (stamp, stamp))
  ids = list(stimuli)
  rng.shuffle(ids)
  manifest = {
      "run_dir": os.path.abspath(run_dir) if run_dir else None,
      "models": models, "per_model": per_model, "seed": seed, "qpm": qpm,
      "renderer": renderer, "soundfont": sf2, "sample_rate": SAMPLE_RATE,
      "loudness": {"method": "gated RMS (50 ms frames above -60 dBFS) to "
                             f"{TARGET_RMS_DBFS} dBFS, peak ceiling "
                             f"{PEAK_CEILING_DBFS} dBFS",
                   "target_rms_dbfs": TARGET_RMS_DBFS,
                   "peak_ceiling_dbfs": PEAK_CEILING_DBFS},
      "excluded_silent_melodies": excluded,
      "stimuli": {i: stimuli[i] for i in ids},
  }
  tmp = os.path.join(output_dir, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(tmp, os.path.join(output_dir, MANIFEST))
  return manifest


def load_manifest(output_dir: str) -> Dict[str, Any]:
  path = os.path.join(output_dir, MANIFEST)
  if not os.path.isfile(path):
    raise StimuliError(f"no stimuli manifest at {path!r}")
  with open(path) as f:
    manifest = json.load(f)
  audio_dir = os.path.join(output_dir, "audio")
  for stimulus_id in manifest["stimuli"]:
    if not os.path.isfile(os.path.join(audio_dir, stimulus_id + ".wav")):
      raise StimuliError(f"manifest lists {stimulus_id} but its WAV is missing")
  return manifest
