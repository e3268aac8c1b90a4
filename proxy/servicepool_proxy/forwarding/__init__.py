"""One request through the pool: admission, attempts, outcomes, relay."""
