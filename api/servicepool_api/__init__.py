"""servicepool's API: the ServicePool model, its loader and status, and the operator-proxy
contract. Both the operator and the proxy depend on it; it depends on neither."""

__version__ = "0.1.0"
