"""The kernel's own count of a tracepoint's hits: now part of the product
(peripety/tracepoints/perfcount.py); re-exported for the tests and benchmarks."""

from peripety.tracepoints.perfcount import TracepointCounter

__all__ = ["TracepointCounter"]
