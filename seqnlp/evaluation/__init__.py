"""Evaluation: scores, their per-unit statistics, bootstrap intervals and paired tests, calibration, reports."""
