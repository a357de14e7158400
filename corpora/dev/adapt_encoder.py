#!/usr/bin/env python3
"""Learn qualcode's encoder adapter from the development corpus of real writing.

all-mpnet-base-v2 places passages by their general meaning; the six themes of relationship-based
social work cut that space in ways the general model does not know. This script fine-tunes the
model to the themes with a low-rank adapter (LoRA: two small matrices beside each adapted weight,
the upstream weights frozen) on the corpus's training splits and the codebook's own examples, and
writes the adapter as numbers, never text, to ``src/qualcode/data/encoder-adapter.npz``. qualcode
adds it to the verified upstream weights when it loads the model (``qualcode.embeddings``).

Run it once each time a test split is spent and joins the training splits, then rewrite the
shipped vectors with the adapted model:

    pip install torch==2.13.0 transformers==5.24.0  # only this script needs them
    python corpora/dev/rebuild.py                  # the unit texts
    python corpora/dev/adapt_encoder.py            # -> src/qualcode/data/encoder-adapter.npz
    python corpora/dev/rebuild.py --vectors src/qualcode/data/dev-corpus-vectors.npz

The model is transformers' MPNetModel, the reference implementation, loaded from the verified
upstream files. Training is seeded and runs on the CPU (about 50 minutes on two cores). Before the
adapter is written, the script checks that qualcode's NumPy encoder with it gives the embeddings
PyTorch gave, so what ships is what was learnt.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rebuild import TRAINING_SPLITS, read_csv, read_units, training_passages  # noqa: E402

TARGET = HERE.parent.parent / "src" / "qualcode" / "data" / "encoder-adapter.npz"
# Attention's query, value and output, and both feed-forward weights, of every layer.
ADAPTED = (
    "attention.attn.q",
    "attention.attn.v",
    "attention.attn.o",
    "intermediate.dense",
    "output.dense",
)
RANK = 8
SCALE = 2.0  # LoRA's alpha / rank, with alpha 16
EPOCHS = 5
LEARNING_RATE = 5e-4
HEAD_LEARNING_RATE = 1e-3
BATCH = 16
# The training head reads cosine-like logits: the unit-length embedding times this.
LOGIT_SCALE = 20.0
MAX_POSITIVE_WEIGHT = 10.0
SEED = 0
HIDDEN = 768
PAD_ID = 1  # <pad> in all-mpnet-base-v2's vocabulary


def training_data(texts_folder: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, labels (NaN where a code is not labelled) and the code ids: corpus passages, then codebook examples."""
    from qualcode.codebook import load_codebook
    from qualcode.coding import CodingOptions
    from qualcode.training import training_examples

    codebook = load_codebook()
    code_ids = list(codebook.code_ids)
    _, texts, gold, gold_code_ids = training_passages(
        read_units(HERE / "units.csv"), read_csv(HERE / "sources.csv"), texts_folder
    )
    if gold_code_ids != code_ids:
        raise SystemExit(f"gold.csv's codes {gold_code_ids} are not the codebook's {code_ids}")
    labels = gold.astype(np.float32).tolist()
    for example in training_examples(codebook, CodingOptions()):
        if example.text.strip():
            texts.append(example.text)
            labels.append([float(example.labels.get(code_id, math.nan)) for code_id in code_ids])
    return texts, np.array(labels, dtype=np.float32), code_ids


def build_model(folder: Path):
    """all-mpnet-base-v2 in PyTorch (transformers' MPNetModel) from the verified upstream files, with
    trainable low-rank adapters beside the weights named in ADAPTED; everything else frozen."""
    import torch
    from torch import nn
    from transformers import MPNetConfig, MPNetModel

    # all-mpnet-base-v2's config.json, less what only training from scratch reads.
    MPNET_CONFIG = MPNetConfig(
        vocab_size=30527,
        hidden_size=HIDDEN,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        max_position_embeddings=514,
        layer_norm_eps=1e-5,
        relative_attention_num_buckets=32,
        pad_token_id=PAD_ID,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )

    from safetensors.numpy import load_file

    from qualcode.embeddings import verify_model_files

    verify_model_files(folder)
    model = MPNetModel(MPNET_CONFIG, add_pooling_layer=False)
    weights = load_file(str(folder / "model.safetensors"))
    missing, _ = model.load_state_dict(
        {name: torch.from_numpy(value.astype(np.float32)) for name, value in weights.items()},
        strict=False,
    )
    if missing:
        raise SystemExit(f"the upstream weights lack {missing[:3]}")
    model.requires_grad_(False)

    class AdaptedLinear(nn.Module):
        def __init__(self, name: str, base: nn.Linear):
            super().__init__()
            self.name, self.base = name, base
            self.A = nn.Parameter(torch.randn(RANK, base.in_features) * 0.01)
            self.B = nn.Parameter(torch.zeros(base.out_features, RANK))

        def forward(self, x):
            return self.base(x) + (x @ self.A.T) @ self.B.T * SCALE

    for index, layer in enumerate(model.encoder.layer):
        for name in ADAPTED:
            owner_path, attribute = name.rsplit(".", 1)
            owner = layer.get_submodule(owner_path)
            setattr(
                owner,
                attribute,
                AdaptedLinear(f"encoder.layer.{index}.{name}", getattr(owner, attribute)),
            )

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids, mask):
            states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights_ = mask.unsqueeze(-1).float()
            pooled = (states * weights_).sum(1) / weights_.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

        def adapter(self) -> dict[str, np.ndarray]:
            arrays = {"scale": np.array(SCALE, dtype=np.float32)}
            for module in self.modules():
                if isinstance(module, AdaptedLinear):
                    arrays[module.name + ".weight.A"] = module.A.detach().numpy().astype(np.float32)
                    arrays[module.name + ".weight.B"] = module.B.detach().numpy().astype(np.float32)
            return arrays

    return Encoder()


