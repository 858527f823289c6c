"""Ranking-systems product: Beam sample pipelines, multi-task ranking models, TF-Serving scoring."""
from setuptools import find_packages, setup

# Exact pins (DEVELOPERS.md "Fixed decisions"). tensorflow, not tensorflow-cpu: the other
# packages depend on `tensorflow`, so the -cpu wheel would install TensorFlow twice.
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-recommenders==0.7.7",
    "tensorflow-serving-api==2.21.0",
    "tensorboard==2.21.0",  # not a TensorFlow 2.21 dependency; Keras' TensorBoard callback needs it
    "apache-beam==2.77.0",
    "google-crc32c==1.9.0",
    "pyarrow==25.0.1",
    "PyYAML==6.0.3",
    "numpy==2.4.6",
]

setup(
    name="ranking-systems",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipelines*", "ranking*", "serving*"]),
    package_data={"": ["*.yaml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "dataflow": ["apache-beam[gcp]==2.77.0"],
        "dev": ["pytest==9.2.0"],
    },
    entry_points={
        "console_scripts": [
            "ranking-simulate=pipelines.simulator.cli:main",
            "ranking-pipeline=pipelines.cli:main",
            "ranking-train=ranking.train:main",
            "ranking-export=ranking.export_cli:main",
            "ranking-serve=serving.server:main",
            "ranking-score=serving.client:main",
        ],
    },
)
