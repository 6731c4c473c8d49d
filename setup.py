"""vlmcls_jax: "Why are Visually-Grounded Language Models Bad at Image Classification?" in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="vlmcls_jax",
    version="0.1.0",
    description="JAX/Flax reimplementation of Zhang et al., NeurIPS 2024: VLMs vs CLIP on image classification",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["vlmcls_jax", "vlmcls_jax.*"]),
    package_data={"vlmcls_jax.eval": ["study_numbers.json"]},
    python_requires=">=3.11",
    # Ranges that resolve on Python 3.11 (flax 0.12.8, jax 0.10.x) and 3.12 (newer flax).
    install_requires=[
        "jax>=0.9,<0.12",
        "flax>=0.12.8,<0.14",
        "optax>=0.2.6,<0.4",
        "orbax-checkpoint>=0.11,<0.14",
        "ml-collections>=1.0,<2",
        "grain>=0.2.15,<0.4",
        "tensorflow-datasets>=4.9.9,<5",
        "transformers>=5.0,<6",
        "safetensors>=0.5",
        "huggingface_hub>=1.0",
        "tokenizers>=0.22",
        "sentencepiece>=0.2",
        "protobuf",
        "pillow>=10",
        "numpy>=1.26",
        "absl-py",
        "tensorboardX>=2.6",        # TensorBoard event files without TensorFlow
        "tqdm",
        "matplotlib>=3.8",
        "scipy>=1.11",              # correlations (analysis.correlation)
    ],
    extras_require={
        # torch is the reference implementation in tests only; the library never imports it.
        # jax[tpu] brings libtpu, whose compiler tests/test_plan.py runs on the CPU (no TPU needed): the same
        # range as jax, so pip picks the libtpu built for the jax it installs.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "torch==2.13.0", "hypothesis>=6.100", "jax[tpu]>=0.9,<0.12"],
        "tpu": ["jax[tpu]>=0.9,<0.12"],
        "gpu": ["jax[cuda12]>=0.9,<0.12"],
    },
)
