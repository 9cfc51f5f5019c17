"""Stain-robust WBC benchmark: data, stain operations, training, evaluation, statistics, reports."""
