"""The reference product's API (onthefly-ai), served by onthefly_nb.

``from onthefly import Trainer, quickstart`` and ``%load_ext onthefly`` work as they do there.
"""

from onthefly_nb import Session, Trainer, load_ipython_extension, quickstart

__all__ = ["Session", "Trainer", "load_ipython_extension", "quickstart"]
