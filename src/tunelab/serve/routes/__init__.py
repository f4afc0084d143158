"""One router per resource: predict, models, health (and metrics), keys (admin), usage."""
