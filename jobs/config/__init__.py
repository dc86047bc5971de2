"""Typed configuration, one TOML file per environment under conf/.

Every section is a frozen dataclass; defaults live on the fields, cross-field rules in
``__post_init__``. Unknown keys, missing required values and wrong types fail at start-up with a
message naming the file, the key, what is expected and what was given. Secrets are never values in
the configuration, only the names of environment variables that hold them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from jobs import countries
from jobs.config.ops import AlertsConfig
from jobs.config.toml import apply_overrides, build
from jobs.contract import VEHICLE_RULES
from jobs.errors import ConfigError, SecretNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


def shipped(name: str) -> Path:
    """A folder the project ships (``schemas``, ``expectations``, ``conf``): the checkout's own
    when running from one, else the copy inside the installed package (``jobs/data/``)."""
    checkout = PROJECT_ROOT / name
    if (PROJECT_ROOT / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    return Path(str(resources.files("jobs") / "data" / name))


"""The directory that holds conf/, schemas/ and expectations/ in a source checkout."""

TableFormat = Literal["auto", "delta", "deltars"]
SourceKind = Literal["eventhubs", "kafka"]


@dataclass(frozen=True)
class Partner:
    """One alliance member allowed to send events."""

    id: str
    display_name: str
    region: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.id):
            raise ValueError(
                f"id: expected lower-case letters, digits and '-' (it names the partner's "
                f"folder and share); got {self.id!r}"
            )


@dataclass(frozen=True)
class SourceConfig:
    """Where events are read from: Event Hubs through the Python source, or its Kafka endpoint."""

    kind: SourceKind = "eventhubs"
    eventhub: str = "vehicle-events"
    consumer_group: str = "$Default"
    connection_string_env: str | None = "EVENTHUB_CONNECTION_STRING"
    namespace: str | None = None  # <ns>.servicebus.windows.net: Azure AD instead of a key
    starting_position: str = "earliest"
    max_events_per_trigger: int = 50_000
    fail_on_data_loss: bool = True
    receive_timeout_s: int = 60
    trigger_interval_s: float = 1.0
    options: dict[str, str] = field(default_factory=dict)  # passed to the source as they are

    def __post_init__(self) -> None:
        if self.max_events_per_trigger <= 0:
            raise ValueError(
                f"max_events_per_trigger: expected a positive integer; got {self.max_events_per_trigger}"
            )
        if not self.connection_string_env and not self.namespace:
            raise ValueError(
                "connection_string_env: give the variable that holds the connection string, or "
                "namespace to sign in with Azure AD"
            )
        if self.trigger_interval_s < 0:
            raise ValueError(
                f"trigger_interval_s: expected 0 or more; got {self.trigger_interval_s}"
            )


@dataclass(frozen=True)
class LakeConfig:
    """Where the Delta tables and the streaming checkpoints live."""

    root: str
    table_format: TableFormat = "auto"
    checkpoint_root: str | None = None
    storage_options_env: str | None = None
    tables: tuple[str, ...] = ()
    vacuum_retention_hours: int = 168
    target_file_mb: int = 128

    def __post_init__(self) -> None:
        if self.vacuum_retention_hours < 0:
            raise ValueError(
                f"vacuum_retention_hours: expected 0 or more; got {self.vacuum_retention_hours}"
            )
        if self.target_file_mb <= 0:
            raise ValueError(
                f"target_file_mb: expected a positive integer; got {self.target_file_mb}"
            )

    @property
    def checkpoints(self) -> str:
        return self.checkpoint_root or f"{self.root.rstrip('/')}/_checkpoints"


@dataclass(frozen=True)
class QualityConfig:
    """Schemas, expectation suites and the limits applied before validation."""

    schemas_dir: str | None = None
    expectations_dir: str | None = None
    max_body_bytes: int = 256 * 1024
    dedup_window_hours: int = 48
    max_future_skew_s: int = 300
    max_event_age_days: int = 30
    # GX validates each batch: "async" in the background after the batch commits (its verdicts
    # go to dq_gx_results; the next batch does not wait), "inline" before the batch commits
    # (verdicts in dq_results.gx_success), "off". The one-pass row checks always run inline.
    gx_mode: Literal["async", "inline", "off"] = "async"
    # "async": GX runs at most once per this many seconds, over every batch done since its last
    # run, so it takes the driver from the stream rarely (stopping the query flushes it).
    gx_interval_s: float = 60.0
    # "async": the most of the time a run may keep GX busy; it pauses between event types for
    # the rest, so the batches beside it slow a little instead of stalling (1: no pauses).
    gx_busy_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.gx_interval_s < 0:
            raise ValueError(f"gx_interval_s: expected 0 or more; got {self.gx_interval_s}")
        if not 0 < self.gx_busy_fraction <= 1:
            raise ValueError(
                f"gx_busy_fraction: expected more than 0 and at most 1; got {self.gx_busy_fraction}"
            )
        if self.dedup_window_hours < 24:
            raise ValueError(
                f"dedup_window_hours: expected at least 24 (re-sends arrive up to a day late); "
                f"got {self.dedup_window_hours}"
            )
        if self.max_body_bytes <= 0:
            raise ValueError(
                f"max_body_bytes: expected a positive integer; got {self.max_body_bytes}"
            )

    @property
    def schemas_path(self) -> Path:
        return Path(self.schemas_dir) if self.schemas_dir else shipped("schemas")

    @property
    def expectations_path(self) -> Path:
        return Path(self.expectations_dir) if self.expectations_dir else shipped("expectations")


VehicleAction = Literal["warn", "quarantine", "fail", "off"]
_VEHICLE_ACTIONS: dict[str, VehicleAction] = dict(VEHICLE_RULES)  # type: ignore[arg-type]


@dataclass(frozen=True)
class VehicleConfig:
    """Per-vehicle checks across events (the ingest query's stateful stage, ``jobs.vehicle``)."""

    enabled: bool = True
    state_ttl_hours: float = 168.0  # a vehicle silent this long is forgotten
    odometer_tolerance_m: float = 10.0
    max_speed_mps: float = 90.0  # implied by consecutive positions
    speed_tolerance_mps: float = 3.0  # reported vs distance over time between fixes
    speed_tolerance_ratio: float = 0.25
    speed_change_mps2: float = 2.0  # acceleration allowed for between fixes
    max_fix_gap_s: float = 60.0  # speed agreement only between fixes this close
    clock_offsets_s: tuple[float, ...] = (18.0,)  # GPS time runs 18 s ahead of UTC
    clock_tolerance_s: float = 1.5
    max_clock_ahead_s: float = 5.0  # event_time ahead of the enqueued time
    stuck_fields: tuple[str, ...] = ("steering_pct", "heading_deg", "hdop")
    stuck_after_s: float = 600.0
    stuck_min_speed_mps: float = 1.0
    on_failure: dict[str, VehicleAction] = field(default_factory=lambda: dict(_VEHICLE_ACTIONS))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.on_failure) - set(_VEHICLE_ACTIONS))
        if unknown:
            raise ValueError(
                f"on_failure: unknown rule {unknown[0]!r}; rules: {', '.join(_VEHICLE_ACTIONS)}"
            )
        if self.state_ttl_hours <= 0:
            raise ValueError(
                f"state_ttl_hours: expected a positive number; got {self.state_ttl_hours}"
            )

    def action(self, rule: str) -> VehicleAction:
        """What a failure of ``rule`` does (``off``: the rule is not reported)."""
        return self.on_failure.get(rule, _VEHICLE_ACTIONS[rule])


