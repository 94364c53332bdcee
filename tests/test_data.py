
import pytest

from pricetune.data import (
    COMPLETION_RESERVE,
    TRAILER,
    completion_price,
    encode_example,
    encode_prompt,
    load_rows,
    load_splits,
    make_prompt,
    read_rows,
)
from pricetune.errors import DataError
from pricetune.modeling import pick_device_map, pick_precision

from .conftest import write_jsonl

ROW = {"prompt": "What does this cost to the nearest dollar?\n\nTitle: A thing\n\nPrice is $", "completion": "64.00"}


# --- precision ------------------------------------------------------------------------------------


@pytest.mark.parametrize("device,cap,cpu_bf16,expected", [
    ("cuda", (8, 0), None, "bf16"), ("cuda", (9, 0), None, "bf16"), ("cuda", (7, 5), None, "fp16"),
    ("cpu", None, True, "bf16"), ("cpu", None, False, "fp32"), ("mps", None, None, "fp16"),
])
def test_pick_precision(device, cap, cpu_bf16, expected):
    assert pick_precision("auto", device=device, cuda_capability=cap, cpu_bf16=cpu_bf16) == expected


def test_explicit_precision_wins():
    assert pick_precision("fp32", device="cuda", cuda_capability=(9, 0)) == "fp32"


def test_pick_precision_never_raises_here():
    assert pick_precision("auto") in {"bf16", "fp32", "fp16"}


# --- sources --------------------------------------------------------------------------------------


def test_demo_data_layout(demo_splits):
    assert len(demo_splits["train"]) + len(demo_splits["val"]) + len(demo_splits["test"]) == 53940
    row = demo_splits["train"][0]
    lines = row["prompt"].split("\n")
    assert lines[0] == "What does this cost to the nearest dollar?"
    assert [l.split(":")[0] for l in lines[2:6]] == ["Title", "Category", "Description", "Details"]
    assert row["prompt"].endswith("\n\nPrice is $")
    assert row["completion"] == f"{round(row['price'])}.00"


def test_demo_split_is_deterministic(demo_splits):
    from pricetune.data import demo_rows

    again = demo_rows()
    assert again["test"][:5] == demo_splits["test"][:5]


def test_jsonl_directory(small_dataset_dir):
    splits, bad = load_splits(str(small_dataset_dir), val_size=5)
    assert len(splits["train"]) == 48 and len(splits["val"]) == 5 and len(splits["test"]) == 16
    assert not bad


def test_csv_and_parquet_and_datasets_save(tmp_path, demo_splits):
    import pandas as pd
    from datasets import Dataset, DatasetDict

    rows = demo_splits["train"][:10]
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for split in ("train", "validation", "test"):
        pd.DataFrame(rows).to_csv(csv_dir / f"{split}.csv", index=False)
    splits, _ = load_splits(str(csv_dir), val_size=3)
    assert len(splits["val"]) == 3 and splits["train"][0]["prompt"] == rows[0]["prompt"]

    pq = tmp_path / "items.parquet"
    pd.DataFrame(rows * 3).to_parquet(pq)
    splits, _ = load_rows(str(pq))
    assert sum(len(v) for v in splits.values()) == 30 and len(splits["test"]) == 3

    save = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:2])}).save_to_disk(str(save))
    splits, _ = load_splits(str(save), val_size=0, need=("train", "test"))
    assert len(splits["train"]) == 10 and len(splits["test"]) == 2


def test_train_sample_first_or_random(small_dataset_dir):
    from pricetune.data import take_train

    everything, _ = load_splits(str(small_dataset_dir), val_size=5)
    rows = everything["train"]
    first, _ = load_splits(str(small_dataset_dir), val_size=5, train_size=10)
    assert first["train"] == rows[:10]
    drawn, _ = load_splits(str(small_dataset_dir), val_size=5, train_size=10, train_sample="random", seed=3)
    index = [rows.index(r) for r in drawn["train"]]
    assert len(index) == 10 and index == sorted(index) and index != list(range(10))  # file order, not the first 10
    assert drawn["val"] == everything["val"] and drawn["test"] == everything["test"]  # only train is sampled
    # nested: a learning curve's smaller sample lies inside its larger one; another seed draws other rows
    assert all(r in take_train(rows, 30, "random", 3) for r in drawn["train"])
    assert take_train(rows, 10, "random", 4) != drawn["train"]
    assert take_train(rows, 10, "random", 3) == drawn["train"]
    assert take_train(rows, 500, "random", 3) == rows and take_train(rows, None) == rows
    with pytest.raises(ValueError, match="first or random"):
        take_train(rows, 5, "last")


def test_amazon_items_if_present():
    from .conftest import SHARED_AMAZON

    if not SHARED_AMAZON.is_dir():
        pytest.skip("../shared/data/amazon-items is not beside this checkout")
    splits, bad = load_splits(str(SHARED_AMAZON), val_size=1000)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (1761, 255, 576) and not bad


def test_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="pass a local source"):
        load_rows("someone/some-dataset")


def test_missing_split(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [ROW])
    with pytest.raises(DataError, match="missing split"):
        load_splits(str(tmp_path), val_size=10)


# --- bad rows -------------------------------------------------------------------------------------


