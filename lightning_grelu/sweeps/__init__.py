"""Sweeps: an Optuna driver (the distributed engine is Optuna's storage: SQLite, journal file,
PostgreSQL), trials run as fresh processes of ``train(cfg)``."""
