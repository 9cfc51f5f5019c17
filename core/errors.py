"""One exception type for bad input, so the CLI can print it plainly and exit non-zero."""


class BenchmarkError(RuntimeError):
    """A user-facing error: the message says what went wrong and where (file, dataset, model)."""
