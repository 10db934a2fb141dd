"""ABC tunes -> MIDI -> melodies, and the corpus location/caching (tiny books)."""
import os

import numpy as np
import pytest

from data_pipeline import abc_to_midi
from data_pipeline import convert
from data_pipeline import corpus
from data_pipeline import dataset

TUNEBOOK = """%abc-2.1
% file header: shared by every tune

X:1
T:Scale (note_seq.abc_parser reads this)
M:4/4
L:1/4
K:G
GABc|defg|gfed|cBAG|

X:2
T:Rests (note_seq.abc_parser has no rests: music21 reads this)
M:3/4
L:1/8
K:D
D2 F2 A2|d4 z2|c2 B2 A2|F4 z2|E2 G2 B2|e4 z2|d2 A2 F2|D6|

X:3
T:No notes at all
K:C
"""


def _hold(token, steps):
  return [token] + [1] * (steps - 1)


EXPECTED_1 = sum((_hold(t, 4) for t in
                  [14, 16, 18, 19, 21, 23, 25, 26, 26, 25, 23, 21, 19, 18, 16,
                   14]), [])
EXPECTED_2 = (_hold(14, 4) + _hold(18, 4) + _hold(21, 4) +
              _hold(26, 8) + _hold(0, 4) +
              _hold(25, 4) + _hold(23, 4) + _hold(21, 4) +
              _hold(18, 8) + _hold(0, 4) +
              _hold(16, 4) + _hold(19, 4) + _hold(23, 4) +
              _hold(28, 8) + _hold(0, 4) +
              _hold(26, 4) + _hold(21, 4) + _hold(18, 4) +
              _hold(14, 12))


def test_split_tunebook_counts_x_headers():
  header, tunes = abc_to_midi.split_tunebook(TUNEBOOK)
  assert "file header" in header
  assert [abc_to_midi.tune_reference(t) for t in tunes] == ["1", "2", "3"]


def test_abc_tunes_become_expected_melodies(tmp_path):
  header, tunes = abc_to_midi.split_tunebook(TUNEBOOK)
  p1 = str(tmp_path / "t1.mid")
  p2 = str(tmp_path / "t2.mid")
  assert abc_to_midi.tune_to_midi_file(tunes[0], p1, header) == "note_seq"
  assert abc_to_midi.tune_to_midi_file(tunes[1], p2, header) == "music21"
  with pytest.raises(abc_to_midi.TuneParseError):
    abc_to_midi.tune_to_midi_file(tunes[2], str(tmp_path / "t3.mid"), header)
  (m1,) = convert.midi_file_to_melodies(p1)
  (m2,) = convert.midi_file_to_melodies(p2)
  assert m1.tolist() == EXPECTED_1
  assert m2.tolist() == EXPECTED_2


def test_music21_fallback_handles_tuplets_ties_and_chords():
  tune = "X:9\nM:2/4\nL:1/8\nK:C\n(3cde f2-|f2 [CEg]2|c4|]\n"
  sequence = abc_to_midi.parse_tune_music21(tune)
  pitches = [n.pitch for n in sequence.notes]
  assert pitches == [72, 74, 76, 77, 79, 72]  # tie merged, chord -> top
  spq = 60.0 / abc_to_midi.DEFAULT_QPM
  ends = [round(n.end_time / spq, 3) for n in sequence.notes]
  assert ends == [round(1 / 3, 3), round(2 / 3, 3), 1.0, 3.0, 4.0, 6.0]


def test_default_root_respects_env(monkeypatch, tmp_path):
  monkeypatch.setenv(corpus.ENV_HOME, str(tmp_path / "home"))
  assert corpus.default_root() == str(tmp_path / "home")
  assert corpus.default_tfrecord_dir() == str(
      tmp_path / "home" / corpus.TFRECORD_SUBDIR)
  monkeypatch.delenv(corpus.ENV_HOME)
  assert corpus.default_root().endswith("generated") or \
      corpus.default_root().endswith(os.path.join(".cache", "rl_tuner_tf"))


def test_ensure_corpus_builds_then_caches(monkeypatch, tmp_path):
  books = tmp_path / "m21corpus" / "folk"
  books.mkdir(parents=True)
  (books / "book.abc").write_text(TUNEBOOK)
  monkeypatch.setattr(corpus, "COLLECTIONS", ("folk",))
  monkeypatch.setattr(corpus, "music21_corpus_dir",
                      lambda: str(tmp_path / "m21corpus"))
  root = str(tmp_path / "root")
  abc, manifest = corpus.build_default_corpus(root=root, num_workers=1,
                                              log=lambda m: None)
  assert (abc["tunes"], abc["parsed"], abc["failed"]) == (3, 2, 1)
  assert abc["parsed_by"] == {"note_seq": 1, "music21": 1}
  assert manifest["melodies"] == 2 and not manifest["cached"]
  tf_dir = corpus.ensure_default_corpus(root=root, log=lambda m: None)
  assert tf_dir == corpus.default_tfrecord_dir(root)
  abc, manifest = corpus.build_default_corpus(root=root, num_workers=1,
                                              log=lambda m: None)
  assert abc["cached"] and manifest["cached"]
  melodies = [t.tolist() for split in ("train", "validation")
              for t in dataset.melody_dataset(tf_dir, split)
              .as_numpy_iterator()]
  assert sorted(melodies) == sorted([EXPECTED_1, EXPECTED_2])
  assert np.sum([len(m) for m in melodies]) == manifest["steps"]
