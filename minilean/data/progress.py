"""A dependency-free progress display: a redrawn bar on a terminal, plain lines otherwise.

On a terminal the bar is redrawn in place (at most every ``min_interval`` seconds) with the
count, the latest metrics, the rate and the time left. When the stream is not a terminal (a log
file, CI), carriage returns would make a mess, so a plain line is printed at most every
``line_interval`` seconds, plus one at the end.
"""
import sys
import time

_BAR_WIDTH = 24


def format_duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_count(count, unit):
    if unit == "B":
        return f"{count / 2**20:.1f}MiB"
    return str(count)


class Progress:
    """Report progress towards ``total`` (None when unknown) on ``stream`` (stderr by default).

    Call ``update(count, **metrics)`` with the absolute count reached (e.g. the step number,
    so a resumed run just starts from its step) and ``close()`` at the end.
    """

    def __init__(self, total=None, initial=0, description="", unit="it", stream=None,
                 enabled=True, min_interval=0.1, line_interval=10.0, clock=time.monotonic):
        self.total, self.description, self.unit = total, description, unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.is_terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = min_interval if self.is_terminal else line_interval
        self.clock = clock
        self.start_time = self.last_shown = clock()
        self.initial = self.count = self.shown_count = initial
        self.metrics = {}

    def rate(self):
        elapsed = self.clock() - self.start_time
        return (self.count - self.initial) / elapsed if elapsed > 0 else 0.0

    def text(self):
        """The status line: description, bar, count, metrics, rate, time left."""
        parts = [self.description] if self.description else []
        rate = self.rate()
        if self.total:
            fraction = min(self.count / self.total, 1.0)
            filled = int(fraction * _BAR_WIDTH)
            parts.append("[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "]")
            parts.append(f"{format_count(self.count, self.unit)}/"
                         f"{format_count(self.total, self.unit)} {fraction:4.0%}")
        else:
            parts.append(format_count(self.count, self.unit))
        parts += [f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                  for name, value in self.metrics.items()]
        speed = rate / 2**20 if self.unit == "B" else rate
        parts.append(f"{speed:.3g} {'MiB' if self.unit == 'B' else self.unit}/s")
        if self.total and rate > 0:
            parts.append("ETA " + format_duration(max(self.total - self.count, 0) / rate))
        return " ".join(parts)

    def _show(self):
        self.last_shown, self.shown_count = self.clock(), self.count
        if self.is_terminal:
            self.stream.write("\r" + self.text() + "\033[K")
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()

    def update(self, count, **metrics):
        self.count = count
        self.metrics.update(metrics)
        if self.enabled and self.clock() - self.last_shown >= self.interval:
            self._show()

    def write(self, message):
        """Print a message line without breaking the bar."""
        if self.is_terminal and self.enabled:
            self.stream.write("\r\033[K")
        self.stream.write(message + "\n")
        if self.is_terminal and self.enabled:
            self._show()
        self.stream.flush()

    def close(self):
        """Show the final state once (a terminal bar then ends its line)."""
        if not self.enabled:
            return
        if self.shown_count != self.count or self.is_terminal:
            self._show()
        if self.is_terminal:
            self.stream.write("\n")
            self.stream.flush()
