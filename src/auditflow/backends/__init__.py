"""Pluggable backends chosen by URL scheme: broker, window state and alert store."""
