"""Classical baselines: what a price model must beat before anyone calls it good.

    pricetune evaluate --baseline tfidf --dataset amazon-18k --limit 0
    pricetune evaluate --baseline tfidf-knn --dataset amazon-18k --limit 0
    pricetune evaluate --baseline mlp --dataset amazon-18k --split val --limit 0
    pricetune evaluate --baseline median --dataset demo

    from pricetune.baselines import TfidfRidge
    model = TfidfRidge.fit(train_rows, val_rows)     # alpha chosen on val
    model.predict(["What does this cost ...Price is $"])

- `tfidf` (`tfidf.py`): TF-IDF n-grams of the item text, a ridge regression on log(1 + price).
- `tfidf-knn` (`knn.py`): the same TF-IDF features, an item priced from its nearest train items
  (cosine), k chosen on val: no pull toward the middle, a different error beside the ridge.
- `mlp` (`mlp.py`): the same TF-IDF features into small neural nets whose first layer is sparse
  (as the Mercari price challenge's winners built them on CPUs), seeds averaged, epochs chosen on
  val: the strongest model here without a language model, and the yardstick a fine-tune must beat.
- `mean` / `median`: a constant from the train split.

Each fits on the train split only; any setting (regularisation, k, epochs) is chosen on the
validation split by mean absolute error, so val stays clean for ensemble weights and test is never
read. None of them is `llm_only`.
"""

from .common import constant, item_text
from .knn import TfidfKnn
from .mlp import SparseMlp
from .tfidf import TfidfRidge

# the baselines fit on train and saved as SPEC.joblib beside an ensemble that uses them
FITTED = {"tfidf": TfidfRidge, "tfidf-knn": TfidfKnn, "mlp": SparseMlp}

__all__ = ["FITTED", "SparseMlp", "TfidfKnn", "TfidfRidge", "constant", "item_text"]
