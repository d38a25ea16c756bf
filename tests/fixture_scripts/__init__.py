"""Client scripts used by the integration and fault tests (not shipped)."""
