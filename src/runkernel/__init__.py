"""runkernel: a governed run kernel for LLM agent runs."""

__version__ = "0.1.0"
