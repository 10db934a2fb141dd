"""The serving client's requests, fed to the exported SavedModel the way TF
Serving would (inputs converted to the signature's dtypes): REST JSON always,
gRPC PredictRequest when tensorflow-serving-api is installed."""
import json

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline.encoding import NUM_CLASSES
from export import melody_generator
from export import exporter
from export import serving_client
from rl_tuner_tf.note_rnn import NoteRNN


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
  tf.random.set_seed(5)
  generator = melody_generator.MelodyGenerator("note_rnn", NoteRNN((16,)))
  base = str(tmp_path_factory.mktemp("serving") / "melody")
  _, path = exporter.export_serving_model(generator, base)
  return tf.saved_model.load(path)


def _serve(loaded, signature_name, named_arrays):
  """What the server does with a request: look up the signature, convert each
  named input to its declared dtype (failing on unknown names), call it."""
  fn = loaded.signatures[signature_name]
  specs = fn.structured_input_signature[1]
  assert set(named_arrays) == set(specs), (set(named_arrays), set(specs))
  return fn(**{name: tf.constant(np.asarray(value), specs[name].dtype)
               for name, value in named_arrays.items()})


def test_generate_inputs():
  signature, inputs = serving_client.generate_inputs(primer=[14, 1, 1], num_steps=8,
                                                     temperature=0.5, seed=3)
  assert signature == "serving_default"
  assert inputs["primer"].shape == (1, 3) and inputs["primer"].dtype == np.int32
  assert inputs["num_steps"].dtype == np.int32 and inputs["seed"].dtype == np.int64
  assert inputs["temperature"].dtype == np.float32
  signature, inputs = serving_client.generate_inputs(batch_size=4)
  assert signature == "generate_random_primer" and int(inputs["batch_size"]) == 4
  with pytest.raises(ValueError, match="exactly one"):
    serving_client.generate_inputs(primer=[1], batch_size=2)
  with pytest.raises(ValueError, match="primer must be"):
    serving_client.generate_inputs(primer=np.zeros([1, 0]))


def test_rest_url_and_body(loaded):
  assert (serving_client.rest_predict_url("localhost:8501", "melody")
          == "http://localhost:8501/v1/models/melody:predict")
  assert (serving_client.rest_predict_url("h:1", "m", version=3)
          == "http://h:1/v1/models/m/versions/3:predict")
  signature, inputs = serving_client.generate_inputs(
      primer=[[14, 1], [3, 5]], num_steps=10, temperature=1.0, seed=42)
  body = json.loads(json.dumps(serving_client.rest_predict_body(signature, inputs)))
  assert body == {"signature_name": "serving_default",
                  "inputs": {"primer": [[14, 1], [3, 5]], "num_steps": 10,
                             "temperature": 1.0, "seed": 42}}
  outputs = _serve(loaded, body["signature_name"], body["inputs"])
  # The reply TF Serving would send, parsed back by the client.
  reply = json.loads(json.dumps(
      {"outputs": {k: v.numpy().tolist() for k, v in outputs.items()}}))
  parsed = serving_client.parse_rest_reply(reply)
  assert parsed["tokens"].shape == (2, 10) and parsed["tokens"].dtype == np.int32
  assert parsed["tokens"].min() >= 0 and parsed["tokens"].max() < NUM_CLASSES
  np.testing.assert_allclose(parsed["log_p"], outputs["log_p"], rtol=1e-6)
  with pytest.raises(RuntimeError, match="num_steps must be"):
    serving_client.parse_rest_reply({"error": "num_steps must be >= 1"})


def test_rest_body_for_random_primer(loaded):
  signature, inputs = serving_client.generate_inputs(batch_size=3, num_steps=4)
  body = json.loads(json.dumps(serving_client.rest_predict_body(signature, inputs)))
  outputs = _serve(loaded, body["signature_name"], body["inputs"])
  assert outputs["tokens"].shape == (3, 4) and outputs["primer"].shape == (3, 1)


def test_grpc_predict_request(loaded):
  pytest.importorskip("tensorflow_serving.apis.predict_pb2")
  signature, inputs = serving_client.generate_inputs(
      primer=[[14, 1], [3, 5]], num_steps=10, temperature=1.0, seed=42)
  request = serving_client.make_predict_request(signature, inputs, "melody", version=2)
  assert request.model_spec.name == "melody"
  assert request.model_spec.signature_name == "serving_default"
  assert request.model_spec.version.value == 2
  dtypes = {name: tf.as_dtype(proto.dtype) for name, proto in request.inputs.items()}
  assert dtypes == {"primer": tf.int32, "num_steps": tf.int32,
                    "temperature": tf.float32, "seed": tf.int64}
  arrays = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
  grpc_out = _serve(loaded, request.model_spec.signature_name, arrays)
  rest_body = serving_client.rest_predict_body(signature, inputs)
  rest_out = _serve(loaded, rest_body["signature_name"], rest_body["inputs"])
  np.testing.assert_array_equal(grpc_out["tokens"], rest_out["tokens"])
