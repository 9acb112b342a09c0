"""Integrations with other trainers, where the reference keeps them (``onthefly.wrappers.lightning``)."""
