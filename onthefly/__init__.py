"""The reference product's API (onthefly-ai), served by onthefly_nb.

``from onthefly import Trainer, quickstart, attach_lightning`` and ``%load_ext onthefly`` work as they
do there.
"""

from onthefly_nb import Session, Trainer, attach_lightning, load_ipython_extension, quickstart

__all__ = ["Session", "Trainer", "attach_lightning", "load_ipython_extension", "quickstart"]
