"""Stain-robust WBC benchmark: data, stain operations, training, evaluation, statistics, reports."""

from core.isa import apply_pin

apply_pin()  # before torch runs anything: every entry point and worker imports this package first
