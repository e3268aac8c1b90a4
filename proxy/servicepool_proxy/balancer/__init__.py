"""Pure balancing logic: member state, passive health, strategies. No I/O in here."""
