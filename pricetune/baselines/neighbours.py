"""Similar items' prices in the prompt: retrieval for the fine-tune, as the course's final pricer
gives its model the prices of look-alike products.

An index holds priced items (a run's train rows, or train + val for a refit); an item's prompt gains
one line, right after the question, with the prices of its k most similar items in the index, most
similar first:

    What does this cost to the nearest dollar?

    Similar items sold for: $24, $31, $19

    Title: ...

    Price is $

Similarity is the cosine of the TF-IDF features the baselines use (`baselines.tfidf_features`).
An item of the index itself never sees its own price: a training row is given its k most similar
*other* rows (leave one out), so the model learns from neighbours as it will meet them on new items.
The line goes before the item text because a long prompt is cut at the end of its item text
(`encode_prompts`), and a causal model reads the prices before the words they should qualify.

The lookup is brute force over sparse rows, as the TF-IDF neighbours baseline's: seconds for the
thousands of items of the amazon data, but every training row looks up every other, so the full
preset's 400k rows would take hours on a CPU.

The index is saved as plain JSON (the items' text and prices; the TF-IDF is fit again on load, a few
seconds for thousands of items), never as a pickle, so an index from the Hub runs no code.

    from pricetune.baselines.neighbours import NeighbourIndex
    index = NeighbourIndex.build(train_rows, k=3)
    prompts = index.add_to_prompts(prompts)                   # new items
    train_prompts = index.add_to_prompts(train_prompts, exclude_self=True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PricetuneError
from ..data import QUESTION, make_prompt

INDEX_FILE = "neighbours.json"
LINE_PREFIX = "Similar items sold for: "
SPARE_FOR_TWINS = 8  # a training row with more exact duplicates than this gets fewer than k prices
TWIN_DISTANCE = 1e-9  # cosine distance at or under which two texts are the same


def neighbour_line(prices: list[float]) -> str:
    """The line a prompt gains: the prices to the nearest dollar, most similar item first."""
    return LINE_PREFIX + ", ".join(f"${price:.0f}" for price in prices)


def insert_line(prompt: str, line: str) -> str:
    """`prompt` (a full prompt) with `line` as its own paragraph right after the question line."""
    head = QUESTION + "\n\n"
    if not prompt.startswith(head):
        raise PricetuneError("a prompt given neighbours' prices must open with the question line "
                             f"{QUESTION!r}; write it as make_prompt() does")
    return head + line + "\n\n" + prompt[len(head):]


@dataclass
class NeighbourIndex:
    """Priced items to look prices up in: `texts` (their item text) and `prices`, `k` per prompt."""

    texts: list[str]
    prices: list[float]
    k: int
    _features: object = field(default=None, repr=False)
    _matrix: object = field(default=None, repr=False)
    _search: object = field(default=None, repr=False)

    @classmethod
    def build(cls, rows: list[dict], k: int) -> NeighbourIndex:
        """An index of dataset rows (each with a `prompt` and a `price`)."""
        from .common import item_text

        if k < 1:
            raise PricetuneError(f"neighbours must be at least 1 to build an index (got {k})")
        if len(rows) <= k:
            raise PricetuneError(f"an index for {k} neighbours needs more than {k} priced items (got {len(rows)})")
        return cls([item_text(r["prompt"]) for r in rows], [float(r["price"]) for r in rows], k)

    def fit(self) -> NeighbourIndex:
        """The TF-IDF fit on the index's texts and the search made ready, once: a server does it as it
        loads, not on its first request (the lookups call it too)."""
        if self._search is None:
            from sklearn.neighbors import NearestNeighbors

            from .tfidf import tfidf_features

            self._features = tfidf_features()
            self._matrix = self._features.fit_transform(self.texts)
            # brute force on the sparse rows, as the TF-IDF neighbours baseline: no tree index for cosine
            self._search = NearestNeighbors(metric="cosine", algorithm="brute").fit(self._matrix)
        return self

    def neighbours(self, texts: list[str], exclude_self: bool = False) -> list[list[int]]:
        """For each item text, the positions in the index of its k most similar items, most similar
        first. `exclude_self`: `texts` are the index's own texts, in order, and an item is never its own
        neighbour."""
        if exclude_self and len(texts) != len(self.texts):
            raise PricetuneError("exclude_self looks up the index's own items: pass all of its texts, in order")
        if not texts:
            return []  # a refit has no val rows to look up; scikit-learn refuses an empty query
        self.fit()
        if not exclude_self:
            _, found = self._search.kneighbors(self._features.transform(texts), n_neighbors=self.k)
            return found.tolist()
        # A training row must not see its own price: not its own position, nor an exact twin (a duplicate
        # row, distance 0), so a few more are asked for than kept
        ask = min(len(self.texts), self.k + 1 + SPARE_FOR_TWINS)
        distances, found = self._search.kneighbors(self._matrix, n_neighbors=ask)
        return [[j for j, d in zip(row, dist) if j != i and d > TWIN_DISTANCE][:self.k]
                for i, (row, dist) in enumerate(zip(found.tolist(), distances.tolist()))]

    def nearest(self, texts: list[str], k: int) -> list[list[tuple[int, float]]]:
        """For each item text, its k most similar items of the index as (position, cosine similarity),
        most similar first: what `--similar K` shows a user."""
        if not texts:
            return []
        self.fit()
        distances, found = self._search.kneighbors(self._features.transform(texts), n_neighbors=min(k, len(self.texts)))
        return [[(j, 1.0 - d) for j, d in zip(row, dist)] for row, dist in zip(found.tolist(), distances.tolist())]

    def add_to_prompts(self, prompts: list[str], exclude_self: bool = False) -> list[str]:
        """Each prompt (a full prompt or a bare description) with its neighbours' prices added."""
        from .common import item_text

        full = [make_prompt(p) for p in prompts]
        found = self.neighbours([item_text(p) for p in full], exclude_self=exclude_self)
        return [insert_line(p, neighbour_line([self.prices[j] for j in row])) for p, row in zip(full, found)]

    def add_to_rows(self, rows: list[dict], exclude_self: bool = False) -> list[dict]:
        """Copies of dataset rows with their prompts given neighbours' prices."""
        prompts = self.add_to_prompts([r["prompt"] for r in rows], exclude_self=exclude_self)
        return [{**r, "prompt": p} for r, p in zip(rows, prompts)]

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / INDEX_FILE
        path.write_text(json.dumps({"k": self.k, "texts": self.texts, "prices": self.prices}), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> NeighbourIndex:
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(list(data["texts"]), [float(p) for p in data["prices"]], int(data["k"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PricetuneError(f"could not read the neighbour index {path} ({type(e).__name__}: {e})") from None
