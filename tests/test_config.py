"""YAML configs: every mistake is reported with its line and key, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_jsonl_corpus, run_cli, write_config

from corpus.config import ConfigError, load_config, parse_size

GOOD = """\
output: out
workers: 1
inputs:
  - source: web
    path: in
pipeline:
  - op: normalize_text
  - op: length_filter
    min_chars: 10
"""


def _errors(tmp_path: Path, body: str) -> list[str]:
    cfg = write_config(tmp_path / "c.yaml", body)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    return exc.value.errors


def test_good_config_loads(tmp_path: Path):
    cfg = load_config(write_config(tmp_path / "c.yaml", GOOD))
    assert [o.name for o in cfg.pipeline] == ["normalize_text", "length_filter"]
    assert cfg.pipeline[1].min_chars == 10
    assert cfg.output == tmp_path / "out"  # relative to the config file, not the cwd


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("    min_chars: 10", "    min_char: 10", "c.yaml:9: pipeline[1] (length_filter).min_char: unknown parameter "
                                                  "(did you mean 'min_chars'?)"),
        ("    min_chars: 10", "    min_chars: ten", "c.yaml:9: pipeline[1] (length_filter).min_chars: expected int"),
        ("  - op: normalize_text", "  - op: normalise_text", "c.yaml:7: pipeline[0].op: unknown operator "
                                                             "'normalise_text' (did you mean 'normalize_text'?)"),
        ("workers: 1", "worker: 1", "c.yaml:2: worker: unknown key (did you mean 'workers'?)"),
        # YAML 1.1 reads an unquoted `on` as true: the key was shown as True, with no word on why
        ("    min_chars: 10", "    on: 10", "(length_filter).True: unknown parameter (YAML reads an unquoted key on, "
                                          "off, yes or no as true or false: write it in quotes, as in 'on': ...)"),
        ("workers: 1", "workers: -3", "c.yaml:2: workers: expected an integer >= 0"),
        ("    path: in", "    path: in\n    format: xml", "c.yaml:6: inputs[0].format: 'xml' is not one of"),
        ("    path: in", "    path: in\n    txt_key: body", "c.yaml:6: inputs[0].txt_key: unknown parameter "
                                                             "(did you mean 'text_key'?)"),
        # an operator's own check that names a parameter points at that parameter's line (it gave the op's)
        ("    min_chars: 10", "    min_chars: 10\n    max_chars: 5", "c.yaml:10: pipeline[1] (length_filter): "
                                                                    "max_chars (5) is below min_chars (10)"),
        ("workers: 1", "workers: 1\nshard_max_bytes: lots", "shard_max_bytes: expected a size like '128MB'"),
        ("    min_chars: 10", "    min_chars: 10\n  - op: sample\n    weights: {wbe: 0.5}",
         "c.yaml:10: pipeline[2] 'sample': weights names the source 'wbe', which no input has (did you mean 'web'?); "
         "sources: web"),
        ("  - op: normalize_text", "  - op: html_to_text\n    sources: [web, forum]",
         "c.yaml:7: pipeline[0] 'html_to_text': sources names the source 'forum', which no input has; sources: web"),
        ("    min_chars: 10", "    min_chars: 10\n  - op: exact_dedup\n    normalise: lower",
         "c.yaml:11: pipeline[2] (exact_dedup).normalise: expected one of 'none', 'exact', 'loose', 'fuzzy', "
         "got str 'lower'"),
    ],
)
def test_errors_name_line_and_key(tmp_path: Path, old: str, new: str, expected: str):
    body = GOOD.replace(old, new)
    assert body != GOOD
    errors = _errors(tmp_path, body)
    assert any(expected in e for e in errors), errors


def test_all_errors_are_reported_at_once(tmp_path: Path):
    body = GOOD.replace("min_chars: 10", "min_char: 10").replace("workers: 1", "worker: 1")
    assert len(_errors(tmp_path, body)) == 2


def test_missing_inputs_and_output(tmp_path: Path):
    errors = _errors(tmp_path, "pipeline: []\n")
    assert any("inputs: required" in e for e in errors) and any("output: required" in e for e in errors)


def test_duplicate_source_names(tmp_path: Path):
    body = GOOD.replace("    path: in\n", "    path: in\n  - source: web\n    path: in\n")
    assert any("source name 'web' is used more than once" in e for e in _errors(tmp_path, body))


def test_a_source_no_input_has_stops_a_python_run_too(tmp_path: Path):
    from corpus import InputSpec, Pipeline
    from corpus.executor import PipelineError
    from corpus.stages.sample import Sample

    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=5)
    with pytest.raises(PipelineError, match="'sample': weights names the source 'forum', which no input has"):
        Pipeline([Sample(weights={"forum": 0.5})]).run(inputs=[InputSpec(source="web", path=str(tmp_path / "in"))],
                                                        output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ray_settings_load_and_a_dead_address_is_said_at_once(tmp_path: Path):
    """Any `ray:` mapping with an address crashed the config check (every key's test ran on every value: a
    string compared with 0); an address nothing answers at had ray.init retry for minutes."""
    from corpus.ray_executor import reachable

    body = GOOD + "executor: ray\nray:\n  address: 127.0.0.1:1\n  memory_per_task: 2GB\n  max_retries: 2\n"
    cfg = load_config(write_config(tmp_path / "c.yaml", body))
    assert cfg.ray == {"address": "127.0.0.1:1", "memory_per_task": 2 << 30, "max_retries": 2}
    errors = _errors(tmp_path, body.replace("max_retries: 2", "max_retries: two").replace("2GB", "lots"))
    assert len(errors) == 2 and "ray.memory_per_task: expected a size like '2GB'" in errors[0] + errors[1]
    with pytest.raises(ConnectionError, match=r"no Ray cluster answers at ray://127.0.0.1:1 \(Connection refused\)"):
        reachable("ray://127.0.0.1:1")
    reachable("auto")  # Ray's own to resolve


def test_yaml_syntax_error(tmp_path: Path):
    errors = _errors(tmp_path, "inputs: [\n  - source: web\n")
    assert "not valid YAML" in errors[0] and "line" in errors[0]


def test_a_key_given_twice_is_an_error(tmp_path: Path):
    """YAML keeps the last of two equal keys without a word: `output:` twice wrote where the reader did not look."""
    body = "output: out/a\noutput: out/b\ninputs:\n  - source: web\n    path: x\n    source: web2\n"
    assert _errors(tmp_path, body) == [f"{tmp_path / 'c.yaml'}: 2: output: given twice (also on line 1); YAML keeps "
                                       "the last", f"{tmp_path / 'c.yaml'}: 6: inputs[0].source: given twice (also on "
                                       "line 4); YAML keeps the last"]


def test_unsafe_yaml_tags_are_refused(tmp_path: Path):
    errors = _errors(tmp_path, "output: !!python/object/apply:os.system ['echo hi']\n")
    assert "not valid YAML" in errors[0]


def test_parse_size():
    assert parse_size("128MB") == 128 << 20
    assert parse_size("1.5 KiB") == 1536
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError):
        parse_size("12 parsecs")
    with pytest.raises(ValueError, match="expected a size >= 0, got -5"):  # split_bytes: -5 read as "never"
        parse_size(-5)


def test_cli_reports_config_errors_without_traceback(tmp_path: Path):
    cfg = write_config(tmp_path / "c.yaml", GOOD.replace("min_chars: 10", "min_char: 10"))
    res = run_cli("run", str(cfg), "--quiet")
    assert res.returncode == 2
    assert "min_char: unknown parameter" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_cli_reports_missing_input_path(tmp_path: Path):
    cfg = write_config(tmp_path / "c.yaml", GOOD)  # `in` does not exist
    res = run_cli("run", str(cfg), "--quiet")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "web" in res.stderr and "in" in res.stderr


def test_cli_check(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=5)
    res = run_cli("check", str(write_config(tmp_path / "c.yaml", GOOD)))
    assert res.returncode == 0, res.stderr
    assert "2 files" in res.stdout and "normalize_text -> length_filter" in res.stdout


# ---------------------------------------------------------------- entry-point discovery (corpus/registry.py)


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """An installed distribution with entry points of every kind the registry must tell apart."""
    dist = tmp_path / "fakeplugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[corpusforge.test_things]\n"
        "shout = fakeplug:Shout\nbroken = fakeplug_missing:Thing\nplain = fakeplug:NotAnOperator\n"
        "renamed = fakeplug:Shout\n"
        "[corpusforge.test_sections]\n"
        "good = fakeplug\nbad = fakeplug_missing\n")
    (tmp_path / "fakeplug.py").write_text(
        "from dataclasses import dataclass\nfrom corpus.operators import MapOperator\nLOADED = True\n"
        "@dataclass\nclass Shout(MapOperator):\n    name = 'shout'\n    def map(self, df):\n        return df\n"
        "class NotAnOperator:\n    name = 'plain'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_one_discovery_for_every_kind_of_entry_point(fake_plugins):
    from corpus import plugins
    from corpus.operators import Operator
    from corpus.registry import Registry, UnknownName, UnknownOperator, load_modules

    reg = Registry("corpusforge.test_things", "operator", lambda: Operator, UnknownOperator)
    assert reg.names() == ["broken", "plain", "renamed", "shout"]
    assert reg.get("shout").__name__ == "Shout"
    expected = {
        "shuot": "unknown operator 'shuot' (did you mean 'shout'?); known: broken, plain, renamed, shout",
        "broken": "operator 'broken' (fakeplug_missing:Thing) failed to import: No module named 'fakeplug_missing'",
        "plain": "entry point 'plain' (fakeplug:NotAnOperator) is not a subclass of Operator",
        "renamed": "entry point 'renamed' (fakeplug:Shout) points at a class named 'shout'",
    }
    for name, message in expected.items():
        with pytest.raises(UnknownOperator) as exc:
            reg.get(name)
        assert str(exc.value) == message
    # training plugins and operators answer alike (one class of error, the same wording)
    with pytest.raises(UnknownName, match=r"^unknown training plugin 'pretrian' \(did you mean 'pretrain'\?\); "):
        plugins.get("pretrian")
    assert issubclass(plugins.UnknownPlugin, UnknownName) and issubclass(UnknownOperator, UnknownName)
    # report-section modules: every one imported, a broken one reported, not raised
    failed = load_modules("corpusforge.test_sections")
    assert [(target, type(e).__name__) for target, e in failed] == [("fakeplug_missing", "ModuleNotFoundError")]
    import fakeplug  # type: ignore[import-not-found]

    assert fakeplug.LOADED


@pytest.mark.parametrize("op,params,says", [
    ("exact_dedup", {"partitions": -1}, "partitions must be 0 (sized to the corpus) or more, got -1"),
    ("line_dedup", {"partitions": -2}, "partitions must be 0 (sized to the corpus) or more, got -2"),
    ("boilerplate_lines", {"partitions": -1}, "partitions must be 0"),
    ("minhash_dedup", {"partitions": -1}, "partitions must be 0"),
    ("minhash_dedup", {"seed": -1}, "seed must lie in [0, 2**32), got -1"),
    ("minhash_dedup", {"fp_weight": -1.0}, "must be finite, >= 0 and not both 0, got -1.0, 0.9"),
    ("minhash_dedup", {"num_perm": 2048}, "num_perm = 2048 is too many hashes for the bands x rows optimiser"),
])
def test_dedup_settings_a_fit_would_fail_on_are_refused_when_made(op: str, params: dict, says: str):
    """They passed `corpus check` and failed in the fit, after the whole corpus was read (partitions -1:
    an OverflowError traceback from a worker)."""
    from corpus.registry import get

    with pytest.raises(ValueError) as exc:
        get(op)(**params)
    assert says in str(exc.value)


def test_minhash_settings_the_optimiser_never_sees_are_not_bounded_by_it():
    """num_perm 2048 with bands and rows given, and weights above 1 (only their ratio matters), were
    refused by bounds that belong to the optimiser."""
    from corpus.registry import get

    assert get("minhash_dedup")(num_perm=2048, bands=256, rows=8).band_rows() == (256, 8)
    assert get("minhash_dedup")(fp_weight=1.0, fn_weight=9.0).fn_weight == 9.0


def test_an_operator_path_beside_the_config_is_pointed_to(tmp_path: Path, monkeypatch):
    """Inputs and output resolve against the config's folder, an operator's paths against the working
    folder (as documented): a file beside the config, named relative to it, said only "does not exist"."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "evals.jsonl").write_text('{"q": "what is the capital of France and why is it known"}\n')
    (tmp_path / "conf" / "in").mkdir()
    cfg = tmp_path / "conf" / "c.yaml"
    cfg.write_text("output: out\ninputs:\n  - source: web\n    path: in\npipeline:\n  - op: decontaminate\n"
                   "    eval_sets: [evals.jsonl]\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert exc.value.errors[0].endswith(f"evaluation set evals.jsonl does not exist (an operator's paths are taken "
                                        f"from the working folder, {tmp_path}; evals.jsonl is beside the config: "
                                        f"write {tmp_path / 'conf' / 'evals.jsonl'})"), exc.value.errors
    monkeypatch.chdir(tmp_path / "conf")  # from the config's own folder it is found
    assert [o.name for o in load_config(cfg).pipeline] == ["decontaminate"]
    # a long string parameter is no file name to look for (os.stat raises ENAMETOOLONG): its error is said
    monkeypatch.chdir(tmp_path)
    cfg.write_text("output: out\ninputs:\n  - source: web\n    path: in\npipeline:\n  - op: exact_dedup\n"
                   f"    normalise: {'x' * 300}\n")
    with pytest.raises(ConfigError, match="normalise: expected one of"):
        load_config(cfg)
