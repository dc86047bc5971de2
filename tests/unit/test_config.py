from __future__ import annotations

import re

import pytest

from jobs.config import PROJECT_ROOT, load_config, resolve_secret
from jobs.errors import ConfigError, SecretNotFoundError

MINIMAL = """
[lake]
root = "lake"

[[partners]]
id = "p1"
display_name = "Partner One"
region = "eu"
"""


@pytest.mark.parametrize("env", ["local", "databricks", "hdinsight"])
def test_every_shipped_config_loads(env: str) -> None:
    cfg = load_config(PROJECT_ROOT / "conf" / f"{env}.toml")
    assert cfg.environment == env
    assert len(cfg.partners) == 5
    assert cfg.source.connection_string_env == "EVENTHUB_CONNECTION_STRING"


def test_defaults_fill_in_unset_sections(write_conf) -> None:
    cfg = load_config(write_conf(MINIMAL))
    assert cfg.source.consumer_group == "$Default"
    assert cfg.quality.dedup_window_hours == 48
    assert cfg.lake.checkpoints == "lake/_checkpoints"
    assert cfg.partner_ids == ["p1"]
    assert cfg.environment == "test"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MINIMAL + "\n[source]\nmax_events = 5\n",
            r"test.toml \[source\].max_events: unknown key; allowed keys: .*max_events_per_trigger",
        ),
        (
            MINIMAL + '\n[source]\nmax_events_per_trigger = "many"\n',
            r"\[source\].max_events_per_trigger: expected an integer; got 'many' \(str\)",
        ),
        (
            MINIMAL + '\n[source]\nkind = "mqtt"\n',
            r"\[source\].kind: expected one of 'eventhubs', 'kafka'; got 'mqtt'",
        ),
        (
            MINIMAL + "\n[source]\nmax_events_per_trigger = 0\n",
            r"\[source\].max_events_per_trigger: expected a positive integer; got 0",
        ),
        (
            MINIMAL + "\n[quality]\ndedup_window_hours = 6\n",
            r"\[quality\].dedup_window_hours: expected at least 24",
        ),
        (
            MINIMAL + '\n[residency]\nblocked_countries = ["Mars"]\n',
            r"\[residency\].blocked_countries: expected ISO 3166-1 country codes",
        ),
        (
            MINIMAL + "\n[spark]\nconf = { 'spark.ui.enabled' = false }\n",
            r"\[spark\].conf.spark.ui.enabled: expected a string; got False",
        ),
        (
            "[[partners]]\nid='p'\ndisplay_name='P'\nregion='eu'\n",
            r"test.toml lake: missing required value \(a table\)",
        ),
        ("[lake]\nroot = 'x'\n", r"test.toml partners: missing required value \(a list\)"),
        (
            "[lake]\nroot = 5\n" + MINIMAL.split("[[partners]]")[1].join(["[[partners]]", ""]),
            r"\[lake\].root: expected a string; got 5 \(int\)",
        ),
        (
            MINIMAL + "\n[[partners]]\nid = 'p1'\ndisplay_name = 'again'\nregion = 'eu'\n",
            r"partners: partner ids must be unique; repeated: \['p1'\]",
        ),
        (
            MINIMAL + "\n[[partners]]\nid = 'p2'\nregion = 'eu'\n",
            r"partners\[1\].display_name: missing required value \(a string\)",
        ),
        ("this is = not toml =", r"test.toml: not valid TOML"),
        (
            MINIMAL + "\n[vehicle.on_failure]\n'vehicle.odometer_monotonic' = 'drop'\n",
            r"\[vehicle\].on_failure.vehicle.odometer_monotonic: expected one of 'warn', "
            r"'quarantine', 'fail', 'off'; got 'drop'",
        ),
        (
            MINIMAL + "\n[vehicle.on_failure]\n'vehicle.speed' = 'warn'\n",
            r"\[vehicle\].on_failure: unknown rule 'vehicle.speed'",
        ),
        (MINIMAL + "\n[quality]\ngx_mode = 'later'\n", r"\[quality\].gx_mode: expected one of"),
        (
            MINIMAL + "\n[quality]\ngx_busy_fraction = 0\n",
            r"\[quality\].gx_busy_fraction: expected more than 0 and at most 1; got 0",
        ),
    ],
)
def test_bad_config_fails_naming_file_key_and_expectation(
    write_conf, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_conf(text))


def test_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"nope.toml: configuration file not found"):
        load_config(tmp_path / "nope.toml")


def test_overrides_apply_and_are_validated_like_the_file(write_conf) -> None:
    path = write_conf(MINIMAL)
    cfg = load_config(path, ["source.max_events_per_trigger=1000", "lake.root=/data/lake"])
    assert cfg.source.max_events_per_trigger == 1000
    assert cfg.lake.root == "/data/lake"
    with pytest.raises(
        ConfigError, match=r"\[source\].max_events_per_trigger \(from --set\): expected an integer"
    ):
        load_config(path, ["source.max_events_per_trigger=lots"])
    with pytest.raises(ConfigError, match=r"\[lake\].rooot \(from --set\): unknown key"):
        load_config(path, ["lake.rooot=x"])
    with pytest.raises(ConfigError, match=r"--set 'lake.root': expected section.key=value"):
        load_config(path, ["lake.root"])


def test_config_is_frozen(write_conf) -> None:
    cfg = load_config(write_conf(MINIMAL))
    with pytest.raises(AttributeError):
        cfg.lake.root = "elsewhere"  # type: ignore[misc]


def test_secrets_are_read_from_the_environment_and_never_echoed(monkeypatch) -> None:
    monkeypatch.setenv("TEST_EH_CONN", "Endpoint=sb://x/;SharedAccessKey=topsecret")
    assert resolve_secret("TEST_EH_CONN", purpose="Event Hubs connection string").endswith(
        "topsecret"
    )
    monkeypatch.delenv("TEST_EH_CONN")
    with pytest.raises(
        SecretNotFoundError,
        match=r"environment variable TEST_EH_CONN is not set; it must hold the Event Hubs",
    ):
        resolve_secret("TEST_EH_CONN", purpose="Event Hubs connection string")


def test_summary_holds_secret_names_only(monkeypatch, cfg) -> None:
    monkeypatch.setenv("EVENTHUB_CONNECTION_STRING", "Endpoint=sb://x/;SharedAccessKey=topsecret")
    summary = repr(cfg.summary())
    assert "EVENTHUB_CONNECTION_STRING" in summary
    assert "topsecret" not in summary
    assert not re.search(r"SharedAccessKey=", summary)


def test_vehicle_rules_are_configured_per_rule(write_conf) -> None:
    cfg = load_config(write_conf(MINIMAL + """
[vehicle]
max_speed_mps = 70
clock_offsets_s = [18, 37]
[vehicle.on_failure]
"vehicle.clock_offset" = "off"
"""))  # fmt: skip
    assert cfg.vehicle.max_speed_mps == 70.0 and cfg.vehicle.clock_offsets_s == (18.0, 37.0)
    assert cfg.vehicle.action("vehicle.clock_offset") == "off"
    assert cfg.vehicle.action("vehicle.seq_replay") == "quarantine"  # the default stays
