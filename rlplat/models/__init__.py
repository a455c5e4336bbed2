"""Model construction helpers (tiny local models for CPU runs and tests)."""
