"""Tests of kpreg.compare."""
