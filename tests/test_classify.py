import numpy as np
import pytest

from qualcode.classify import CodeClassifier, TrainingExample, examples_from_codebook, seed_examples
from qualcode.codebook import load_codebook, parse_codebook
from qualcode.combine import Policy, combine
from qualcode.errors import ConfigurationError
from qualcode.models import CodeAssignment, Evidence, Segment

TIME = [
    "She never had time for us",
    "you could never get hold of her on the phone",
    "weeks before anyone rang back",
    "always rushing off to the next family",
    "she came when she said she would and stayed",
    "made time every week",
]
TRUST = [
    "I could tell her anything",
    "she was honest even when it was bad news",
    "I didn't believe a word they said",
    "she kept her promises",
    "I was scared they'd use it against me",
    "I trusted her with my kids",
]
NEITHER = [
    "we had chips after school",
    "the bus was late again",
    "my brother plays football on Saturdays",
    "it rained all week",
    "the flat is on the third floor",
    "I like drawing and music",
]


def _examples():
    examples = []
    for group, texts, labels in (
        ("a", TIME, {"time": 1, "trust": 0}),
        ("b", TRUST, {"time": 0, "trust": 1}),
        ("c", NEITHER, {"time": 0, "trust": 0}),
    ):
        for index, text in enumerate(texts):
            examples.append(TrainingExample(text, dict(labels), group=f"{group}{index % 3}"))
    return examples


@pytest.fixture(scope="module")
def classifier():
    return CodeClassifier(["time", "trust", "unused"]).fit(_examples())


def test_learns_each_code_and_leaves_untrainable_codes_blank(classifier):
    assert classifier.trained_codes == ("time", "trust")
    probabilities = classifier.predict_proba(
        ["she never had time to ring back", "I trusted her, she was honest", "we went to the park"]
    )
    assert probabilities.shape == (3, 3)
    assert np.isnan(probabilities[:, 2]).all()
    assert probabilities[0, 0] > probabilities[0, 1]
    assert probabilities[1, 1] > probabilities[1, 0]
    assert ((probabilities[:, :2] >= 0) & (probabilities[:, :2] <= 1)).all()
    assert probabilities[2, 0] < probabilities[0, 0] and probabilities[2, 1] < probabilities[1, 1]


def test_training_is_deterministic():
    texts = ["she never had time", "honest with me", "the park"]
    first = CodeClassifier(["time", "trust"]).fit(_examples()).predict_proba(texts)
    second = CodeClassifier(["time", "trust"]).fit(_examples()).predict_proba(texts)
    np.testing.assert_array_equal(first, second)


@pytest.mark.skipif(
    __import__("os").cpu_count() == 1, reason="one core: codes are always fitted in one process"
)
def test_codes_fitted_in_several_processes_give_the_model_of_one_process(monkeypatch, nlp):
    from qualcode import classify

    examples = [*_examples(), *(TrainingExample(text, {"time": 0}, group="d") for text in NEITHER)]
    monkeypatch.setattr(classify, "PARALLEL_FIT_FROM", 10**9)
    alone = classify.train_model(["time", "trust", "unused"], examples, nlp)
    monkeypatch.setattr(classify, "PARALLEL_FIT_FROM", 0)
    assert classify._fitting_processes(2, len(examples)) > 1
    shared = classify.train_model(["time", "trust", "unused"], examples, nlp)
    assert shared.codes == alone.codes and shared.training_counts == alone.training_counts
    assert (
        shared.weights.shape == alone.weights.shape == (len(alone.vocabulary), 8)
    )  # 2 codes: full + 3 folds each
    np.testing.assert_array_equal(shared.weights, alone.weights)
    np.testing.assert_array_equal(shared.intercepts, alone.intercepts)


def _report_fitting_processes(queue):
    from qualcode import classify

    queue.put(classify._fitting_processes(6, 10**6))


@pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods()
    or __import__("os").cpu_count() == 1,
    reason="needs fork and two cores",
)
def test_a_daemonic_process_fits_codes_itself():
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_report_fitting_processes, args=(queue,), daemon=True)
    process.start()
    assert (
        queue.get(timeout=30) == 1
    )  # it may not start processes of its own (the training process is one)
    process.join()


def test_explain_names_content_words_that_pushed_the_code(classifier):
    features = classifier.transform(
        ["we went to the park", "she never had time, the phone rang out"]
    )
    words = [ngram for ngram, weight in classifier.explain(features, 1, "time")]
    assert words and all(weight > 0 for _, weight in classifier.explain(features, 1, "time"))
    assert "time" in words or "never" in words
    assert "the" not in words


