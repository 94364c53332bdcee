"""Third-party warnings a user can do nothing about, hidden by the command line and before a model loads
for `Pricer` (and only these: every other warning shows).

    from pricetune.quiet import quiet_third_party
    quiet_third_party()
"""

from __future__ import annotations

import logging
import re
import warnings

from .bases import KNOWN

# bitsandbytes, which PEFT imports whenever it is installed, warns on every command on CPUs with
# AVX-512 BF16 that an optional Hub kernel is missing
QUIET_LOGGERS = ("bitsandbytes",)
# PEFT reads transformers' deprecated `is_gradient_checkpointing` on every adapter it wraps or loads, so
# each train / evaluate / export printed this FutureWarning, which only PEFT's maintainers can act on
QUIET_WARNINGS = (r"`is_gradient_checkpointing` is deprecated",)
# An adapter of a base known by name records that name (`gemma-3-270m`), and PEFT, saving each checkpoint,
# asks the Hub whether such a repo has a config.json and warns when it cannot tell: not a Hub repo, no news
PEFT_HUB_LOOKUP = (r"Could not find a config file in ({names})", r"Unable to fetch remote file .* in ({names})\.")


def quiet_third_party() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    names = "|".join(re.escape(n) for n in KNOWN)
    for message in PEFT_HUB_LOOKUP:
        warnings.filterwarnings("ignore", message=message.format(names=names), category=UserWarning)
