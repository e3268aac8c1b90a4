"""Where the pool comes from: the file, the ConfigMap through the API, mounted Secrets."""
