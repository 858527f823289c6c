"""Multi-task, multi-scenario ranking models on TensorFlow Recommenders."""
import os

# TFRS 0.7.7 needs Keras 2; the pipelines share the model's hashing ops, so the switch must be
# set before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
