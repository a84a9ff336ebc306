"""Blinded expert-rubric scoring of contours (reading studies)."""
