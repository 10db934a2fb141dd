"""Stimuli: N melodies per model -> MIDI + loudness-normalised WAV, under
opaque random ids, with a private manifest (id -> model, tokens).

Two designs (the manifest's "design"):
  * "figure3": the paper's study, a few clips per model (--per_model=12),
    each participant rating model pairs (design.py's balanced assignment);
  * "preferences": a large pool (thousands of melodies: --per_model=500 over
    the Note RNN and the tuned models), each participant rating pairs of
    clips drawn at random from the whole pool, so that a reward model learns
    a taste rather than a few clips.
Clips are rendered ahead (render "ahead": every WAV and MIDI file written
here) or on demand (render "on_demand": only the manifest is written here;
the server renders a clip the first time it is asked for, with the same
renderer, length and loudness, `render_stimulus`).

Rendering: FluidSynth with a General MIDI SoundFont (Debian's
timgm6mb-soundfont / fluid-soundfont-gm) through note-seq's FluidSynth support
(needs the pyfluidsynth package and libfluidsynth).  Without them, note-seq's
sine synthesiser is used and a warning says so (the manifest records which).

Loudness: every clip is padded/trimmed to the same length (melody + 1 s
release), then scaled so that its gated RMS (RMS over the 50 ms frames louder
than -60 dBFS, a simplified ITU-R BS.1770 gate) is TARGET_RMS_DBFS; if that
would push a sample above PEAK_CEILING_DBFS the clip is scaled down to the
ceiling instead (rendered ahead, the manifest records each clip's final
levels).
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
DESIGNS = ("figure3", "preferences")
RENDER_MODES = ("ahead", "on_demand")
# Every file a study serves carries this mtime (2000-01-01T00:00:00Z): neither
# file times nor their order group the clips by model.
FILE_STAMP = 946684800


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


def render_clip(tokens: Sequence[int], length: int, qpm: float,
                soundfont: Optional[str]) -> Tuple[np.ndarray,
                                                   Dict[str, Any]]:
  """One melody's audio: rendered (FluidSynth with `soundfont`, else the
  sine synthesiser), padded or cut to `length` samples, loudness-normalised.
  -> (audio, levels)."""
  from data_pipeline import convert  # pylint: disable=g-import-not-at-top
  seq = convert.tokens_to_note_sequence(np.asarray(tokens), qpm=qpm)
  audio = render(seq, soundfont)[:length]
  audio = np.pad(audio, (0, length - len(audio)))
  return normalise(audio)


def _write_clip(path: str, audio: np.ndarray) -> None:
  """Writes the WAV aside and renames it into place (a reader sees the
  whole clip or none), with the study's one mtime."""
  tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
  write_wav(tmp, audio)
  os.utime(tmp, (FILE_STAMP, FILE_STAMP))
  os.replace(tmp, path)


def _renderer(soundfont: Optional[str], allow_sine: bool
              ) -> Tuple[str, Optional[str]]:
  """(renderer name, SoundFont path or None) the stimuli are rendered with."""
  sf2 = find_soundfont(soundfont)
  if sf2 is not None and fluidsynth_available():
    return "fluidsynth", sf2
  why = ("no General MIDI SoundFont found (apt-get install timgm6mb-soundfont)"
         if sf2 is None else
         "pyfluidsynth/libfluidsynth not importable (pip install pyfluidsynth;"
         " apt-get install fluidsynth)")
  if not allow_sine:
    raise StimuliError(f"cannot render with FluidSynth: {why}")
  print(f"WARNING: rendering with note-seq's sine synthesiser, not a real "
        f"instrument, because {why}.", file=sys.stderr)
  return "note_seq_sine", None


