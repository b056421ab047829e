"""The paper's ablations (Devlin et al., 2018, section 5 and appendix C) as arms of one
comparison: what each arm changes, the scales it runs at, and the paper's numbers.

Every arm pretrains from the same data with the same steps, batch and schedule, and differs
from the base arm in one thing only:
- Table 5, pretraining tasks: no NSP; a left-to-right LM without NSP;
- Table 8, masking: the share of chosen tokens replaced by [MASK], kept, or replaced by a
  random token (the base arm is 80/10/10), fine-tuned and feature-based;
- Table 6, model size: layers L, hidden size H and heads A (feed-forward 4H);
- the objectives that followed BERT (docs/objectives.md): ALBERT's shape and sentence order,
  SpanBERT's masking, RoBERTa's packed inputs without NSP, ELECTRA's replaced-token
  detection. The first three change the data as well, so each writes its own pretraining
  data (`Arm.data`) from the same documents and vocabulary; ELECTRA trains on the shared data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from flows.params import PretrainingDataParams, PretrainParams

TableName = Literal["tasks", "masking", "size", "objectives"]
TABLES: tuple[TableName, ...] = ("tasks", "masking", "size", "objectives")
TABLE_TITLES = {
    "tasks": "Pretraining tasks (paper Table 5)",
    "masking": "Masking procedures (paper Table 8)",
    "size": "Model size (paper Table 6)",
    "objectives": "Objectives after BERT (ALBERT, SpanBERT, RoBERTa, ELECTRA)",
}
ObjectiveName = Literal["albert", "spanbert", "roberta", "electra"]
OBJECTIVES: tuple[ObjectiveName, ...] = ("albert", "spanbert", "roberta", "electra")
# ALBERT's embedding width E for every model size it reports (Lan et al., 2019, Table 1).
ALBERT_EMBEDDING_SIZE = 128
MASK_MIXES = ("100/0/0", "80/0/20", "80/20/0", "0/20/80", "0/0/100")  # Table 8 beside 80/10/10
BASE_MIX = "80/10/10"


@dataclass(frozen=True)
class Arm:
    """One pretraining run of the comparison."""

    name: (
        str  # folder and stage-name suffix: base, no-nsp, ltr-no-nsp, mask-100-0-0, size-L2-H128-A2
    )
    label: str  # the row's name, as the paper writes it
    tables: tuple[TableName, ...]  # the tables it is a row of
    sets: tuple[str, ...] = ()  # trainer overrides (--set NAME=VALUE) that make the arm
    size: tuple[int, int, int] | None = None  # (L, H, A) when it differs from the scale's model
    # pretraining_data fields the arm's own data sets (field, value); () uses the shared data
    data: tuple[tuple[str, bool | str], ...] = ()


def parse_size(text: str) -> tuple[int, int, int]:
    """ "L/H/A" -> (layers, hidden, heads), with H divisible by A."""
    try:
        layers, hidden, heads = (int(p) for p in text.split("/"))
    except ValueError:
        raise ValueError(f"a model size is L/H/A (e.g. 4/256/4), got {text!r}") from None
    if min(layers, hidden, heads) < 1 or hidden % heads:
        raise ValueError(f"model size {text!r}: L, H, A must be positive and A must divide H")
    return layers, hidden, heads


def size_sets(size: tuple[int, int, int]) -> tuple[str, ...]:
    layers, hidden, heads = size
    return (
        f"model.num_hidden_layers={layers}",
        f"model.hidden_size={hidden}",
        f"model.num_attention_heads={heads}",
        f"model.intermediate_size={4 * hidden}",
    )


def objective_arm(name: ObjectiveName) -> Arm:
    """An arm of the objectives table: what the data job writes and what the trainer sets."""
    if name == "albert":
        return Arm(
            name="albert",
            label=f"ALBERT (E={ALBERT_EMBEDDING_SIZE}, shared layers, SOP)",
            tables=("objectives",),
            sets=(f"model.embedding_size={ALBERT_EMBEDDING_SIZE}", "model.share_layers=true"),
            data=(("sentence_order", True),),
        )
    if name == "spanbert":
        # SpanBERT (Joshi et al. 2019): span masks, the span-boundary objective beside MLM, and
        # single segments of contiguous text without NSP (FULL-SENTENCES rows here).
        return Arm(
            name="spanbert",
            label="SpanBERT (span masks, span boundaries, single segments)",
            tables=("objectives",),
            sets=("objective.nsp=false", "objective.span_boundary=true"),
            data=(("span_masking", True), ("packing", "full-sentences")),
        )
    if name == "roberta":
        # RoBERTa's input and objective at this recipe's budget: FULL-SENTENCES, no NSP, masks
        # drawn afresh each epoch, Adam's beta2 0.98 (Liu et al. 2019, sections 4 and 5).
        # Its bigger batches and learning rate are a budget, which every arm here shares.
        return Arm(
            name="roberta",
            label="RoBERTa inputs (full sentences, dynamic masks, no NSP, beta2 0.98)",
            tables=("objectives",),
            sets=("objective.nsp=false", "optim.betas=0.9,0.98"),
            data=(("packing", "full-sentences"), ("dynamic_masking", True)),
        )
    if name == "electra":
        # ELECTRA (Clark et al. 2020): a generator 1/4 as wide (its Small model's) fills the
        # masked slots, which the paper masks with [MASK] alone; the discriminator, the model
        # that is fine-tuned, tells every token whether it was replaced; loss MLM + 50 x RTD.
        return Arm(
            name="electra",
            label="ELECTRA (generator 1/4 wide, replaced-token detection, no NSP)",
            tables=("objectives",),
            sets=("objective.name=electra", "objective.nsp=false", "objective.mask_mix=100/0/0"),
        )
    raise ValueError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")


def arm_pretrain_params(pretrain: PretrainParams, arm: Arm) -> PretrainParams:
    """The recipe's pretraining with the arm's trainer settings added (after the recipe's
    own extra_args: the last word wins)."""
    extra = [part for setting in arm.sets for part in ("--set", setting)]
    return pretrain.model_copy(update={"extra_args": [*pretrain.extra_args, *extra]})


def arm_data_params(data: PretrainingDataParams, arm: Arm) -> PretrainingDataParams:
    """The recipe's pretraining data with the fields the arm's data sets, checked together."""
    return type(data).model_validate(data.model_dump() | dict(arm.data))


def build_arms(
    tables: list[TableName],
    mask_mixes: list[str],
    sizes: list[str],
    base_size: str,
    objectives: list[ObjectiveName] | tuple[ObjectiveName, ...] = OBJECTIVES,
) -> list[Arm]:
    """The base arm (a row of every table), then the arms of each table asked for."""
    arms = [Arm(name="base", label="BERT (MLM + NSP, 80/10/10)", tables=tuple(tables))]
    if "tasks" in tables:
        arms.append(Arm(name="no-nsp", label="No NSP", tables=("tasks",),
                        sets=("objective.nsp=false",)))  # fmt: skip
        arms.append(
            Arm(
                name="ltr-no-nsp",
                label="LTR & No NSP",
                tables=("tasks",),
                sets=("objective.name=ltr", "objective.nsp=false"),
            )
        )
    if "masking" in tables:
        for mix in mask_mixes:
            if mix == BASE_MIX:
                continue
            arms.append(
                Arm(
                    name="mask-" + mix.replace("/", "-"),
                    label=mix,
                    tables=("masking",),
                    sets=(f"objective.mask_mix={mix}",),
                )
            )
    if "size" in tables:
        for text in sizes:
            size = parse_size(text)
            if size == parse_size(base_size):
                continue
            arms.append(
                Arm(
                    name=f"size-L{size[0]}-H{size[1]}-A{size[2]}",
                    label=f"L={size[0]} H={size[1]} A={size[2]}",
                    tables=("size",),
                    sets=size_sets(size),
                    size=size,
                )
            )
    if "objectives" in tables:
        arms.extend(objective_arm(name) for name in objectives)
    return arms


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's ablation tables: columns and, per row, its dev scores."""

    columns: tuple[str, ...]
    rows: dict[str, tuple[float, ...]] = field(default_factory=dict)
    note: str = ""


