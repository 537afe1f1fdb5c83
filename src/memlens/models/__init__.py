"""Models: memlens's own small GPT (:mod:`memlens.models.gpt`) and Hugging Face loading."""
