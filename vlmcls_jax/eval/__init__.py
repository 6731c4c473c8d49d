"""Evaluations of the study: metrics, candidate sets, and the per-experiment evaluators."""
