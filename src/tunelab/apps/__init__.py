"""Applications built on tunelab's public API and service: the support bot first (``support``)."""
