"""The embedded model: a tiny GPT, its character tokenizer, sampling, and its supervised warm start.

Shared by the local backend (which trains it with RL), the verl backend (which exports the warm
start as a Hugging Face model for the modchain task), `harness probe` and `harness eval --backend
local`. Nothing here knows about an RL algorithm.

    model.py      TinyGPT and CharTokenizer
    common.py     seeding (derive_seed, rng, pin_threads), build_model, held-out and training problems,
                  checkpoint save/load
    sampler.py    batched sampling and sequence log-probs
    warmstart.py  the cached supervised warm start (keyed by what it depends on)
"""
