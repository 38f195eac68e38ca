"""Tests of kpreg.training."""
