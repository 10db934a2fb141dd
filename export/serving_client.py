r"""A small client for the melody model behind TF Serving (REST or gRPC).

Server (see README, "Serving with TF Serving"):

    docker run -p 8500:8500 -p 8501:8501 \
      --mount type=bind,source=$PWD/generated/serving/melody,target=/models/melody \
      -e MODEL_NAME=melody -t tensorflow/serving

Client:

    python -m export.serving_client --server=localhost:8501 --protocol=rest \
        --batch_size=4 --num_steps=32 --temperature=1.0 --seed=7
    python -m export.serving_client --server=localhost:8500 --protocol=grpc \
        --primer=14,1,1,1 --num_steps=32

REST needs only the standard library. gRPC needs the ``tensorflow-serving-api``
package (``pip install "tensorflow-serving-api==2.21.*"``, which matches
TensorFlow 2.21); building a ``PredictRequest`` without it raises ImportError.

Request contract (export/melody_generator.py): signature ``serving_default``
takes primer int32 [B, T], num_steps int32, temperature float32 (0 = greedy),
seed int64; ``generate_random_primer`` takes batch_size int32 instead of the
primer. Both return tokens int32 [B, num_steps] and log_p float32 [B, num_steps].
"""
import json
from typing import (Any, Dict, List, Mapping, Optional, Tuple,
                    TYPE_CHECKING)
import urllib.error
import urllib.request

from data_pipeline import keras_setup  # noqa: F401  (Keras 2 before tf.keras)
from absl import app
from absl import flags
from data_pipeline import console
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
  from tensorflow_serving.apis import predict_pb2

GENERATE_SIGNATURE = "serving_default"
RANDOM_PRIMER_SIGNATURE = "generate_random_primer"
DEFAULT_MODEL_NAME = "melody"

# Input name -> numpy dtype of the exported signatures.
INPUT_DTYPES = {
    "primer": np.int32,
    "batch_size": np.int32,
    "num_steps": np.int32,
    "temperature": np.float32,
    "seed": np.int64,
}
OUTPUT_DTYPES = {"tokens": np.int32, "log_p": np.float32, "primer": np.int32}


def generate_inputs(primer: Optional[npt.ArrayLike] = None,
                    batch_size: Optional[int] = None, num_steps: int = 32,
                    temperature: float = 1.0, seed: int = 0
                    ) -> Tuple[str, Dict[str, np.ndarray]]:
  """-> (signature name, {input name: numpy value of the signature's dtype}).

  Give ``primer`` ([B, T] notes; a flat list is one melody) to continue
  melodies, or ``batch_size`` to start each from a random note.
  """
  if (primer is None) == (batch_size is None):
    raise ValueError("give exactly one of primer or batch_size")
  inputs = {
      "num_steps": np.asarray(num_steps, INPUT_DTYPES["num_steps"]),
      "temperature": np.asarray(temperature, INPUT_DTYPES["temperature"]),
      "seed": np.asarray(seed, INPUT_DTYPES["seed"]),
  }
  if primer is not None:
    primer = np.asarray(primer)
    if primer.ndim == 1:
      primer = primer[np.newaxis, :]
    if primer.ndim != 2 or primer.shape[1] < 1:
      raise ValueError(f"primer must be [batch, time>=1] notes, got shape {primer.shape}")
    inputs["primer"] = primer.astype(INPUT_DTYPES["primer"])
    return GENERATE_SIGNATURE, inputs
  inputs["batch_size"] = np.asarray(batch_size, INPUT_DTYPES["batch_size"])
  return RANDOM_PRIMER_SIGNATURE, inputs


# -- REST ----------------------------------------------------------------------
def rest_predict_url(host_port: str = "localhost:8501",
                     model_name: str = DEFAULT_MODEL_NAME,
                     version: Optional[int] = None) -> str:
  version_part = "" if version is None else f"/versions/{int(version)}"
  return f"http://{host_port}/v1/models/{model_name}{version_part}:predict"


def rest_predict_body(signature_name: str,
                      inputs: Mapping[str, npt.ArrayLike]) -> Dict[str, Any]:
  """The JSON body of a REST ``:predict`` call (columnar "inputs" format)."""
  return {"signature_name": signature_name,
          "inputs": {name: np.asarray(v).tolist() for name, v in inputs.items()}}