@dataclass(frozen=True)
class ResidencyConfig:
    """Data that must never be processed or stored here."""

    # normalized like an event's origin_country: "CHN", "156" and "China" mean "CN"
    blocked_countries: tuple[str, ...] = ("CN",)
    boundary_file: str | None = None  # GeoJSON; default: the outline packaged with the job

    def __post_init__(self) -> None:
        codes = tuple(countries.normalize(code) for code in self.blocked_countries)
        for given, code in zip(self.blocked_countries, codes, strict=True):
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise ValueError(
                    f"blocked_countries: expected ISO 3166-1 country codes like 'CN' (or 'CHN', "
                    f"'156', 'China'); got {given!r}"
                )
        object.__setattr__(self, "blocked_countries", tuple(dict.fromkeys(codes)))


@dataclass(frozen=True)
class KeyRotation:
    """A new alliance key, pseudonymizing events from ``from_date`` on (earlier events keep the
    pseudonyms they were published with)."""

    version: int
    key_env: str
    from_date: str  # YYYY-MM-DD

    def __post_init__(self) -> None:
        if self.version < 2:
            raise ValueError(
                f"version: expected 2 or more (1 is pseudonym_key_env); got {self.version}"
            )
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.from_date):
            raise ValueError(f"from_date: expected YYYY-MM-DD; got {self.from_date!r}")


@dataclass(frozen=True)
class SharingConfig:
    """How alliance-wide tables are pseudonymized, coarsened and suppressed."""

    pseudonym_key_env: str = "ALLIANCE_PSEUDONYM_KEY"  # key version 1
    key_rotations: tuple[KeyRotation, ...] = ()
    geohash_precision: int = 5
    min_vehicles_per_cell: int = 10  # a gold cell with fewer is left out
    min_partners_per_cell: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.geohash_precision <= 7:
            raise ValueError(
                f"geohash_precision: expected 1..7 (5 is about 5 km); got {self.geohash_precision}"
            )
        versions = [r.version for r in self.key_rotations]
        if len(set(versions)) != len(versions):
            raise ValueError(f"key_rotations: versions must differ; got {versions}")
        if self.min_vehicles_per_cell < 1 or self.min_partners_per_cell < 1:
            raise ValueError("min_vehicles_per_cell: the minimums must be at least 1")


