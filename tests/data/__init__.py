"""Tests of kpreg.data."""
