"""Helpers shared by the worker, claim and chaos tests: user skills that log every call,
a worker process script, and a handle to start, signal and wait for such processes."""