def predict_rest(url: str, body: Mapping[str, Any], timeout_s: float = 30.0
                 ) -> Dict[str, np.ndarray]:
  """POSTs ``body``; -> {output name: numpy array}."""
  request = urllib.request.Request(
      url, data=json.dumps(body).encode("utf-8"),
      headers={"Content-Type": "application/json"}, method="POST")
  try:
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
      reply = json.loads(response.read().decode("utf-8"))
  except urllib.error.HTTPError as e:  # TF Serving puts the reason in the body
    raise RuntimeError(f"TF Serving answered HTTP {e.code}: "
                       f"{e.read().decode('utf-8', 'replace')}") from e
  return parse_rest_reply(reply)


def parse_rest_reply(reply: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """{"outputs": {...}} (columnar reply) -> {output name: numpy array}."""
  if "error" in reply:
    raise RuntimeError(f"TF Serving error: {reply['error']}")
  return {name: np.asarray(value, OUTPUT_DTYPES.get(name))
          for name, value in reply["outputs"].items()}


# -- gRPC ----------------------------------------------------------------------
def _serving_apis():
  try:
    from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "gRPC requests need the tensorflow-serving-api package: "
        'pip install "tensorflow-serving-api==2.21.*"') from e
  return predict_pb2, prediction_service_pb2_grpc


def make_predict_request(signature_name: str,
                         inputs: Mapping[str, npt.ArrayLike],
                         model_name: str = DEFAULT_MODEL_NAME,
                         version: Optional[int] = None
                         ) -> "predict_pb2.PredictRequest":
  """A ``tensorflow.serving.PredictRequest`` with typed TensorProtos."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  predict_pb2, _ = _serving_apis()
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = int(version)
  for name, value in inputs.items():
    request.inputs[name].CopyFrom(
        tf.make_tensor_proto(value, dtype=tf.as_dtype(INPUT_DTYPES[name])))
  return request


def predict_grpc(target: str, request: "predict_pb2.PredictRequest",
                 timeout_s: float = 30.0) -> Dict[str, np.ndarray]:
  """Sends ``request`` to ``target`` (host:port); -> {output name: numpy array}."""
  import grpc  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _, service = _serving_apis()
  with grpc.insecure_channel(target) as channel:
    response = service.PredictionServiceStub(channel).Predict(request, timeout_s)
  return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


# -- command line --------------------------------------------------------------
FLAGS = flags.FLAGS


def define_flags() -> None:
  """Command-line flags; defined only when run as a program, so importing this
  module next to the other entry points (which share names such as --seed)
  never clashes."""
  flags.DEFINE_string("server", "localhost:8501",
                      "host:port of TF Serving (8501 REST, 8500 gRPC by default).")
  flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "How to call the server.")
  flags.DEFINE_string("model_name", DEFAULT_MODEL_NAME, "MODEL_NAME of the server.")
  flags.DEFINE_integer("model_version", None, "A specific version (default: latest).")
  flags.DEFINE_list("primer", None, "Primer notes (classes 0..37), e.g. 14,1,1,1.")
  flags.DEFINE_integer("batch_size", 1, "Melodies from random first notes (no --primer).")
  flags.DEFINE_integer("num_steps", 32, "Notes to generate.")
  flags.DEFINE_float("temperature", 1.0, "Softmax temperature; 0 = greedy.")
  flags.DEFINE_integer("seed", 0, "Seed: same seed, same melodies.")

def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  primer = None if FLAGS.primer is None else [int(x) for x in FLAGS.primer]
  signature, inputs = generate_inputs(
      primer=primer, batch_size=None if primer is not None else FLAGS.batch_size,
      num_steps=FLAGS.num_steps, temperature=FLAGS.temperature, seed=FLAGS.seed)
  if FLAGS.protocol == "rest":
    outputs = predict_rest(
        rest_predict_url(FLAGS.server, FLAGS.model_name, FLAGS.model_version),
        rest_predict_body(signature, inputs))
  else:
    outputs = predict_grpc(FLAGS.server, make_predict_request(
        signature, inputs, FLAGS.model_name, FLAGS.model_version))
  for tokens, log_p in zip(outputs["tokens"], outputs["log_p"]):
    print(" ".join(str(int(t)) for t in tokens),
          f"  mean log p = {float(np.mean(log_p)):.3f}")


if __name__ == "__main__":
  define_flags()
  console.run(main)
