"""ngrpo-harness: experiments, evaluation and reports for RL on LLM reasoning (see README)."""

__version__ = "0.1.0"