@pytest.mark.parametrize("content,kind", [
    (b'{"prompt": "y", "completion": \n', "malformed JSON"),
    (b'{"completion": "1.00"}\n', "missing prompt"),
    (b'{"prompt": "  ", "completion": "1.00"}\n', "empty prompt"),
    (b'{"prompt": "x Price is $"}\n', "missing completion"),
    (b'{"prompt": "x Price is $", "completion": "cheap"}\n', "bad completion"),
    (b'{"prompt": "x Price is $", "completion": "-5.00"}\n', "negative price"),
    (b'{"prompt": "x Price is $", "completion": "99999999"}\n', "absurd price"),
    (b'{"prompt": "caf\xe9", "completion": "1.00"}\n', "not UTF-8"),
    (b'{"text": "x", "label": "1.00"}\n', "missing prompt"),
])
def test_bad_rows_name_file_and_line(tmp_path, content, kind):
    f = tmp_path / "train.jsonl"
    f.write_bytes(b'{"prompt": "ok Price is $", "completion": "2.00"}\n' + content)
    with pytest.raises(DataError) as e:
        read_rows(f)
    msg = str(e.value)
    assert kind in msg and f"{f}:2" in msg and "--on-bad-rows skip" in msg


def test_skip_bad_rows_counts_them(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_bytes(b'{"prompt": "ok Price is $", "completion": "2.00"}\n{"prompt": "x Price is $"}\nnot json\n{"prompt": "x Price is $", "completion": "-1"}\n')
    from pricetune.data import BadRows

    bad = BadRows()
    rows = read_rows(f, "skip", bad)
    assert len(rows) == 1
    assert bad.counts == {"missing completion": 1, "malformed JSON": 1, "bad completion": 1}


def test_a_catalog_given_as_a_dataset_says_to_prepare_it(tmp_path):
    # each row was reported as "missing prompt", and the hint offered --on-bad-rows skip, which skips them all
    f = tmp_path / "catalog.csv"
    f.write_text("Title,Description,Price\nKettle,A steel kettle,$29.99\nMug,A blue mug,4.50\n")
    for on_bad_rows in ("error", "skip"):
        with pytest.raises(DataError, match=r"catalog.csv is a product catalog \(columns: Title, Description, Price\)"
                           r".*`pricetune prepare .*catalog.csv --out DIR`, then pass --dataset DIR"):
            read_rows(f, on_bad_rows)
    # a dataset with some rows missing their prompt is still a dataset with bad rows
    f.write_text("prompt,completion,title\nA kettle Price is $,29.00,Kettle\n,4.00,Mug\n")
    with pytest.raises(DataError, match="1 invalid row"):
        read_rows(f)


def test_empty_file(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text("")
    with pytest.raises(DataError, match="no usable rows"):
        read_rows(f)


def test_completion_price():
    assert completion_price("64.00") == 64.0 and completion_price("$1,299.99") == 1299.99
    assert completion_price(12) == 12.0
    for bad in ["", "abc", "-1", "1e9", None, "nan"]:
        with pytest.raises(ValueError):
            completion_price(bad)
    # a decimal comma was read as a thousands separator: "12,50" became 1250
    for bad in ["12,50", "1,2,3", "1,2999.00"]:
        with pytest.raises(ValueError, match="the decimal mark is a point"):
            completion_price(bad)


# --- tokenization ---------------------------------------------------------------------------------


def test_labels_mask_prompt_keep_completion_and_eos(tokenizer):
    enc = encode_example(tokenizer, ROW["prompt"], "64.00", 128)
    n_prompt = len(encode_prompt(tokenizer, ROW["prompt"], 128))
    assert enc["labels"][:n_prompt] == [-100] * n_prompt
    completion = enc["labels"][n_prompt:]
    assert completion[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(completion[:-1]) == "64.00"
    assert enc["input_ids"][n_prompt:] == completion


def test_truncation_cuts_item_text_only(tokenizer, demo_splits):
    long_prompt = make_prompt("Title: Big thing\nDescription: " + "very " * 400)
    for max_length in (40, 64, 128):
        enc = encode_example(tokenizer, long_prompt, "12345.00", max_length)
        assert len(enc["input_ids"]) <= max_length
        text = tokenizer.decode(enc["input_ids"])
        assert text.startswith("What does this cost to the nearest dollar?")
        assert text.endswith("\n\nPrice is $12345.00" + tokenizer.eos_token)
        assert sum(l != -100 for l in enc["labels"]) == len(tokenizer("12345.00")["input_ids"]) + 1


def test_prompt_and_inference_cut_at_the_same_place(tokenizer):
    long_prompt = make_prompt("Title: Big thing\nDescription: " + "word " * 300)
    enc = encode_example(tokenizer, long_prompt, "64.00", 128)
    prompt_ids = encode_prompt(tokenizer, long_prompt, 128)
    assert enc["input_ids"][: len(prompt_ids)] == prompt_ids
    assert len(prompt_ids) == 128 - COMPLETION_RESERVE


def test_max_length_too_small_for_the_fixed_parts(tokenizer):
    with pytest.raises(DataError, match="raise --max-length"):
        encode_prompt(tokenizer, ROW["prompt"], 10)


def test_make_prompt_wraps_bare_descriptions():
    p = make_prompt("Title: Lamp")
    assert p.startswith("What does this cost") and p.endswith(TRAILER)
    assert make_prompt(p) == p


def test_device_map_single_process_and_distributed():
    assert pick_device_map("cpu", {}) is None
    assert pick_device_map("cuda", {}) == "auto"  # one process: spread over the visible GPUs
    # accelerate launch / torchrun: a whole copy per process, on that process's own GPU
    assert pick_device_map("cuda", {"WORLD_SIZE": "4", "LOCAL_RANK": "2"}) == {"": 2}
    assert pick_device_map("cuda", {"WORLD_SIZE": "1", "LOCAL_RANK": "0"}) == "auto"
