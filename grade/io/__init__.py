"""Readers and writers for video (PyAV) and stills (OpenCV)."""
