"""The study's analyses of why VLMs classify badly (its Section 3), one module per analysis."""
