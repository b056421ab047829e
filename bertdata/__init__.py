"""What `pipelines/` writes and `model/` reads, written once for both.

The Beam jobs and the trainer may not import each other (README, "Layout"), so the rules and
file operations they share live here: the special tokens and the masking rule that shards are
written by, paths and atomic writes on local disks and gs://, and the lock that keeps two runs
out of one output directory. It imports only numpy, pyarrow, fsspec and `schemas/`.
"""
