"""Adapters: one technology per module, each implementing a domain port."""
