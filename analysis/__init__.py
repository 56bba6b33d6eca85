"""Sensitivity analysis, plots and reports from Optuna storages."""
