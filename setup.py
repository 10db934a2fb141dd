"""rl-tuner-tf: RL Tuner (Jaques et al., 2017) in TensorFlow 2 / TF-Agents.

The dependency set is the one recorded in shared/docs/dependencies.md (verified
to install together). Why each pin is there:
  * tf-agents 0.19 (last release) pins typing-extensions 4.5 and tfp 0.23;
  * tfp 0.23 and tf-agents need Keras 2, hence tf-keras (selected at import by
    data_pipeline/keras_setup.py);
  * note-seq imports IPython, and IPython >= 8.13 cannot import with
    typing-extensions 4.5, hence ipython<8.13.
"""
from setuptools import find_packages, setup

# The listening study (listening_study/): web app, database, audio, tests.
_STUDY = ["flask>=3", "gunicorn", "sqlalchemy>=2", "scipy", "pyfluidsynth",
          # PostgreSQL driver (SQLAlchemy's default for postgresql:// URLs);
          # no dependencies, so typing-extensions stays at TF-Agents' 4.5
          # (psycopg 3 from 3.2.2 needs >= 4.6).
          "psycopg2-binary>=2.9.9"]
# Grids on local Ray (--parallel_runs) or a Ray cluster (--ray_address).
_CLUSTER = ["ray==2.60.*"]
# The documentation site (mkdocs.yml; tests/test_docs_site.py builds it strictly).
_DOCS = ["mkdocs==1.6.1"]

setup(
    name="rl-tuner-tf",
    version="0.1.0",
    description="Tuning a Note RNN with RL (Q, Psi and G learning), TF2 + TF-Agents",
    packages=find_packages(include=["rl_tuner_tf*", "data_pipeline*", "export*",
                                     "listening_study*"]),
    package_data={"rl_tuner_tf": ["checkpoints/note_rnn/*", "presets/*.json"],
                  "listening_study": ["templates/*", "static/*"]},
    include_package_data=True,
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow==2.21.*",
        "tf-keras==2.21.*",
        "tensorflow-probability~=0.23.0",
        "tf-agents==0.19.*",
        "note-seq==0.0.5",
        "ipython<8.13",
        "numpy",
        "absl-py",
        "music21",
        "matplotlib",
        "tensorboard",
        "scipy",  # evaluation's confidence intervals (Student t)
        # The data pipeline (data_pipeline/beam_pipeline.py); [tfrecord] brings crcmod for
        # WriteToTFRecord. 2.77 moves protobuf to 6.33, pillow < 13, python-dateutil < 3,
        # which the rest of the set accepts (shared/docs/dependencies.md).
        "apache-beam[tfrecord]==2.77.*",
    ],
    extras_require={
        "study": _STUDY,
        "cluster": _CLUSTER,
        "docs": _DOCS,
        # Everything every test needs (the Ray grid tests too; MusPy for the
        # cross-check of the beyond-the-rules metrics).
        "test": (["pytest", "tensorflow-serving-api==2.21.*", "selenium",
                  "muspy==0.5.*"] + _STUDY + _CLUSTER + _DOCS),
    },
)
