"""pricetune: fine-tune a language model with LoRA/QLoRA to price products from their descriptions,
then evaluate, serve and ship it. The command line is `pricetune` (or `python -m pricetune`); the
Python entry points are `pricetune.inference.Pricer`, `pricetune.config.resolve_config` and
`pricetune.training.train`. README.md has the two commands that start everything.
"""

__version__ = "0.2.0"
