"""The reference product's API (onthefly-ai 0.1.4), served by onthefly_nb.

``from onthefly import Trainer, quickstart, attach_lightning`` (also
``onthefly.wrappers.lightning.attach_lightning``) and ``%load_ext onthefly`` work as they do there;
docs/reference-api.md lists every name and keyword.
"""

from onthefly_nb import Session, Trainer, __version__, attach_lightning, load_ipython_extension, quickstart

__all__ = ["Session", "Trainer", "__version__", "attach_lightning", "load_ipython_extension", "quickstart"]
