"""``from onthefly.wrappers.lightning import attach_lightning``, as in the reference."""

from onthefly_nb.integrations.lightning import attach_lightning

__all__ = ["attach_lightning"]
