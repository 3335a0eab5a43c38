"""Settings modules: ``base`` (shared, production-safe), ``dev``, ``test``, ``production``."""
