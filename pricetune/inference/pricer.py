"""`Pricer`, the Python API: a run, a Hub adapter or an ensemble, description in, dollars out."""

from __future__ import annotations

from .load import LoadedModel, load_model


class Pricer:
    """Prices products from descriptions, like the reference service's `Pricer.price`."""

    def __init__(self, loaded: LoadedModel, decode: str = "greedy", batch_size: int = 16, samples: int = 64):
        self.loaded, self.decode, self.batch_size, self.samples = loaded, decode, batch_size, samples

    @classmethod
    def from_run(cls, run_dir: str, **kwargs) -> Pricer:
        return cls(load_model(run=run_dir), **kwargs)

    @classmethod
    def from_hub(cls, adapter_id: str, base_model: str | None = None, **kwargs) -> Pricer:
        return cls(load_model(adapter=adapter_id, base_model=base_model), **kwargs)

    @classmethod
    def from_ensemble(cls, folder: str, **kwargs) -> Pricer:
        """An ensemble made by `pricetune ensemble`: its members priced and combined with its weights."""
        from ..ensemble import Ensemble

        pricer = cls(None, **kwargs)
        pricer.ensemble = Ensemble.load(folder)
        pricer.members = pricer.ensemble.predictors()
        return pricer

    ensemble = None

    def price_items(self, descriptions: list[str]) -> list[float | None]:
        """Prices in input order; None where the model's answer held no price."""
        if self.ensemble is not None:
            return self.ensemble.predict(descriptions, self.members)
        return [p for _, p in self.loaded.price(descriptions, self.decode, self.batch_size, self.samples)]

    def price_many(self, descriptions: list[str]) -> list[float]:
        """Prices in input order; an answer without a number is 0.0, as in the course."""
        return [0.0 if p is None else float(p) for p in self.price_items(descriptions)]

    def price(self, description: str) -> float:
        return self.price_many([description])[0]
