"""SavedModel exports (TF Serving layout) of Note RNNs and tuned melody models."""
from rl_tuner_tf import keras_setup as _keras_setup  # noqa: F401
