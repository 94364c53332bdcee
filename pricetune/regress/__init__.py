"""The regress objective: a scalar head on the base model's hidden states, trained on log price.

    pricetune train --config amazon-18k-regress --output-dir runs/18k   # or --objective regress, any dataset
    pricetune evaluate runs/18k                              # one forward pass per item, no decoding

The model is transformers' sequence-classification form of the base (`num_labels=1`, the head
`score`) with LoRA on the base and the head trained in full (PEFT `task_type="SEQ_CLS"`, head in
`modules_to_save`). The target is log(1 + price), standardised by the training split's median and
spread so a freshly initialised head starts near the right answer; L1's optimum on it is the median,
the answer that minimises the mean absolute error the course scores (Huber: squared near the target,
absolute beyond). The standardisation is saved beside the adapter as `regression_head.json`, so a
price is `expm1(center + scale * output)` anywhere.

One module per concern:
- `scale.py`: `PriceScale` (price <-> standardised target, saved with the run) and the losses;
- `batches.py`: tokenized rows and the right-padding collator, as training and pricing both cut them;
- `head.py`: what the head reads (`regress_pooling`: the last prompt token, or the mean over the
  prompt's tokens) and `regress_prices`, pricing in batches.
"""

from .batches import RegressionCollator, tokenize_regression_rows
from .head import final_states, head_outputs, mean_over_tokens, regress_prices, score_layer
from .scale import HEAD_FILE, HUBER_DELTA, POOLINGS, PriceScale, regression_loss

__all__ = [
    "HEAD_FILE", "HUBER_DELTA", "POOLINGS", "PriceScale", "RegressionCollator", "final_states", "head_outputs",
    "mean_over_tokens", "regress_prices", "regression_loss", "score_layer", "tokenize_regression_rows",
]
