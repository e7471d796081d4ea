"""Hostile inputs and faults: a generated corpus of bad files, odd files and failures, end to end."""
