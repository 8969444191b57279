"""Peak memory of a block of a benchmark."""

from __future__ import annotations

import threading


class PeakRSS:
    """Peak resident memory of this process while a block runs (sampled every 0.1 s)."""

    def __enter__(self):
        import psutil

        self.peak, self._stop = 0, threading.Event()
        process = psutil.Process()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, process.memory_info().rss)
                self._stop.wait(0.1)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
