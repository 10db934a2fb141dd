"""The dataset's records without TensorFlow: Example bytes and TFRecord framing.

A melody record is a serialized ``tf.train.Example`` with one feature
``tokens`` (an int64 list). The pipeline's workers write shards with this
module, so they never import TensorFlow (about 10 s per process on a busy
machine); ``tests/test_data_beam_pipeline.py`` checks the bytes against
TensorFlow's own ``tf.train.Example`` and ``tf.io.TFRecordWriter``.

Example wire format (protobuf, tensorflow/core/example/{example,feature}.proto):
  Example  { Features features = 1; }
  Features { map<string, Feature> feature = 1; }   entry: key = 1, value = 2
  Feature  { Int64List int64_list = 3; }
  Int64List { repeated int64 value = 1 [packed = true]; }
TFRecord framing of one record: uint64 length (little endian),
uint32 masked_crc32c(length), data, uint32 masked_crc32c(data).
"""
import os
import struct
from typing import Iterable, Sequence, Union

from crcmod import predefined  # apache-beam[tfrecord] brings crcmod

import numpy as np

SPLITS = ("train", "validation")
TOKENS_FEATURE = "tokens"
_crc32c = predefined.mkPredefinedCrcFun("crc-32c")
_CRC_MASK_DELTA = 0xA282EAD8


def shard_name(split: str, index: int, num_shards: int) -> str:
  return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def _varint(value):
  """Protobuf base-128 varint of a non-negative int."""
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _field(number, payload):
  """A length-delimited field (wire type 2)."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def tokens_to_example_bytes(tokens: Union[Sequence[int], np.ndarray]
                            ) -> bytes:
  """Token melody (values 0..37) -> serialized tf.train.Example."""
  tokens = np.asarray(tokens, dtype=np.int64)
  if tokens.size and (tokens.min() < 0):
    raise ValueError("tokens must be non-negative")
  if tokens.size and tokens.max() < 0x80:
    packed = tokens.astype(np.uint8).tobytes()  # one byte per varint
  else:
    packed = b"".join(_varint(int(t)) for t in tokens)
  int64_list = _field(1, packed) if packed else b""
  feature = _field(3, int64_list)
  entry = _field(1, TOKENS_FEATURE.encode()) + _field(2, feature)
  return _field(1, _field(1, entry))


def masked_crc32c(data: bytes) -> int:
  crc = _crc32c(data)
  return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
  """One TFRecord: length, its masked CRC, the data, its masked CRC."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data +
          struct.pack("<I", masked_crc32c(data)))


def write_records(path: str, records: Iterable[bytes]) -> str:
  """Writes serialized records as a TFRecord file at `path`, flushed and
  fsynced (publish it with atomic_files.publish_file / os.replace)."""
  with open(path, "wb") as f:
    for data in records:
      f.write(frame_record(data))
    f.flush()
    os.fsync(f.fileno())
  return path
