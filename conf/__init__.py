"""Marks conf/ as the package prunebench.conf inside the wheel (Hydra's pkg:// search path needs it)."""
