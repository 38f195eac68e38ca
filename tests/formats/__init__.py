"""Tests of kpreg.formats."""
