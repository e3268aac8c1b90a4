"""The HTTP/1.1 wire: the front door for clients, the member client, bodies, headers."""
