"""Names the pipeline writes into its tables and the fleet simulator predicts: decode reasons,
residency reasons and per-vehicle rules (see ``docs/data-contract.md``).

Plain strings only, no Spark or pandas: the simulator imports this module without starting
anything, and a renamed reason cannot drift between the two.
"""

from __future__ import annotations

# Bodies that cannot be decoded (``jobs.stages.decode``).
BODY_TOO_LARGE = "decode.body_too_large"
INVALID_UTF8 = "decode.invalid_utf8"
MALFORMED_JSON = "decode.malformed_json"
DUPLICATE_KEY = "decode.duplicate_key"
UNKNOWN_EVENT_TYPE = "decode.unknown_event_type"
UNKNOWN_SCHEMA_VERSION = "decode.unknown_schema_version"
PAYLOAD_NOT_OBJECT = "decode.payload_not_object"
DECODE_REASONS = (
    BODY_TOO_LARGE,
    INVALID_UTF8,
    MALFORMED_JSON,
    DUPLICATE_KEY,
    UNKNOWN_EVENT_TYPE,
    UNKNOWN_SCHEMA_VERSION,
    PAYLOAD_NOT_OBJECT,
)

# Events that are written nowhere (``jobs.stages.residency``).
RESIDENCY_ORIGIN = "residency.origin_country"
RESIDENCY_COORDINATES = "residency.coordinates"

# Rules checked across one vehicle's events (``jobs.stages.vehicle``), with their default action.
SEQ_REPLAY = "vehicle.seq_replay"
CLOCK_OFFSET = "vehicle.clock_offset"
ODOMETER_MONOTONIC = "vehicle.odometer_monotonic"
POSITION_JUMP = "vehicle.position_jump"
SPEED_DISTANCE = "vehicle.speed_distance_agreement"
SENSOR_STUCK = "vehicle.sensor_stuck"
VEHICLE_RULES = {
    SEQ_REPLAY: "quarantine",
    CLOCK_OFFSET: "warn",
    ODOMETER_MONOTONIC: "quarantine",
    POSITION_JUMP: "quarantine",
    SPEED_DISTANCE: "quarantine",
    SENSOR_STUCK: "warn",
}
VEHICLE_SUITE = "vehicle"

# The envelope suite's warning for fields the schema does not know (schema drift).
RESCUED_DRIFT = "envelope._rescued_data.no_drift"
