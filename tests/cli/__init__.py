"""Tests of kpreg.cli."""
