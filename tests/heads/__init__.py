"""Tests of kpreg.heads: the suite every head passes, and each head's own math."""
