"""servicepool's balancing proxy: one stable name in front of interchangeable members."""