def prepare(run_dir: Optional[str], output_dir: str, per_model: int = 12,
            seed: int = 0, models: Optional[Sequence[str]] = None,
            soundfont: Optional[str] = None, qpm: float = encoding.DEFAULT_QPM,
            allow_sine: bool = True,
            melodies: Optional[Mapping[str, np.ndarray]] = None,
            design: str = "figure3", render_mode: str = "ahead"
            ) -> Dict[str, Any]:
  """Writes <output_dir>/manifest.json and, rendered ahead,
  <output_dir>/{audio,midi}/<id>.*; returns the manifest dict.  `melodies`
  ({model: int array [N, T]}) replaces reading the run.  design and
  render_mode: the module docstring."""
  from data_pipeline import convert  # pylint: disable=g-import-not-at-top
  if per_model < 1:
    raise StimuliError(f"--per_model must be >= 1, got {per_model}")
  if design not in DESIGNS:
    raise StimuliError(f"--design must be one of {', '.join(DESIGNS)}, got "
                       f"{design!r}")
  if render_mode not in RENDER_MODES:
    raise StimuliError(f"--render must be one of {', '.join(RENDER_MODES)}, "
                       f"got {render_mode!r}")
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
    melodies = {m: np.load(found[m], mmap_mode="r") for m in models}
  models = list(melodies) if models is None else list(models)
  if len(models) < 2:
    raise StimuliError(f"need at least two models, got {models}")

  renderer, sf2 = _renderer(soundfont, allow_sine)
  audio_dir = os.path.join(output_dir, "audio")
  midi_dir = os.path.join(output_dir, "midi")
  os.makedirs(audio_dir, exist_ok=True)
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
    jobs.extend((model, index, tokens[index].tolist())
                for index in chosen.tolist())
  steps = max(np.shape(melodies[m])[1] for m in models)
  seconds = steps * 60.0 / qpm / encoding.STEPS_PER_QUARTER + TAIL_SECONDS
  length = int(round(seconds * SAMPLE_RATE))  # one length for every clip
  # Render in a random order: the files' order does not group them by model.
  for job in rng.permutation(len(jobs)).tolist():
    model, index, tokens = jobs[job]
    stimulus_id = secrets.token_hex(8)
    while stimulus_id in stimuli:
      stimulus_id = secrets.token_hex(8)
    stimuli[stimulus_id] = dict(model=model, melody_index=index, tokens=tokens,
                                seconds=round(length / SAMPLE_RATE, 3))
    if render_mode == "ahead":
      audio, levels = render_clip(tokens, length, qpm, sf2)
      _write_clip(os.path.join(audio_dir, stimulus_id + ".wav"), audio)
      os.makedirs(midi_dir, exist_ok=True)
      midi = os.path.join(midi_dir, stimulus_id + ".mid")
      convert.tokens_to_midi_file(np.asarray(tokens), midi, qpm=qpm)
      os.utime(midi, (FILE_STAMP, FILE_STAMP))
      stimuli[stimulus_id].update(levels)
  ids = list(stimuli)
  rng.shuffle(ids)
  manifest = {
      "run_dir": os.path.abspath(run_dir) if run_dir else None,
      "design": design, "render": render_mode,
      "models": models, "per_model": per_model, "seed": seed, "qpm": qpm,
      "renderer": renderer, "soundfont": sf2, "sample_rate": SAMPLE_RATE,
      "clip_samples": length,
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


def render_stimulus(manifest: Mapping[str, Any], output_dir: str,
                    stimulus_id: str) -> str:
  """The WAV of `stimulus_id` in <output_dir>/audio/, rendered now if it is
  not there yet (a study rendered on demand); -> its path.  Concurrent
  calls for one clip each write a whole file and rename it into place."""
  path = os.path.join(output_dir, "audio", stimulus_id + ".wav")
  if os.path.isfile(path):
    return path
  if manifest.get("render", "ahead") != "on_demand":
    raise StimuliError(f"{stimulus_id}: its WAV is missing from {output_dir}")
  clip = manifest["stimuli"][stimulus_id]
  audio, _ = render_clip(clip["tokens"], int(manifest["clip_samples"]),
                         float(manifest["qpm"]), manifest["soundfont"])
  _write_clip(path, audio)
  return path


def load_manifest(output_dir: str) -> Dict[str, Any]:
  path = os.path.join(output_dir, MANIFEST)
  if not os.path.isfile(path):
    raise StimuliError(f"no stimuli manifest at {path!r}")
  with open(path) as f:
    manifest = json.load(f)
  manifest.setdefault("design", "figure3")  # manifests before the designs
  manifest.setdefault("render", "ahead")
  if manifest["design"] not in DESIGNS or manifest["render"] not in (
      RENDER_MODES):
    raise StimuliError(f"{path}: unknown design {manifest['design']!r} or "
                       f"render {manifest['render']!r}")
  if manifest["render"] == "ahead":
    audio_dir = os.path.join(output_dir, "audio")
    for stimulus_id in manifest["stimuli"]:
      if not os.path.isfile(os.path.join(audio_dir, stimulus_id + ".wav")):
        raise StimuliError(f"manifest lists {stimulus_id} but its WAV is "
                           "missing")
  return manifest
