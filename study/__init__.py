"""The Optuna study driver."""
