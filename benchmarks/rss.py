"""Peak resident memory of a process, sampled in a background thread: the
indexing benchmark's own process and workers (:mod:`benchmarks.index`), the
indexer subprocess of the library run (:mod:`benchmarks.library`) and the
app server under load (:mod:`benchmarks.load`)."""

from __future__ import annotations

import threading


class RssSampler:
    """Resident memory (MB) of process ``pid`` (default: this one), with its
    descendants when ``children``: :meth:`now`, and ``peak`` over samples
    taken every ``interval`` s between :meth:`start` and :meth:`stop` (or
    the ``with`` block), once at each end too. Sampling ends early when the
    process is gone."""

    def __init__(self, pid: int | None = None, children: bool = False, interval: float = 0.5):
        import psutil

        self.proc = psutil.Process(pid)
        self.children = children
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def now(self) -> float:
        import psutil

        total = self.proc.memory_info().rss
        if self.children:
            for child in self.proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:        # a child that exited meanwhile
                    pass
        return total / 2**20

    def _sample(self) -> bool:
        """Take one sample into ``peak``; False when the process is gone."""
        import psutil

        try:
            self.peak = max(self.peak, self.now())
        except psutil.Error:
            return False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and self._sample():
            pass

    def start(self) -> RssSampler:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stop sampling (bounded wait); the peak in MB."""
        self._stop.set()
        self._thread.join(5)
        self._sample()
        return self.peak

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
