"""SavedModel exports (TF Serving layout) of Note RNNs and tuned melody models.

  saved_model       python -m export.saved_model: the command line (absl flags)
  exporter          load a tuned model / Note RNN checkpoint, write the exports
  melody_generator  the served tf.Module: generate / generate_random_primer /
                    step / initial_state signatures, in-graph input validation
  fused_lstm        NoteRNN.step with fused math for the in-graph loop
  versioning        <model_base_path>/<version>/, atomic, never overwriting
  tfagents_policy   the TF-Agents TFPolicy and its PolicySaver export
  serving_client    REST / gRPC (PredictRequest) client for TF Serving
"""
from data_pipeline import keras_setup as _keras_setup  # noqa: F401
