"""`Pricer`, the Python API: a run, a Hub adapter, an exported folder or an ensemble, description in, dollars out.

    pricer = Pricer.from_run("runs/x")
    pricer.price("Title: ...")                    # 64.0
    pricer.price("Title: ...", interval=0.8)      # PriceRange(price=64.0, low=41.2, high=99.1), after `pricetune calibrate`
    pricer.similar(["Title: ..."], k=3)           # the 3 training items most like it, with their prices
    pricer.price({"title": "...", "description": "..."})   # a catalog row, read as `predict --file` reads one
"""

from __future__ import annotations

from typing import NamedTuple

from .. import intervals
from ..errors import PricetuneError
from .members import Ensemble
from .load import LoadedModel, load_model, run_paths
from .similar import LookAlike, index_of_ensemble, index_of_run, look_alikes


class PriceRange(NamedTuple):
    price: float
    low: float | None  # None when the model gave no price
    high: float | None


class Pricer:
    """Prices products from descriptions, like the reference service's `Pricer.price`."""

    def __init__(self, loaded: LoadedModel, decode: str = "greedy", batch_size: int = 16, samples: int = 64):
        self.loaded, self.decode, self.batch_size, self.samples = loaded, decode, batch_size, samples

    calibration: dict | None = None  # from `pricetune calibrate`: what price ranges need
    folder: str | None = None  # the folder `pricetune calibrate` writes to: the run, checkpoint or ensemble
    items = None  # the training items `similar` looks in (a NeighbourIndex), read on first use

    @classmethod
    def from_run(cls, run_dir: str, calibrated: bool = True, **kwargs) -> Pricer:
        """A run directory or one of its checkpoints, with its own calibration (made with the same decoding)
        when `calibrated` and it has one."""
        pricer = cls(load_model(run=run_dir), **kwargs)
        pricer.folder = str(run_paths(run_dir)[1])
        if calibrated:
            pricer.calibration = intervals.load(pricer.folder, pricer.decode)
        return pricer

    @classmethod
    def from_hub(cls, adapter_id: str, base_model: str | None = None, **kwargs) -> Pricer:
        return cls(load_model(adapter=adapter_id, base_model=base_model), **kwargs)

    @classmethod
    def from_export(cls, folder: str, **kwargs) -> Pricer:
        """A folder `pricetune export` wrote, priced as its run priced (`--base-model folder --no-adapter`)."""
        return cls(load_model(base_model=folder, precision=kwargs.pop("precision", "auto")), **kwargs)

    @classmethod
    def from_ensemble(cls, folder: str, **kwargs) -> Pricer:
        """An ensemble made by `pricetune ensemble`: its members priced and combined with its weights (each
        run member in batches of `batch_size`, with the decoding the ensemble was fit with)."""
        pricer = cls(None, **kwargs)
        pricer.ensemble = Ensemble.load(folder)
        for member in pricer.ensemble.members:
            member.batch_size = pricer.batch_size
        pricer.members = pricer.ensemble.predictors()
        pricer.folder, pricer.calibration = folder, intervals.load(folder)
        return pricer

    ensemble = None

    def price_items(self, descriptions: list[str | dict], progress: bool = False) -> list[float | None]:
        """Prices in input order; None where the model's answer held no price. A description is text or a
        catalog row (a dict, its text read as `predict --file` reads a row's). `progress`: a bar on stderr."""
        if isinstance(descriptions, (str, dict)):
            raise PricetuneError("price_items takes a list of descriptions; for one, use price(description)")
        descriptions = item_texts(descriptions)
        if not descriptions:
            return []
        if self.ensemble is not None:
            return self.ensemble.predict(descriptions, self.members, progress)
        return [p for _, p in self.loaded.price(descriptions, self.decode, self.batch_size, self.samples, progress)]

    def price_many(self, descriptions: list[str]) -> list[float]:
        """Prices in input order; an answer without a number is 0.0, as in the course."""
        return [0.0 if p is None else float(p) for p in self.price_items(descriptions)]

    def ranges(self, descriptions: list[str], coverage: float = 0.8) -> list[PriceRange]:
        """Each price with its range at `coverage`, calibrated on the val split (docs: pricetune.intervals)."""
        if self.calibration is None:
            command = intervals.calibrate_command(self.folder, self.ensemble is not None)
            raise PricetuneError(f"no price ranges without a calibration: run `{command}` first (it prices the val "
                                 "split once)")
        out = []
        for p in self.price_items(descriptions):
            r = intervals.interval(p, self.calibration, coverage)
            out.append(PriceRange(0.0 if p is None else float(p), *(r or (None, None))))
        return out

    def price(self, description: str | dict, interval: float | None = None) -> float | PriceRange:
        """The price; with `interval` (a coverage such as 0.8), a PriceRange(price, low, high)."""
        if interval is not None:
            return self.ranges([description], interval)[0]
        return self.price_many([description])[0]

    def similar(self, descriptions: list[str | dict], k: int = 3) -> list[list[LookAlike]]:
        """The k training items most like each description, with their prices (`inference.similar`)."""
        descriptions = item_texts(descriptions)
        if self.items is None:
            self.items = self.training_items()
        return look_alikes(self.items, descriptions, k)

    def training_items(self):
        """The items the model (or the ensemble's classical members) trained on, as a NeighbourIndex."""
        if self.ensemble is not None:
            return index_of_ensemble(self.ensemble.record)
        if self.loaded is not None and self.loaded.neighbours is not None:
            return self.loaded.neighbours
        if self.folder is not None:
            return index_of_run(run_paths(self.folder)[0])  # a checkpoint trained on its run's rows
        raise PricetuneError("look-alike items need the training data, which an adapter from the Hub does not carry "
                             "(unless it trained with neighbours): price from its run directory instead")


def item_texts(descriptions: list[str | dict]) -> list[str]:
    """Each description's text, checked before any model work: text as given, a catalog row's as
    `predict --file` reads it."""
    from ..data.rows import ITEM_TEXT_WANTED, item_text_of

    texts = [item_text_of(d) if isinstance(d, dict) else d for d in descriptions]
    blank = [i for i, d in enumerate(texts) if not isinstance(d, str) or not d.strip()]
    if blank:
        first = descriptions[blank[0]]
        wanted = f"a catalog row needs {ITEM_TEXT_WANTED}" if isinstance(first, dict) else "non-empty text"
        raise PricetuneError(f"every description must be non-empty text or a catalog row; {len(blank)} of "
                             f"{len(descriptions)} are not (the first at index {blank[0]}: {first!r}; {wanted})")
    return texts
