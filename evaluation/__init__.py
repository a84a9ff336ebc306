"""Evaluation: contour metrics and statistics as plain modules (no Django), plus the validation-study app (``evaluation.studies``)."""