def test_explaining_many_pairs_at_once_gives_each_pair_its_strongest_content_ngrams(classifier):
    texts = [
        "she never had time, the phone rang out",
        "I trusted her, she was honest and kept her promises",
        "we went to the park",
        "never time never honest never trusted",
    ]
    features = classifier.transform(texts)
    model = classifier.model
    pairs = [(row, code) for row in (3, 0, 1, 2) for code in ("trust", "time")]
    explained = classifier.explain_rows(features, pairs, top=3)
    for (row, code), ngrams in zip(pairs, explained):
        weights = features[row].toarray().ravel() * model.weights[:, model.codes[code].full]
        ranked = sorted(
            (-weight, str(model.names[column]))
            for column, weight in enumerate(weights)
            if weight > 0 and model.content[column]
        )
        assert ngrams == [(name, -negative) for negative, name in ranked[:3]]
    assert (
        any(explained) and not explained[6] and not explained[7]
    )  # the park pushes towards neither code
    assert classifier.explain(features, 1, "trust", top=3) == explained[pairs.index((1, "trust"))]


def test_partial_labels_train_only_their_code():
    examples = [TrainingExample(text, {"time": 1}) for text in TIME] + [
        TrainingExample(t, {"time": 0}) for t in NEITHER
    ]
    model = CodeClassifier(["time", "trust"]).fit(examples)
    assert model.training_counts_ == {"time": (6, 6), "trust": (0, 0)}
    assert model.trained_codes == ("time",)


def test_codebook_examples_and_seed_label_only_what_they_know():
    codebook = load_codebook()
    examples = examples_from_codebook(codebook)
    assert all(len(example.labels) == 1 for example in examples)
    assert {value for example in examples for value in example.labels.values()} == {0, 1}
    seed = seed_examples(codebook)
    assert len(seed) >= 250 and all(
        set(example.labels) == set(codebook.code_ids) for example in seed
    )
    other, _ = parse_codebook(
        "name: Mine\ncodes:\n  - {id: trust, name: T, definition: d}\n", "mine.yaml"
    )
    assert seed_examples(other) == []


SEGMENTS = [Segment(f"s{i}", "d", 0, 1, "x", i) for i in range(3)]
RULE = CodeAssignment("s0", "a", "rule", evidence=(Evidence('phrase "x"', "x"),))
RULE_CONTRADICTED = CodeAssignment("s1", "a", "rule", evidence=(Evidence('phrase "x"', "x"),))


def test_policy_combines_rules_and_probabilities():
    probabilities = np.array([[0.7, np.nan], [0.01, np.nan], [0.55, np.nan]])
    merged = combine(
        SEGMENTS,
        [RULE, RULE_CONTRADICTED],
        probabilities,
        ["a", "b"],
        Policy(),
        explain=lambda pairs: [[("word", 0.5)] for _ in pairs],
    )
    assert [(m.segment_id, m.code_id, m.source, m.status, m.confidence) for m in merged] == [
        ("s0", "a", "rule", "suggested", 0.7),
        ("s1", "a", "rule", "downgraded", 0.01),
        ("s2", "a", "classifier", "suggested", 0.55),
    ]
    assert merged[2].evidence_text == '"word" (classifier +0.50)'
    strict = combine(SEGMENTS, [], probabilities, ["a", "b"], Policy(per_code={"a": 0.6}))
    assert [m.segment_id for m in strict] == ["s0"]


def test_rules_alone_keep_their_hits_without_confidence():
    merged = combine(SEGMENTS, [RULE], None, ["a"], Policy())
    assert [(m.source, m.status, m.confidence) for m in merged] == [("rule", "suggested", None)]


def test_thresholds_come_from_the_codebook_and_the_command_line():
    codebook, _ = parse_codebook(
        "name: x\ncodes:\n  - {id: a, name: A, definition: d, threshold: 0.7}\n"
        "  - {id: b, name: B, definition: d}\n",
        "x.yaml",
    )
    policy = Policy.for_codebook(codebook, suggest_at=0.4, overrides={"b": 0.9})
    assert (policy.threshold("a"), policy.threshold("b")) == (0.7, 0.9)
    with pytest.raises(ConfigurationError, match="--threshold names code 'zzz'"):
        Policy.for_codebook(codebook, overrides={"zzz": 0.5})
