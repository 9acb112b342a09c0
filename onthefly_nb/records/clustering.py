"""When the hard samples are clustered: on demand, and at epoch ends at least ``every`` seconds
apart (the first one at least ``FIRST_SECONDS`` into the run), always on a worker thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from ..run.control import run_into
from .clusters import Clustering, cluster
from .records import Records

FIRST_SECONDS = 5.0


class ClusterSchedule:
    """Clusters ``records`` off the training thread; ``on_clustered(clustering)`` runs after each."""

    def __init__(self, records: Records, step: Callable[[], int], every: float | None,
                 on_clustered: Callable[[Clustering], None], name: str) -> None:
        self.records = records
        self._step = step
        self.every = every
        self._on_clustered = on_clustered
        self._name = name
        self._job: Future | None = None
        self._last = time.monotonic() - (every or 0.0) + FIRST_SECONDS

    def cluster(self, k: int | None = None) -> Future:
        """Cluster now on a worker thread (training goes on); a Future of the Clustering (None: too few)."""
        step, job = self._step(), Future()
        self._last = time.monotonic()
        self._job = job
        threading.Thread(target=run_into, args=(lambda: self._cluster(step, k), job),
                         name=f"onthefly-cluster-{self._name}", daemon=True).start()
        return job

    def epoch_ended(self, _epoch: int) -> None:
        """At an epoch end: cluster if it is due and none is under way."""
        due = self.every is not None and time.monotonic() - self._last >= self.every
        if due and (self._job is None or self._job.done()):
            self.cluster()

    def _cluster(self, step: int, k: int | None) -> Clustering | None:
        result = cluster(self.records.slice(), step, k, self.records.penultimate)
        if result is not None:
            self.records.clustering = result
            self._on_clustered(result)
        return result
