"""Prompt templates: immutable versions, movable labels, selection with fallback levels and a
process-local cache kept consistent across gateway processes by the store's generation counter."""
