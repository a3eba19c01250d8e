"""The web console: the AutoML Vision workflow in a browser, locally and in a cluster."""
