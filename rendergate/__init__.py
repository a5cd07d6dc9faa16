"""rendergate: validate GPU render container images before promotion."""