@dataclass(frozen=True)
class PublishConfig:
    """The publish job: partner, alliance and gold tables from silver."""

    trigger_interval_s: float = 10.0
    max_versions_per_trigger: int = 20  # silver versions a micro-batch reads at most
    gold_interval_s: float = 300.0  # a running job recomputes gold at most this often

    def __post_init__(self) -> None:
        if self.max_versions_per_trigger < 1:
            raise ValueError(
                f"max_versions_per_trigger: expected 1 or more; got {self.max_versions_per_trigger}"
            )


@dataclass(frozen=True)
class ShareConfig:
    """The Delta Sharing server (``python -m jobs share-server``) and its recipients."""

    host: str = "127.0.0.1"
    port: int = 8080
    endpoint: str | None = None  # the URL partners use; default http://<host>:<port>/delta-sharing
    url_ttl_s: int = 900  # a file URL's life
    token_days: int = 90  # a new recipient token's life
    recipients_file: str | None = None  # local JSON; default <lake root>/_sharing/recipients.json
    url_key_env: str = "SHARE_URL_KEY"  # signs file URLs; unset: a random key per server process
    alliance_share: str = "alliance"

    def __post_init__(self) -> None:
        if not 1 <= self.url_ttl_s <= 7 * 24 * 3600:
            raise ValueError(f"url_ttl_s: expected 1..604800 seconds; got {self.url_ttl_s}")
        if self.token_days < 1:
            raise ValueError(f"token_days: expected 1 or more; got {self.token_days}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected 0..65535; got {self.port}")

    def endpoint_url(self, port: int | None = None) -> str:
        return (self.endpoint or f"http://{self.host}:{port or self.port}/delta-sharing").rstrip(
            "/"
        )


@dataclass(frozen=True)
class SparkConfig:
    """Session settings; on a cluster leave master unset and let the platform decide."""

    master: str | None = None
    app_name: str = "vehicle-events"
    shuffle_partitions: int = 8
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """A whole environment's configuration."""

    environment: str
    lake: LakeConfig
    partners: tuple[Partner, ...]
    source: SourceConfig = field(default_factory=SourceConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    residency: ResidencyConfig = field(default_factory=ResidencyConfig)
    sharing: SharingConfig = field(default_factory=SharingConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    share: ShareConfig = field(default_factory=ShareConfig)
    vehicle: VehicleConfig = field(default_factory=VehicleConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    path: str = "<memory>"

    def __post_init__(self) -> None:
        ids = [p.id for p in self.partners]
        if not ids:
            raise ValueError("partners: expected at least one [[partners]] entry")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"partners: partner ids must be unique; repeated: {dupes}")
        if self.share.alliance_share in ids:
            raise ValueError(
                f"share.alliance_share: {self.share.alliance_share!r} is also a partner id"
            )

    @property
    def partner_ids(self) -> list[str]:
        return [p.id for p in self.partners]

    def summary(self) -> dict[str, Any]:
        """The configuration as plain data for the start-up log. Holds only secret *names*."""
        data = dataclasses.asdict(self)
        data["partners"] = [p["id"] for p in data["partners"]]
        return data


def resolve_secret(env_name: str, *, purpose: str) -> str:
    """Read a secret from the environment; the error names the variable, never a value."""
    value = os.environ.get(env_name)
    if not value:
        raise SecretNotFoundError(
            f"environment variable {env_name} is not set; it must hold the {purpose}. "
            f"Export it (or set it from your secret store) before starting the job."
        )
    return value


def storage_options(cfg: Config) -> dict[str, str]:
    """delta-rs storage options of the lake from the JSON in ``[lake] storage_options_env`` (a secret)."""
    if not cfg.lake.storage_options_env:
        return {}
    raw = os.environ.get(cfg.lake.storage_options_env)
    if not raw:
        raise ConfigError(
            f"environment variable {cfg.lake.storage_options_env} ([lake].storage_options_env) is "
            f"not set; it must hold the delta-rs storage options as a JSON object"
        )
    try:
        options = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(f"{cfg.lake.storage_options_env} does not hold a JSON object") from None
    return {str(k): str(v) for k, v in options.items()}


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Load ``conf/<env>.toml`` and apply ``section.key=value`` overrides, validating both."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    overridden = apply_overrides(raw, overrides, origin=str(path))
    raw.setdefault("environment", path.stem)
    raw["path"] = str(path)
    return build(Config, raw, origin=str(path), overridden=overridden)
