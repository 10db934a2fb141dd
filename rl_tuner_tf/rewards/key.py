"""Rule 1, key membership: -1 if the new note is not in C major."""
from typing import Optional, TYPE_CHECKING

from data_pipeline import keras_setup  # noqa: F401
import tensorflow as tf

from data_pipeline import encoding

if TYPE_CHECKING:
  from rl_tuner_tf.rewards import composition

PENALTY = -1.0
_KEY_MASK = encoding.key_mask()  # bool[38]; note-off / no-event are in key


def not_in_key(action: tf.Tensor,
               key_mask: Optional[tf.types.experimental.TensorLike] = None
               ) -> tf.Tensor:
  """[B] bool: the note is outside the key set (reference section 6.1)."""
  mask = tf.constant(_KEY_MASK if key_mask is None else key_mask, tf.bool)
  return tf.logical_not(tf.gather(mask, tf.cast(action, tf.int32)))


def key_reward(state: "composition.CompositionState", action: tf.Tensor,
               penalty: float = PENALTY) -> tf.Tensor:
  del state  # the key rule looks at the new note only
  return tf.where(not_in_key(action), tf.constant(penalty, tf.float32), 0.0)
