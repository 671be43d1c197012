"""Run records -> tables and figures. Reads files (or W&B's public API), never live objects."""
