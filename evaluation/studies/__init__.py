"""Validation studies (Django app): multi-site runs, per-case metric rows, summaries and plotly reports."""
