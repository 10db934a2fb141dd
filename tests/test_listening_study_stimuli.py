"""Stimuli: choice, rendering, loudness, opaque ids, private manifest."""
import json
import os
import wave

import numpy as np
import pytest

import listening_study
from listening_study import prepare_stimuli
from listening_study import stimuli
import listening_study_helpers as helpers


def _read(path):
  with wave.open(path) as f:
    frames = f.readframes(f.getnframes())
    return f.getframerate(), np.frombuffer(frames, "<i2") / 32768.0


def _run_dir(tmp_path, melodies):
  run = tmp_path / "run"
  for model, tokens in melodies.items():
    (run / "evaluation" / model).mkdir(parents=True)
    np.save(run / "evaluation" / model / "melodies.npy", tokens)
  return str(run)


def test_prepare_from_run_dir_picks_per_model_with_opaque_ids(tmp_path):
  melodies = helpers.tiny_melodies(n=6)
  melodies["rl_only"] = helpers.tiny_melodies(("rl_only",), n=6)["rl_only"]
  melodies["q"][0] = 0  # an all-rest melody is never chosen
  run = _run_dir(tmp_path, melodies)
  manifest = prepare_stimuli.prepare_if_missing(
      run, listening_study.study_dir(run), per_model=5, seed=3)
  assert manifest["models"] == ["note_rnn", "q", "psi", "g"]  # paper's four
  assert manifest["excluded_silent_melodies"]["q"] == 1
  by_model = {}
  for stimulus_id, info in manifest["stimuli"].items():
    assert len(stimulus_id) == 16 and all(c in "0123456789abcdef"
                                          for c in stimulus_id)
    by_model.setdefault(info["model"], []).append(info["melody_index"])
    assert info["tokens"] == melodies[info["model"]][
        info["melody_index"]].tolist()
  assert {m: len(v) for m, v in by_model.items()} == {
      "note_rnn": 5, "q": 5, "psi": 5, "g": 5}
  assert 0 not in by_model["q"]
  out = listening_study.stimuli_dir(listening_study.study_dir(run))
  audio = sorted(os.listdir(os.path.join(out, "audio")))
  assert audio == sorted(i + ".wav" for i in manifest["stimuli"])
  # same seed, same choice; a second call keeps what exists
  again = prepare_stimuli.prepare_if_missing(
      run, listening_study.study_dir(run), per_model=5, seed=3)
  assert again["stimuli"] == manifest["stimuli"]


def test_wavs_are_same_length_and_loudness_normalised(tmp_path):
  study = helpers.make_study(tmp_path, per_model=2)
  out = listening_study.stimuli_dir(study)
  with open(os.path.join(out, "manifest.json")) as f:
    manifest = json.load(f)
  lengths = set()
  for stimulus_id, info in manifest["stimuli"].items():
    rate, audio = _read(os.path.join(out, "audio", stimulus_id + ".wav"))
    assert rate == stimuli.SAMPLE_RATE
    lengths.add(len(audio))
    gated = 20 * np.log10(stimuli.gated_rms(audio))
    peak = 20 * np.log10(np.abs(audio).max())
    assert peak <= stimuli.PEAK_CEILING_DBFS + 0.01
    if not info["peak_limited"]:
      assert abs(gated - stimuli.TARGET_RMS_DBFS) < 1.0, gated
  assert len(lengths) == 1  # equal lengths: file size tells nothing
  assert manifest["renderer"] in ("fluidsynth", "note_seq_sine")
  if os.environ.get("CI") and os.path.isfile(stimuli.SOUNDFONT_CANDIDATES[0]):
    assert manifest["renderer"] == "fluidsynth"


def test_fluidsynth_renders_a_real_instrument_when_installed(tmp_path):
  if stimuli.find_soundfont() is None or not stimuli.fluidsynth_available():
    if os.environ.get("CI"):
      pytest.fail("CI must have fluidsynth + a GM SoundFont (.ci/run installs)")
    pytest.skip("fluidsynth or a General MIDI SoundFont is not installed")
  study = helpers.make_study(tmp_path, per_model=1)
  manifest = stimuli.load_manifest(listening_study.stimuli_dir(study))
  assert manifest["renderer"] == "fluidsynth"
  assert manifest["soundfont"].endswith(".sf2")


def test_sine_fallback_warns(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(stimuli, "fluidsynth_available", lambda: False)
  manifest = stimuli.prepare(None, str(tmp_path / "s"), per_model=1,
                             melodies=helpers.tiny_melodies())
  assert manifest["renderer"] == "note_seq_sine"
  # In the project's words on stderr (not a log record the console hides).
  assert ("WARNING: rendering with note-seq's sine synthesiser, not a real "
          "instrument, because pyfluidsynth" in capsys.readouterr().err)
  with pytest.raises(stimuli.StimuliError, match="FluidSynth"):
    stimuli.prepare(None, str(tmp_path / "t"), per_model=1, allow_sine=False,
                    melodies=helpers.tiny_melodies())


def test_bad_inputs_fail_clearly(tmp_path):
  with pytest.raises(stimuli.StimuliError, match="melodies.npy"):
    stimuli.prepare(str(tmp_path), str(tmp_path / "o"))
  with pytest.raises(stimuli.StimuliError, match="per_model"):
    stimuli.prepare(None, str(tmp_path / "o"), per_model=9,
                    melodies=helpers.tiny_melodies())
  bad = helpers.tiny_melodies()
  bad["q"][0, 0] = 38
  with pytest.raises(stimuli.StimuliError, match="tokens outside"):
    stimuli.prepare(None, str(tmp_path / "o"), per_model=1, melodies=bad)
  with pytest.raises(stimuli.StimuliError, match="two models"):
    stimuli.prepare(None, str(tmp_path / "o"), per_model=1,
                    melodies=helpers.tiny_melodies(("q",)))
