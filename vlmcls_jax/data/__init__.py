"""Data: image preprocessing, prompts and tokenization, sources and input pipelines."""