def _batch(tokenizer, texts: list[str], rows):
    import torch

    encoded = [tokenizer.encode(texts[row]).ids for row in rows]
    ids = torch.full((len(rows), max(map(len, encoded))), PAD_ID, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for place, tokens in enumerate(encoded):
        ids[place, : len(tokens)] = torch.tensor(tokens)
        mask[place, : len(tokens)] = 1
    return ids, mask


def train_adapter(texts: list[str], labels: np.ndarray, folder: Path, *, log=print):
    """The trained encoder (PyTorch) for ``texts`` and their (texts x codes) labels, NaN meaning unlabelled."""
    import torch
    from tokenizers import Tokenizer
    from torch.nn import functional

    from qualcode.embeddings import MAX_TOKENS

    torch.manual_seed(SEED)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.no_padding()
    model = build_model(folder)
    head = torch.nn.Linear(HIDDEN, labels.shape[1])
    targets = torch.from_numpy(labels)
    share = np.nanmean(labels, axis=0)
    positive_weight = torch.from_numpy((1 - share) / share).float().clamp(max=MAX_POSITIVE_WEIGHT)
    optimiser = torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if p.requires_grad], "lr": LEARNING_RATE},
            {"params": head.parameters(), "lr": HEAD_LEARNING_RATE},
        ],
        weight_decay=0.01,
    )
    steps = EPOCHS * math.ceil(len(texts) / BATCH)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # 10% warm-up, then linear decay
        optimiser, lambda step: min(1.0, (step + 1) / (0.1 * steps)) * max(0.0, 1 - step / steps)
    )
    generator = np.random.default_rng(SEED)
    for epoch in range(EPOCHS):
        model.train()
        order = generator.permutation(len(texts))
        # Texts of like length share a batch (little padding), batches in random order.
        batches = []
        for start in range(0, len(order), BATCH * 20):
            block = sorted(order[start : start + BATCH * 20], key=lambda row: len(texts[row]))
            batches += [block[i : i + BATCH] for i in range(0, len(block), BATCH)]
        generator.shuffle(batches)
        total = 0.0
        for rows in batches:
            logits = head(model(*_batch(tokenizer, texts, rows)) * LOGIT_SCALE)
            wanted = targets[rows]
            known = ~torch.isnan(wanted)
            loss = functional.binary_cross_entropy_with_logits(
                logits[known],
                torch.nan_to_num(wanted)[known],
                pos_weight=positive_weight.expand_as(wanted)[known],
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        log(f"epoch {epoch + 1} of {EPOCHS}: mean loss {total / len(batches):.3f}")
    model.eval()
    return model, tokenizer


def embed(model, tokenizer, texts: list[str]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.vstack(
            [
                model(*_batch(tokenizer, texts, range(start, min(start + 32, len(texts))))).numpy()
                for start in range(0, len(texts), 32)
            ]
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=Path, default=HERE / "texts", help="the rebuilt unit texts")
    parser.add_argument("--out", type=Path, default=TARGET, help="where the adapter goes")
    parser.add_argument(
        "--model", type=Path, help="the upstream model's folder (default: installed)"
    )
    args = parser.parse_args(argv)

    from qualcode.embeddings import model_folder

    folder = args.model or model_folder()
    texts, labels, code_ids = training_data(args.texts)
    print(
        f"training on {len(texts)} texts ({', '.join(TRAINING_SPLITS)} and the codebook's examples)"
    )
    model, tokenizer = train_adapter(texts, labels, folder)
    arrays = model.adapter()
    arrays["code_ids"] = np.array(code_ids)
    arrays["training_splits"] = np.array(TRAINING_SPLITS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=args.out.parent, suffix=".npz")
    os.close(handle)
    try:
        np.savez_compressed(temporary, **arrays)
        from qualcode.embeddings import SentenceEncoder

        sample = texts[:: max(1, len(texts) // 48)]
        difference = np.abs(
            SentenceEncoder(folder, Path(temporary)).encode(sample)
            - embed(model, tokenizer, sample)
        ).max()
        if difference > 1e-4:
            kept = args.out.with_suffix(".unverified.npz")
            os.replace(temporary, kept)  # an hour of training is not thrown away
            raise SystemExit(
                f"qualcode's encoder with the adapter differs from PyTorch's by {difference:.1e}; "
                f"the adapter is kept at {kept}"
            )
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the package's data must be readable
        os.replace(temporary, args.out)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    print(
        f"adapter ({len(arrays) - 3} matrices; NumPy agrees with PyTorch to {difference:.1e}) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
