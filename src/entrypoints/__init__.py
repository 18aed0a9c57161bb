"""Entrypoints: settings, one dependency-injector container per command, the CLI."""
