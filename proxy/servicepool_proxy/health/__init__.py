"""Active health: the pollers that probe members and read their load and models."""
