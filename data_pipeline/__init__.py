"""MIDI -> NoteSequence -> 38-token melodies, as a tf.data pipeline.

The modules that use TensorFlow (dataset, tfrecords, build_dataset,
build_corpus) import ``data_pipeline.keras_setup`` first themselves. The
package does not: what Apache Beam's worker processes import
(beam_pipeline's transforms, convert, melodies, encoding, tfrecord_format)
brings no TensorFlow, whose import takes seconds per worker. (A local run's
workers inherit TF_CPP_MIN_LOG_LEVEL from the driver, which already kept
keras_setup from importing it; a cluster's workers need not have it.)
"""
