"""The commands of the local development kit: ``simulate``, ``emulator``, ``run``, ``bench``."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.cli.args import conf_args
from jobs.config import load_config, resolve_secret
from jobs.errors import ConfigError
from jobs.stages.residency import DEFAULT_OUTLINE

logger = logging.getLogger("jobs")
BENCHMARKS = ("quality", "delta_write", "pipeline", "scale", "latency", "vehicle", "residency",
              "publish", "share")  # fmt: skip


def add(commands: Any) -> None:
    sim = commands.add_parser(
        "simulate",
        help="generate a realistic fleet's events with injected bad input and a ground-truth manifest",
        description="Generate events for N vehicles of the configured partners, inject the bad "
        "input real fleets send, and write events.jsonl, manifest.jsonl and summary.json; "
        "optionally send the events to an Event Hub.",
    )
    conf_args(sim)
    sim.add_argument("--vehicles", type=int, default=200, help="vehicles (default 200)")
    sim.add_argument(
        "--partners",
        type=int,
        default=None,
        help="use the first M configured partners (default: all)",
    )
    sim.add_argument(
        "--events", type=int, default=50_000, help="clean events before bad input (default 50000)"
    )
    sim.add_argument(
        "--bad-rate",
        type=float,
        default=0.03,
        help="fraction of events carrying bad input (default 0.03)",
    )
    sim.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    sim.add_argument(
        "--end-time",
        type=_utc_time,
        default=None,
        help="ISO-8601 time of the last event (default: now); fix it for byte-identical output",
    )
    sim.add_argument("--out", default="simulated", help="output directory (default ./simulated)")
    sim.add_argument(
        "--connection-string-env",
        default=None,
        metavar="VAR",
        help="send to Event Hubs: the environment variable holding the connection string",
    )
    sim.add_argument("--eventhub", default=None, help="Event Hub name (default: [source].eventhub)")
    sim.set_defaults(handler=_simulate)

    emulator = commands.add_parser(
        "emulator",
        help="run the local Event Hubs endpoint that the azure-eventhub SDK talks to",
        description="Serve the hubs of an official-emulator Config.json over AMQP on 127.0.0.1. "
        "Clients use the official emulator's connection string (printed at start-up).",
    )
    emulator.add_argument("--config", default="conf/eventhubs-emulator.json",
                          help="official emulator Config.json (default conf/eventhubs-emulator.json)")  # fmt: skip
    emulator.add_argument(
        "--data-dir", default=None, help="keep events in files here (default: memory only)"
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    emulator.add_argument(
        "--port", type=int, default=5672, help="port (default 5672; 0 picks a free one)"
    )
    emulator.add_argument("--fsync", choices=["always", "never"], default="always",
                          help="always: sync each stored delivery to disk before acknowledging it "
                          "(default); never: leave it to the OS (faster, loses the tail on power loss)")  # fmt: skip
    emulator.add_argument("--keys-env", metavar="VAR",
                          help="variable holding the SAS keys as name=key;name2=key2 (default: the "
                          "official emulator's RootManageSharedAccessKey=SAS_KEY_VALUE)")  # fmt: skip
    transports = emulator.add_argument_group(
        "other transports",
        "each on a port of its own, as Event Hubs serves them (0: a free port); "
        "every address is printed after the connection string",
    )
    for flag, text in (("--tls-port", "also AMQP over TLS (amqps; Event Hubs: 5671)"),
                       ("--wss-port", "also AMQP over WebSocket over TLS (Event Hubs: 443)"),
                       ("--ws-port", "also AMQP over WebSocket without TLS")):  # fmt: skip
        transports.add_argument(flag, type=int, metavar="PORT", help=text)
    transports.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="server certificate (chain) for TLS (default: a self-signed one "
        "for localhost, written under --data-dir or a temporary folder)",
    )
    transports.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    emulator.set_defaults(handler=_emulator)

    run = commands.add_parser(
        "run",
        help="end to end on this machine: local Event Hubs, a simulated fleet, ingest, summary",
        description="What `make run` does: start the local Event Hubs endpoint, send a simulated "
        "fleet, run ingest until it has caught up, stop, print a summary. Everything lives under "
        "--workdir, which is recreated on every run.",
    )
    conf_args(run)
    run.add_argument("--vehicles", type=int, default=200, help="vehicles (default 200)")
    run.add_argument("--events", type=int, default=50_000, help="events (default 50000)")
    run.add_argument("--bad-rate", type=float, default=0.03, help="bad input share (default 0.03)")
    run.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    run.add_argument(
        "--workdir", default=".run", help="where the hub, manifest and lake go (default .run)"
    )
    run.add_argument("--no-gx", dest="gx", action="store_false", help="skip GX's batch verdict")
    run.set_defaults(handler=_run, log_level=logging.WARNING)  # its progress is its output

    bench = commands.add_parser(
        "bench",
        help="run the benchmarks and print ratios against baselines measured in the same run",
        description="Benchmarks print ratios against a baseline measured in the same run; they "
        "never assert (shared machines are noisy).",
    )
    conf_args(bench)
    bench.add_argument(
        "--events", type=int, default=60_000, help="simulated events (default 60000)"
    )
    bench.add_argument(
        "--repeats", type=int, default=3, help="timed repeats per measurement (default 3)"
    )
    bench.add_argument("--write-rows", type=int, default=3_000_000,
                       help="rows for the Delta write benchmark (default 3000000)")  # fmt: skip
    bench.add_argument("--recorded-ids", type=int, default=4_000_000,
                       help="ids in the dedup state for the scale benchmark (default 4000000)")  # fmt: skip
    bench.add_argument("--only", choices=list(BENCHMARKS), action="append",
                       help="run only these benchmarks (repeatable; default all)")  # fmt: skip
    bench.set_defaults(handler=_bench)

    outline = commands.add_parser(
        "outline",
        help="build the residency outline of mainland China that the ingest job ships",
        description="Widen Natural Earth 1:10m mainland China by the territorial sea along its "
        "coasts and a tolerance along its land borders, take Hong Kong, Macao and Taiwan out "
        "exactly, and write the GeoJSON the residency guard loads (needs the dev extra: shapely, "
        "pyproj; `make outline` fetches the world file).",
    )
    outline.add_argument("--china", type=Path, default=DEFAULT_OUTLINE.parent / "sources" / "greater_china_ne10m.geojson",
                         help="mainland China, HK, MO, TW as GeoJSON features (default: the packaged copy)")  # fmt: skip
    outline.add_argument("--world", type=Path, required=True,
                         help="world-atlas 2.0.2 countries-10m.json (TopoJSON, from npm)")  # fmt: skip
    outline.add_argument("--out", type=Path, default=DEFAULT_OUTLINE,
                         help="where to write the outline (default: the packaged one)")  # fmt: skip
    outline.set_defaults(handler=_outline)


def _utc_time(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time like 2026-11-23T12:00:00Z; got {text!r}"
        ) from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _emulator(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from jobs.devkit.emulator.auth import DEV_KEYS, keys_from_env
    from jobs.devkit.emulator.server import Emulator

    async def serve() -> None:
        keys = keys_from_env(args.keys_env)
        emulator = Emulator(args.config, args.data_dir, fsync=args.fsync, keys=keys)
        server = await emulator.serve(args.host, args.port)
        port = server.sockets[0].getsockname()[1]
        if keys == DEV_KEYS:  # the public development key may be printed; others never are
            print(
                f"Endpoint=sb://localhost:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
                f"SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
                flush=True,
            )
        else:
            print(f"Endpoint=sb://localhost:{port};UseDevelopmentEmulator=true; (keys from "
                  f"{args.keys_env}: {', '.join(keys)})", flush=True)  # fmt: skip
        others = await _other_transports(emulator, args)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for listening in (server, *others):
            listening.close()
        emulator.close()
        logger.info("emulator stopped")

    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("emulator: --tls-cert and --tls-key go together")
    asyncio.run(serve())
    return 0


async def _other_transports(emulator: Any, args: argparse.Namespace) -> list[Any]:
    """Start the TLS and WebSocket listeners asked for; print each address (and the certificate
    clients must trust) on its own line."""
    import tempfile

    from jobs.devkit.emulator.transports import WS_PATH, tls_context

    wanted = [(args.tls_port, True, False, "AmqpOverTls=amqps://localhost:{}"),
              (args.wss_port, True, True, "AmqpOverWebsocket=wss://localhost:{}" + WS_PATH),
              (args.ws_port, False, True, "AmqpOverWebsocket=ws://localhost:{}" + WS_PATH)]  # fmt: skip
    wanted = [w for w in wanted if w[0] is not None]
    context = None
    if any(tls for _, tls, _, _ in wanted):
        home = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="eh-tls-"))
        context, cert = tls_context(args.tls_cert, args.tls_key, home / "tls")
        print(f"Certificate={cert.resolve()}", flush=True)
    servers = []
    for port, tls, websocket, line in wanted:
        server = await emulator.serve(args.host, port, tls=context if tls else None,
                                      websocket=websocket)  # fmt: skip
        servers.append(server)
        print(line.format(server.sockets[0].getsockname()[1]), flush=True)
    return servers


def _run(args: argparse.Namespace) -> int:
    from jobs.devkit.demo import DemoParams, print_summary, run_demo

    cfg = load_config(args.conf, args.overrides)
    params = DemoParams(vehicles=args.vehicles, events=args.events, bad_rate=args.bad_rate,
                        seed=args.seed, workdir=Path(args.workdir), gx=args.gx,
                        verbose=args.verbose)  # fmt: skip
    print_summary(run_demo(cfg, params))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from jobs import register_data_sources
    from jobs.bench import delta_write, pipeline, publish, quality, residency, scale, vehicle
    from jobs.session import spark_session

    cfg = load_config(args.conf, args.overrides)
    only = set(args.only or BENCHMARKS)
    report = {}
    if "share" in only:
        from jobs.bench import share

        logger.info(
            "bench share: %s rows through the sharing server and directly", f"{args.events * 4:,}"
        )
        report["share"] = share.run(cfg, rows=args.events * 4, repeats=args.repeats)
        if only == {"share"}:
            print(json.dumps(report, indent=2))
            return 0
    with spark_session(cfg) as spark:
        register_data_sources(spark)
        if "delta_write" in only:
            logger.info("bench delta_write: %s rows", f"{args.write_rows:,}")
            report["delta_write"] = delta_write.run(
                spark, rows=args.write_rows, repeats=args.repeats
            )
        if "quality" in only:
            logger.info("bench quality: %s simulated events", f"{args.events:,}")
            report["quality"] = quality.run(spark, cfg, events=args.events, repeats=args.repeats)
        if "pipeline" in only:
            logger.info(
                "bench pipeline: SDK vs eventhubs source vs ingest, %s events", f"{args.events:,}"
            )
            report["pipeline"] = pipeline.run(spark, cfg, events=args.events)
        if "scale" in only:
            logger.info("bench scale: ingest against bare Spark, jobs per batch, dedup state of "
                        "%s ids", f"{args.recorded_ids:,}")  # fmt: skip
            report["scale"] = scale.run(spark, cfg, events=args.events,
                                        recorded=args.recorded_ids)  # fmt: skip
        if "latency" in only:
            from jobs.bench import latency

            logger.info("bench latency: enqueue to silver at 100 events/s, 1 s trigger, against "
                        "a pass-through query")  # fmt: skip
            report["latency"] = latency.run(spark, cfg)
        if "vehicle" in only:
            logger.info("bench vehicle: per-vehicle rules over 100,000 simulated events")
            report["vehicle"] = vehicle.run(spark, cfg, events=100_000)
        if "residency" in only:
            logger.info(
                "bench residency: the outline's verdict on %s positions", f"{args.events:,}"
            )
            report["residency"] = residency.run(spark, events=args.events, repeats=args.repeats)
        if "publish" in only:
            logger.info(
                "bench publish: %s simulated events ingested, then published", f"{args.events:,}"
            )
            report["publish"] = publish.run(spark, cfg, events=args.events)
    print(json.dumps(report, indent=2))
    return 0


def _outline(args: argparse.Namespace) -> int:
    from jobs.devkit.outline import build, write

    write(build(args.china, args.world), args.out)
    print(json.dumps({"out": str(args.out), "bytes": args.out.stat().st_size}))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from jobs.devkit.simulator import SimulationParams, simulate
    from jobs.devkit.simulator.output import send_to_eventhubs, write_files
    from jobs.errors import SimulatorError

    cfg = load_config(args.conf, args.overrides)
    partners = list(cfg.partners)
    if args.partners is not None:
        if not 1 <= args.partners <= len(partners):
            raise SimulatorError(
                f"--partners: expected 1..{len(partners)} (partners configured in {cfg.path}); got {args.partners}"
            )
        partners = partners[: args.partners]
    params = SimulationParams(
        vehicles=args.vehicles,
        events=args.events,
        bad_rate=args.bad_rate,
        seed=args.seed,
        end_time=args.end_time,
        max_body_bytes=cfg.quality.max_body_bytes,
    )
    messages = simulate(params, partners)
    shown = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(params).items()}
    out = write_files(messages, args.out, {**shown, "partners": [p.id for p in partners]})
    if args.connection_string_env:
        connection = resolve_secret(
            args.connection_string_env, purpose="Event Hubs connection string"
        )
        send_to_eventhubs(
            [(m.partition_key, m.body) for m in messages],
            connection_string=connection,
            eventhub=args.eventhub or cfg.source.eventhub,
        )
    summary = json.loads((Path(out) / "summary.json").read_text())
    print(
        json.dumps(
            {"out": str(out), "messages": summary["messages"], "outcomes": summary["outcomes"]}
        )
    )
    return 0
