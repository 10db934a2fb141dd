"""The TF Serving export: layout, versions, saved_model_cli, and the round trip
(the loaded SavedModel answers exactly like the in-process model)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.encoding import NUM_CLASSES
from export import melody_generator
from export import exporter
from export import versioning
from rl_tuner_tf import melody_policy
from rl_tuner_tf import note_rnn
from rl_tuner_tf.note_rnn import NoteRNN

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNATURES = {"serving_default", "generate", "generate_random_primer", "step",
              "initial_state"}


def _generate_args(primer, num_steps=16, temperature=1.0, seed=5):
  return dict(primer=tf.constant(primer, tf.int32),
              num_steps=tf.constant(num_steps, tf.int32),
              temperature=tf.constant(temperature, tf.float32),
              seed=tf.constant(seed, tf.int64))


@pytest.fixture(scope="module")
def tuned_dir(tmp_path_factory):
  tf.random.set_seed(7)
  directory = str(tmp_path_factory.mktemp("tuned"))
  q, r = NoteRNN((20,)), NoteRNN((20,))
  for v in q.trainable_variables + r.trainable_variables:
    v.assign(v * 3.0)
  melody_policy.save_tuned(directory, "psi", q, r, {"note": "test"})
  return directory


@pytest.fixture(scope="module")
def export(tuned_dir, tmp_path_factory):
  """One serving export of the tuned model (no TF-Agents policy: see
  test_export_tfagents_policy.py)."""
  base = os.path.join(str(tmp_path_factory.mktemp("serving")), "melody")
  results = exporter.export_all(base, tuned_model_dir=tuned_dir, max_steps=128,
                                   max_batch=256, export_tfagents_policy=False)
  version, path = results["serving"]
  kind, reward_rnn, q_network, _ = exporter.load_source(tuned_dir)
  generator = melody_generator.MelodyGenerator(kind, reward_rnn, q_network,
                                               max_steps=128, max_batch=256)
  return {"base": base, "version": version, "path": path,
          "loaded": tf.saved_model.load(path), "generator": generator}


def test_tf_serving_layout(export):
  assert export["version"] == 1
  assert export["path"] == os.path.join(export["base"], "1")
  assert sorted(os.listdir(export["base"])) == ["1"]  # no temp folders left
  files = os.listdir(export["path"])
  assert "saved_model.pb" in files and "variables" in files
  with open(os.path.join(export["path"], exporter.EXPORT_INFO)) as f:
    info = json.load(f)
  assert info["kind"] == "psi" and info["max_steps"] == 128
  assert info["max_batch"] == 256 and set(info["signatures"]) == SIGNATURES
  assert info["random_note_max"] == melody_generator.DEFAULT_RANDOM_NOTE_MAX
  assert info["state_names"] == ["q_h0", "q_c0", "reward_h0", "reward_c0"]


def test_loaded_model_equals_in_process_model(export):
  primer = [[14, 1, 1, 1], [2, 4, 6, 7], [0, 0, 1, 37]]
  serving = export["loaded"].signatures["serving_default"]
  for temperature, seed in ((1.0, 5), (0.7, 123456789012), (0.0, 5)):
    args = _generate_args(primer, temperature=temperature, seed=seed)
    got = serving(**args)
    want = export["generator"].generate(**args)
    np.testing.assert_array_equal(got["tokens"], want["tokens"])
    np.testing.assert_allclose(got["log_p"], want["log_p"], rtol=0, atol=1e-6)
    assert got["tokens"].dtype == tf.int32 and got["log_p"].dtype == tf.float32
  random_primer = export["loaded"].signatures["generate_random_primer"](
      batch_size=tf.constant(3), num_steps=tf.constant(5),
      temperature=tf.constant(1.0), seed=tf.constant(9, tf.int64))
  want = export["generator"].generate_random_primer(
      tf.constant(3), tf.constant(5), tf.constant(1.0), tf.constant(9, tf.int64))
  for key in ("primer", "tokens", "log_p"):
    np.testing.assert_array_equal(random_primer[key], want[key])


def test_loaded_step_signature(export):
  loaded = export["loaded"]
  state = loaded.signatures["initial_state"](batch_size=tf.constant(2))
  out = loaded.signatures["step"](token=tf.constant([14, 3]), **state)
  want = export["generator"].step(token=tf.constant([14, 3]), **state)
  assert set(out) == {"action_values", "logits", "log_probs", "policy_logits",
                      "q_h0", "q_c0", "reward_h0", "reward_c0"}
  for key in out:
    np.testing.assert_allclose(out[key], want[key], atol=1e-6)
  np.testing.assert_array_equal(out["policy_logits"], out["action_values"])  # psi


@pytest.mark.parametrize("primer,num_steps,temperature,message", [
    ([[14, 40]], 4, 1.0, r"tokens must be in \[0, 38\)"),
    ([[14]], 0, 1.0, "num_steps must be >= 1"),
    ([[14]], 129, 1.0, "num_steps must be <= 128"),
    (np.zeros([257, 1]), 4, 1.0, "batch size must be <= 256"),
    ([[14]], 4, -1.0, "temperature must be finite and >= 0"),
])
def test_loaded_model_rejects_bad_inputs(export, primer, num_steps, temperature,
                                         message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    export["loaded"].signatures["serving_default"](
        **_generate_args(primer, num_steps, temperature))


def _saved_model_cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
  return subprocess.run(
      [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", *args],
      capture_output=True, text=True, env=env, timeout=300, check=False)


def test_saved_model_cli_show_lists_signatures(export):
  result = _saved_model_cli("show", "--dir", export["path"], "--all")
  assert result.returncode == 0, result.stderr[-2000:]
  for name in SIGNATURES:
    assert f"signature_def['{name}']" in result.stdout
  generate = result.stdout.split("signature_def['serving_default']")[1]
  generate = generate.split("signature_def[")[0]
  for line in ("inputs['primer']", "inputs['num_steps']", "inputs['temperature']",
               "inputs['seed']", "outputs['tokens']", "outputs['log_p']",
               "DT_INT32", "DT_INT64", "DT_FLOAT"):
    assert line in generate


def test_saved_model_cli_run_produces_valid_tokens(export, tmp_path):
  outdir = str(tmp_path / "cli_out")
  result = _saved_model_cli(
      "run", "--dir", export["path"], "--tag_set", "serve",
      "--signature_def", "serving_default",
      "--input_exprs", "primer=[[14,1],[3,5]];num_steps=12;temperature=1.0;seed=3",
      "--outdir", outdir)
  assert result.returncode == 0, result.stderr[-2000:]
  tokens = np.load(os.path.join(outdir, "tokens.npy"))
  log_p = np.load(os.path.join(outdir, "log_p.npy"))
  assert tokens.shape == (2, 12) and tokens.dtype == np.int32
  assert tokens.min() >= 0 and tokens.max() < NUM_CLASSES
  assert log_p.shape == (2, 12) and np.all(log_p <= 0.0)
  # The TF1 session path of the CLI and the TF2 load agree.
  want = export["loaded"].signatures["serving_default"](
      **_generate_args([[14, 1], [3, 5]], 12, 1.0, 3))
  np.testing.assert_array_equal(tokens, want["tokens"])


def test_versions_increment_and_never_overwrite(tmp_path):
  base = str(tmp_path / "models")

  def writer(text):
    def write(directory):
      with open(os.path.join(directory, "payload.txt"), "w") as f:
        f.write(text)
    return write

  assert versioning.save_new_version(base, writer("a"))[0] == 1
  assert versioning.save_new_version(base, writer("b"))[0] == 2
  os.makedirs(os.path.join(base, "7", "keep"))   # someone else's version 7
  open(os.path.join(base, "notes.txt"), "w").close()   # not a version
  os.makedirs(os.path.join(base, "v9"))                # not a version either
  assert versioning.save_new_version(base, writer("c")) == (8, os.path.join(base, "8"))
  for version, text in ((1, "a"), (2, "b"), (8, "c")):
    with open(os.path.join(base, str(version), "payload.txt")) as f:
      assert f.read() == text
  assert os.listdir(os.path.join(base, "7")) == ["keep"]

  def failing(directory):
    writer("partial")(directory)
    raise RuntimeError("disk full")
  with pytest.raises(RuntimeError, match="disk full"):
    versioning.save_new_version(base, failing)
  assert versioning.existing_versions(base) == [1, 2, 7, 8]
  assert not [n for n in os.listdir(base) if n.startswith(".tmp")]


def test_taken_version_number_is_skipped(tmp_path, monkeypatch):
  """If another exporter publishes the number we listed, we take the next."""
  base = str(tmp_path / "models")
  versioning.save_new_version(base, lambda d: None)
  real_next = versioning.next_version

  def racing_next(path):
    version = real_next(path)
    os.makedirs(os.path.join(path, str(version), "theirs"))  # published meanwhile
    return version
  monkeypatch.setattr(versioning, "next_version", racing_next)
  assert versioning.save_new_version(base, lambda d: None)[0] == 3
  assert os.listdir(os.path.join(base, "2")) == ["theirs"]


def test_export_sources(tuned_dir, tmp_path, monkeypatch):
  with pytest.raises(ValueError, match="not both"):
    exporter.load_source(tuned_dir, tuned_dir)
  # Default source: the shipped Note RNN checkpoint (clear error while absent).
  missing = str(tmp_path / "no_checkpoint")
  monkeypatch.setattr(note_rnn, "SHIPPED_CHECKPOINT_DIR", missing)
  with pytest.raises(FileNotFoundError, match="no_checkpoint"):
    exporter.load_source()
  note_rnn.save(NoteRNN((12,)), missing)
  kind, reward_rnn, q_network, provenance = exporter.load_source()
  assert kind == "note_rnn" and q_network is None
  assert reward_rnn.layer_sizes == (12,) and provenance["source"] == missing
  with pytest.raises(FileNotFoundError, match="not a tuned melody model"):
    exporter.load_source(tuned_model_dir=missing)


def test_command_line_exports_note_rnn(tmp_path):
  """python -m export.saved_model on a bare Note RNN checkpoint; a second
  export to the same base path adds version 2."""
  checkpoint = str(tmp_path / "note_rnn")
  note_rnn.save(NoteRNN((12,)), checkpoint)
  base = str(tmp_path / "serving" / "note_rnn")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  result = subprocess.run(
      [sys.executable, "-m", "export.saved_model",
       f"--note_rnn_checkpoint={checkpoint}", f"--model_base_path={base}",
       "--max_steps=64", "--export_tfagents_policy=false"],
      capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"serving: version 1 -> {os.path.join(base, '1')}" in result.stdout
  assert not os.path.exists(base + exporter.TFAGENTS_SUFFIX)
  first_pb = os.path.join(base, "1", "saved_model.pb")
  with open(first_pb, "rb") as f:
    first_bytes = f.read()
  results = exporter.export_all(base, note_rnn_checkpoint=checkpoint,
                                   max_steps=32, export_tfagents_policy=False)
  assert results["serving"][0] == 2
  assert versioning.existing_versions(base) == [1, 2]
  with open(first_pb, "rb") as f:
    assert f.read() == first_bytes  # version 1 untouched
  loaded = tf.saved_model.load(os.path.join(base, "1"))
  out = loaded.signatures["serving_default"](**_generate_args([[14]], 8, 0.0))
  assert out["tokens"].shape == (1, 8)
  with pytest.raises(tf.errors.InvalidArgumentError, match="num_steps must be <= 64"):
    loaded.signatures["serving_default"](**_generate_args([[14]], 65))
  state = loaded.signatures["initial_state"](batch_size=tf.constant(1))
  assert set(state) == {"reward_h0", "reward_c0"}


def test_export_requires_base_path(tuned_dir):
  with pytest.raises(ValueError, match="model_base_path is required"):
    exporter.export_all("", tuned_model_dir=tuned_dir)
