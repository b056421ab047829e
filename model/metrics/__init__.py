"""Evaluation metrics exactly as the benchmarks' official scripts compute them."""
