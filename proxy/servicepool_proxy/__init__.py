"""servicepool's balancing proxy: one stable name in front of interchangeable members."""

__version__ = "0.1.0"
