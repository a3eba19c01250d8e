"""Dataset stage: import, validate, dedupe, split and version labelled images."""