# BERT-base dev scores. Table 5: MNLI-m, QNLI, MRPC, SST-2 accuracy, SQuAD v1.1 F1.
# Table 8: MNLI-m fine-tuned, CoNLL-2003 NER F1 fine-tuned and feature-based.
# Table 6: held-out MLM perplexity of the pretraining data, then dev accuracies.
PAPER = {
    "tasks": PaperTable(
        columns=("MNLI-m", "QNLI", "MRPC", "SST-2", "SQuAD F1"),
        rows={
            "base": (84.4, 88.4, 86.7, 92.7, 88.5),
            "no-nsp": (83.9, 84.9, 86.5, 92.6, 87.9),
            "ltr-no-nsp": (82.1, 84.3, 77.5, 92.1, 77.8),
        },
        note="The paper's '+ BiLSTM' row (on top of LTR, fine-tuning only) is not run here.",
    ),
    "masking": PaperTable(
        columns=("MNLI-m", "NER fine-tuned", "NER feature-based"),
        rows={
            "80/10/10": (84.2, 95.4, 94.9),
            "100/0/0": (84.3, 94.9, 94.0),
            "80/0/20": (84.1, 95.2, 94.6),
            "80/20/0": (84.4, 95.2, 94.7),
            "0/20/80": (83.7, 94.8, 94.6),
            "0/0/100": (83.6, 94.9, 94.6),
        },
        note="Feature-based: the last four layers concatenated feed a small model (paper: "
        "a BiLSTM for NER; here an MLP on the [CLS] vector for sentence tasks).",
    ),
    "size": PaperTable(
        columns=("LM ppl", "MNLI-m", "MRPC", "SST-2"),
        rows={
            "3/768/12": (5.84, 77.9, 79.8, 88.4),
            "6/768/3": (5.24, 80.6, 82.2, 90.7),
            "6/768/12": (4.68, 81.9, 84.8, 91.3),
            "12/768/12": (3.99, 84.4, 86.7, 92.9),
            "12/1024/16": (3.54, 85.7, 86.9, 93.3),
            "24/1024/16": (3.23, 86.6, 87.8, 93.7),
        },
        note="The paper trained every size for the same 1M steps, as every arm here has the "
        "same steps.",
    ),
    # No one table of scores covers these papers' arms on the same tasks; docs/objectives.md
    # gives each paper's claim.
    "objectives": PaperTable(
        columns=(),
        note="Each arm writes its own pretraining data from the same documents and vocabulary "
        "(ALBERT: sentence-order labels; SpanBERT: span masks on packed full sentences; RoBERTa: "
        "packed full sentences "
        "without masks, masked by the trainer each epoch) and is validated as the shared "
        "data is; ELECTRA trains on the shared data. params: the parameters trained (ELECTRA's "
        "generator and discriminator). MLM acc: ELECTRA's is its generator's. binary task "
        "acc: the held-out accuracy of the arm's binary task: NSP or SOP (chance 0.5), or "
        "ELECTRA's replaced-token detection over every real token (answering 'original' "
        "everywhere scores 1 minus the replaced share, given beside it).",
    ),
}


def paper_row_key(arm: Arm, table: TableName, base_size: str) -> str:
    """The row of the paper's table that an arm stands beside."""
    if table == "masking":
        return BASE_MIX if arm.name == "base" else arm.label
    if table == "size":
        size = arm.size or parse_size(base_size)
        return "/".join(map(str, size))
    return arm.name
