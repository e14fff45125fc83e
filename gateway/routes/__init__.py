"""Route modules: system, assistants, threads, runs. Each exposes ``routes``."""
