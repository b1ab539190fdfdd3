"""Diagnostics of training: each function computes one documented quantity (THEORY.md section 5)."""
