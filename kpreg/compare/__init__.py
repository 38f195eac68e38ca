"""Comparing heads: the study runner, its report, what each training run records (run logging, model cost), and
drawing."""
