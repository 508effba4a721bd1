"""The run configuration: presets, layering, files, --set overrides and the errors users see."""

from __future__ import annotations

import json

import pytest

from essence.core.errors import ConfigError
from essence.core.config import parse_set
from essence.method.runconfig import InitConfig, RunConfig, build_run_config, list_presets, validate_run_config


def test_presets_carry_the_papers_and_the_official_settings():
    paper = validate_run_config("paper")
    assert (paper.sources.count, paper.weight_decay, paper.loss_weight("consistency")) == (6, 0.007, 0.7)
    ood = validate_run_config("paper-ood")
    assert (ood.weight_decay, ood.loss_weight("consistency")) == (0.001, 0.6)
    tc = validate_run_config("targetclip")
    assert (tc.sources.count, tc.weight_decay, tc.loss_weight("consistency"), tc.loss_weight("transfer")) == (
        4,
        0.003,
        0.5,
        1.0,
    )
    assert tc.coefficients.enabled and tc.coefficients.optimizer == "per-step"
    assert tc.coefficient_lr == tc.lr == 0.2 and tc.coefficients.weight_decay == 0.01
    assert tc.best == "post-update"
    assert tc.encoder.config == {"normalize": False, "resample": "area"}
    assert set(list_presets()) == {"paper", "paper-ood", "targetclip", "essence-in", "essence-ood"}


def test_our_presets_carry_the_benchmarks_choices():
    ein, eood = validate_run_config("essence-in"), validate_run_config("essence-ood")
    assert (ein.sources.count, ein.init.mode, ein.steps) == (32, "auto", 100)
    assert (eood.sources.count, eood.init.mode, eood.steps) == (32, "zeros", 200)
    assert (ein.weight_decay, ein.loss_weight("consistency")) == (0.007, 0.7)  # the paper's in-domain terms
    assert (eood.weight_decay, eood.loss_weight("consistency")) == (0.001, 0.6)  # and its out-of-domain ones
    assert ein.apply_alpha == 1.2 and eood.apply_alpha is None
    assert validate_run_config("paper").apply_alpha is None  # the paper presets stay as the paper has them


def test_defaults_fix_the_official_quirks():
    cfg = RunConfig()
    assert cfg.preset == "essence-in"  # the evidence-based default (docs/method.md)
    assert cfg.best == "evaluated"
    assert cfg.coefficients.optimizer == "persistent"
    assert cfg.encoder.config == {}  # the encoder's own default: CLIP normalisation on
    assert cfg.heldout.count == 8


def test_user_values_win_over_the_preset_and_dicts_merge():
    cfg = validate_run_config(
        {"preset": "targetclip", "steps": 25, "encoder": {"name": "clip-rn50", "config": {"precision": "fp16"}}}
    )
    assert cfg.steps == 25 and cfg.weight_decay == 0.003
    assert cfg.encoder.name == "clip-rn50"
    assert cfg.encoder.config == {"normalize": False, "resample": "area", "precision": "fp16"}
    assert cfg.generator.name == "stylegan2-ffhq"


def test_shorthands_merge_like_their_long_forms():
    cfg = validate_run_config({"preset": "targetclip", "encoder": "clip-rn50", "init": "zeros", "target": "t.png"})
    assert cfg.encoder.name == "clip-rn50" and cfg.encoder.config["normalize"] is False
    assert cfg.init.mode == "zeros" and cfg.target == ["t.png"]
    assert validate_run_config({"init": "w.pt"}).init.path == "w.pt"
    assert validate_run_config({"coefficients": True}).coefficients.enabled
    assert build_run_config({"init": "w.pt"}, {"init": "zeros"}).init == InitConfig(mode="zeros")  # a later layer wins


def test_a_saved_config_validates_back_to_itself():
    cfg = validate_run_config({"preset": "paper-ood", "steps": 7, "losses": {"transfer": 1, "consistency": 0.2}})
    again = validate_run_config(json.loads(cfg.to_json()))
    assert again == cfg


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"stepz": 3}, "unknown field 'stepz' (did you mean 'steps'?)"),
        ({"sources": {"cuont": 3}}, "unknown field 'sources.cuont' (did you mean 'sources.count'?)"),
        ({"preset": "papr"}, "unknown preset 'papr'. Did you mean 'paper'?"),
        ({"steps": 0}, "steps:"),
        ({"init": {"mode": "file"}}, "init mode 'file' needs a path"),
        ({"losses": {"transfer": 0, "consistency": 0.0}}, "at least one loss term needs a non-zero weight"),
        ({"best": "lowest"}, "best:"),
    ],
)
def test_invalid_configs_say_what_is_wrong(data, expected):
    with pytest.raises(ConfigError) as err:
        validate_run_config(data)
    assert expected in str(err.value)


def test_parse_set_nests_dotted_keys_and_parses_json():
    assert parse_set(["steps=5", "generator.config.size=32", "target=a.png", "losses.x={\"weight\": 2}"]) == {
        "steps": 5,
        "generator": {"config": {"size": 32}},
        "target": "a.png",
        "losses": {"x": {"weight": 2}},
    }
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["steps"])


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_config_files_then_options_then_set(tmp_path, suffix):
    path = tmp_path / f"run{suffix}"
    if suffix == ".toml":
        path.write_text('preset = "paper-ood"\nsteps = 50\nseed = 3\n[sources]\ncount = 5\n[encoder]\nname = "e"\n')
    else:
        path.write_text(json.dumps({"preset": "paper-ood", "steps": 50, "seed": 3, "sources": {"count": 5}, "encoder": "e"}))
    cfg = build_run_config({"steps": 60}, file=path, sets=["seed=9", "sources.seed=4"])
    assert (cfg.preset, cfg.steps, cfg.seed, cfg.sources.count, cfg.sources.seed) == ("paper-ood", 60, 9, 5, 4)
    assert cfg.encoder.name == "e" and cfg.weight_decay == 0.001


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_run_config(file=tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3")
    with pytest.raises(ConfigError, match="Cannot parse config file"):
        build_run_config(file=bad)
    yaml = tmp_path / "run.yaml"
    yaml.write_text("steps: 3")
    with pytest.raises(ConfigError, match=".toml or .json"):
        build_run_config(file=yaml)


def test_derived_seeds_do_not_collide():
    cfg = RunConfig(seed=5)
    seeds = {cfg.sources_seed, cfg.heldout_seed, cfg.init_seed(0), cfg.init_seed(1)}
    assert len(seeds) == 4
