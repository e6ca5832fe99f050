"""`efence sim`: hardware simulators that speak the real device protocols, for commissioning without hardware.

efence sim device weighbridge --protocol toledo --pty       # prints /dev/pts/N, streams a truck
efence sim device weighbridge --protocol sma --tcp 4001     # serial-over-IP: socket://host:4001
efence sim device rfid --protocol chafon --tcp 4002 --noise 0.01
efence sim device led --pty                                 # prints what the host writes
efence sim device fence --modbus 1502 --fibre 5100 --zones 7:960 --every 30
efence sim lane firmware_configs/zones/yangshan-port.yaml port-gate/in-1
"""

import asyncio
import contextlib
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from firmware_configs.devices import LedBoardConfig, RfidReaderConfig, SerialLink, WeighbridgeConfig
from simulators.faults import Faults
from simulators.scene import LaneScene
from simulators.transport import SerialDeviceSimulator, TruckStream, fast_scene

EXAMPLES = (
    "Examples:\n\n"
    "efence sim device weighbridge --protocol toledo --pty\n\n"
    "efence sim device weighbridge --protocol yaohua --tcp 4001 --noise 0.01 --bad-checksum 0.01\n\n"
    "efence sim device rfid --protocol chafon --tcp 4002\n\n"
    "efence sim device led --pty\n\n"
    "efence sim device fence --modbus 1502 --fibre 5100 --zones 7:960\n\n"
    "efence sim lane firmware_configs/zones/yangshan-port.yaml port-gate/in-1\n\n"
    "Guide: docs/DEVICES.md"
)
app = typer.Typer(
    help="Run device simulators (weighbridge, RFID, IO board, cameras, LED) on a pty or TCP port, speaking "
    "the real device protocols, so a lane can be commissioned without hardware.",
    epilog=EXAMPLES,
    no_args_is_help=True,
)
device_app = typer.Typer(
    help="Run ONE simulated serial device on a pseudo-terminal (--pty) or as serial-over-IP (--tcp PORT).",
    epilog=EXAMPLES,
    no_args_is_help=True,
)
app.add_typer(device_app, name="device")

console = Console(width=None if sys.stdout.isatty() else 160)


# ----------------------------------------------------------------------------- shared options
PtyOpt = Annotated[
    bool, typer.Option("--pty", help="Serve on a new pseudo-terminal and print its path (default).")
]
TcpOpt = Annotated[
    int | None,
    typer.Option(
        "--tcp", metavar="PORT", help="Serve as serial-over-IP on this TCP port (0 = any free port)."
    ),
]
HostOpt = Annotated[str, typer.Option("--host", help="Address the TCP server binds to.")]
BaudOpt = Annotated[int, typer.Option("--baud", help="Line speed the simulated device is set to.")]
FramingOpt = Annotated[str, typer.Option("--framing", help="Data bits, parity, stop bits: 8N1, 7E1, …")]
NoiseOpt = Annotated[float, typer.Option("--noise", help="Probability per frame of a burst of random bytes.")]
FlipOpt = Annotated[float, typer.Option("--bitflip", help="Probability per byte of one flipped bit.")]
BadOpt = Annotated[
    float, typer.Option("--bad-checksum", help="Probability per frame of a wrong check value.")
]
SilenceOpt = Annotated[
    float | None, typer.Option("--silence-after", metavar="S", help="Stop sending after S seconds.")
]
SilenceForOpt = Annotated[
    float | None,
    typer.Option("--silence-for", metavar="S", help="…for S seconds, then resume (default: for ever)."),
]
DisconnectOpt = Annotated[
    float | None,
    typer.Option("--disconnect-every", metavar="S", help="TCP: drop the connection every S seconds."),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed of the fault generator (repeatable runs).")]
FastOpt = Annotated[bool, typer.Option("--fast", help="Short truck cycle (about 6 s instead of 15 s).")]


def _faults(
    noise: float,
    bitflip: float,
    bad_checksum: float,
    silence_after: float | None,
    silence_for: float | None,
    disconnect_every: float | None,
    seed: int | None,
    never_settle: bool = False,
    drift: float = 0.0,
) -> Faults:
    return Faults(
        noise=noise,
        bitflip=bitflip,
        bad_checksum=bad_checksum,
        never_settle=never_settle,
        drift_kg_per_h=drift,
        silence_after_s=silence_after,
        silence_for_s=silence_for,
        disconnect_every_s=disconnect_every,
        seed=seed,
    )


def _link(baud: int, framing: str) -> SerialLink:
    try:
        return SerialLink(port="sim", baudrate=baud, framing=framing)  # type: ignore[arg-type]
    except Exception as exc:
        raise typer.BadParameter(f"--baud {baud} / --framing {framing}: {exc}") from exc


def _own_scene(sim: SerialDeviceSimulator, fast: bool) -> None:
    if fast:
        sim.use_fast_truck_stream()


async def _serve_one(sim: SerialDeviceSimulator, pty: bool, tcp: int | None, host: str, what: str) -> None:
    if tcp is None or pty:
        path = sim.serve_pty()
        print(f"{what} on pty: {path}", flush=True)
    if tcp is not None:
        port = await sim.serve_tcp(host, tcp)
        print(f"{what} on tcp: socket://{host}:{port}", flush=True)
    print("Ctrl-C to stop.", flush=True)
    await sim.run()


def _run(coro) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)


# ----------------------------------------------------------------------------- sim device …
@device_app.command("weighbridge")
def weighbridge(
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            "-p",
            help="toledo | yaohua (XK3190 tF=0) | yaohua-reversed ('=' format) | yaohua-command | sma",
        ),
    ] = "toledo",
    pty: PtyOpt = False,
    tcp: TcpOpt = None,
    host: HostOpt = "127.0.0.1",
    baud: BaudOpt = 9600,
    framing: FramingOpt = "8N1",
    no_checksum: Annotated[
        bool, typer.Option("--no-checksum", help="Toledo: send frames without the checksum.")
    ] = False,
    leading_spaces: Annotated[
        bool, typer.Option("--leading-spaces", help="Toledo: blanks instead of leading zeros.")
    ] = False,
    address: Annotated[int, typer.Option("--address", help="yaohua-command: indicator address 1..26.")] = 1,
    rate: Annotated[float, typer.Option("--rate", help="Frames per second of streaming protocols.")] = 10.0,
    never_settle: Annotated[
        bool, typer.Option("--never-settle", help="The truck's weight never settles.")
    ] = False,
    drift: Annotated[
        float, typer.Option("--drift", metavar="KG_PER_H", help="Zero drift in kg per hour.")
    ] = 0.0,
    noise: NoiseOpt = 0.0,
    bitflip: FlipOpt = 0.0,
    bad_checksum: BadOpt = 0.0,
    silence_after: SilenceOpt = None,
    silence_for: SilenceForOpt = None,
    disconnect_every: DisconnectOpt = None,
    seed: SeedOpt = None,
    fast: FastOpt = False,
) -> None:
    """A weighbridge indicator: a truck drives on, settles, is let through and drives off, repeatedly."""
    from simulators.weighbridge import WeighbridgeSimulator

    try:
        config = WeighbridgeConfig(
            id="weighbridge",
            type="weighbridge",
            serial=_link(baud, framing),
            protocol=protocol,  # type: ignore[arg-type]
            checksum=not no_checksum,
            address=address,
        )
    except Exception as exc:
        raise typer.BadParameter(str(exc)) from exc
    faults = _faults(
        noise, bitflip, bad_checksum, silence_after, silence_for, disconnect_every, seed, never_settle, drift
    )
    sim = WeighbridgeSimulator(config, faults=faults, rate_hz=rate, leading_spaces=leading_spaces)
    _own_scene(sim, fast)
    _run(_serve_one(sim, pty, tcp, host, f"weighbridge ({protocol})"))


@device_app.command("rfid")
def rfid(
    protocol: Annotated[
        str, typer.Option("--protocol", "-p", help="chafon (polled UHF) | em4100 (125 kHz cards) | ascii-epc")
    ] = "chafon",
    role: Annotated[
        str, typer.Option("--role", help="Which tags it reads: e_plate | e_seal | driver_card.")
    ] = "",
    pty: PtyOpt = False,
    tcp: TcpOpt = None,
    host: HostOpt = "127.0.0.1",
    baud: BaudOpt = 57600,
    framing: FramingOpt = "8N1",
    address: Annotated[int, typer.Option("--address", help="chafon: reader address 0..254.")] = 0,
    frame_length: Annotated[int, typer.Option("--frame-length", help="em4100: 14 or 16 byte frames.")] = 14,
    check: Annotated[str, typer.Option("--check", help="em4100: xor or sum.")] = "xor",
    noise: NoiseOpt = 0.0,
    bitflip: FlipOpt = 0.0,
    bad_checksum: BadOpt = 0.0,
    silence_after: SilenceOpt = None,
    silence_for: SilenceForOpt = None,
    disconnect_every: DisconnectOpt = None,
    seed: SeedOpt = None,
    fast: FastOpt = False,
) -> None:
    """An RFID reader seeing the tags of a truck at the gate (e-plate EPC by default, driver card for em4100)."""
    from simulators.rfid import RfidSimulator

    role = role or ("driver_card" if protocol == "em4100" else "e_plate")
    try:
        config = RfidReaderConfig(
            id="rfid",
            type="rfid_reader",
            role=role,  # type: ignore[arg-type]
            serial=_link(baud, framing),
            protocol=protocol,  # type: ignore[arg-type]
            reader_address=address,
            em4100_frame_length=frame_length,  # type: ignore[arg-type]
            em4100_check=check,  # type: ignore[arg-type]
        )
    except Exception as exc:
        raise typer.BadParameter(str(exc)) from exc
    faults = _faults(noise, bitflip, bad_checksum, silence_after, silence_for, disconnect_every, seed)
    sim = RfidSimulator(config, faults=faults)
    _own_scene(sim, fast)
    _run(_serve_one(sim, pty, tcp, host, f"rfid reader ({protocol}, {role})"))


@device_app.command("led")
def led(
    pty: PtyOpt = False,
    tcp: TcpOpt = None,
    host: HostOpt = "127.0.0.1",
    baud: BaudOpt = 9600,
    lines: Annotated[int, typer.Option("--lines", help="Text lines on the board.")] = 2,
    encoding: Annotated[str, typer.Option("--encoding", help="gb18030 or utf-8.")] = "gb18030",
    silence_after: SilenceOpt = None,
    silence_for: SilenceForOpt = None,
    disconnect_every: DisconnectOpt = None,
    bitflip: FlipOpt = 0.0,
    noise: NoiseOpt = 0.0,
) -> None:
    """An LED text board (efence-text protocol): prints every text the host shows on it."""
    from simulators.led_board import LedBoardSimulator

    config = LedBoardConfig(
        id="led",
        type="led_board",
        serial=_link(baud, "8N1"),
        lines=lines,
        encoding=encoding,  # type: ignore[arg-type]
    )
    faults = _faults(noise, bitflip, 0.0, silence_after, silence_for, disconnect_every, None)
    sim = LedBoardSimulator(config, faults=faults, on_change=lambda text: print(" | ".join(text), flush=True))
    _run(_serve_one(sim, pty, tcp, host, "LED board"))


@device_app.command("fence")
def fence(
    modbus: Annotated[
        int | None,
        typer.Option(
            "--modbus",
            metavar="PORT",
            help="Serve a Modbus/TCP IO module with normally-closed alarm contacts on this port (0 = any).",
        ),
    ] = None,
    unit: Annotated[int, typer.Option("--unit", help="Modbus unit id of the IO module.")] = 1,
    inputs: Annotated[
        str, typer.Option("--inputs", help="Inputs the scripted beam breaks use, comma-separated.")
    ] = "0,2,4,6",
    fibre: Annotated[
        int | None,
        typer.Option(
            "--fibre", metavar="PORT", help="Serve a fibre controller (fence line protocol) on this port."
        ),
    ] = None,
    zones: Annotated[
        str,
        typer.Option(
            "--zones",
            help="Fibre controller zones with the segment length, `zone:metres,…` (e.g. fibre-n-01:960).",
        ),
    ] = "1:500",
    every: Annotated[
        float, typer.Option("--every", metavar="S", help="Mean seconds between scripted intrusions; 0: none.")
    ] = 30.0,
    host: HostOpt = "127.0.0.1",
    seed: SeedOpt = None,
) -> None:
    """Fence controllers: beam/cable alarm contacts on a Modbus IO module and/or a fibre controller
    speaking the fence line protocol (docs/DEVICES.md "Fence sensors"), with occasional intrusions."""
    from simulators.fence import FenceIoSimulator, FibreControllerSimulator, scripted_intrusions

    if modbus is None and fibre is None:
        raise typer.BadParameter("give --modbus PORT, --fibre PORT or both")
    try:
        di = [int(x) for x in inputs.split(",") if x.strip()]
        fz = [(z, float(m)) for z, _, m in (item.rpartition(":") for item in zones.split(",") if item)]
    except ValueError as exc:
        raise typer.BadParameter(f"--inputs 0,2 / --zones zone:metres,…: {exc}") from None

    async def main() -> None:
        io = FenceIoSimulator(unit=unit, inputs=max(di, default=0) + 1) if modbus is not None else None
        line = FibreControllerSimulator() if fibre is not None else None
        try:
            if io is not None:
                port = await io.start(host, modbus or 0)
                print(f"fence IO module on modbus://{host}:{port}/{unit}/<input> (NC contacts)", flush=True)
            if line is not None:
                port = await line.start(host, fibre or 0)
                print(f"fibre controller on socket://{host}:{port} zones {zones}", flush=True)
            print("Ctrl-C to stop.", flush=True)
            if every > 0:
                await scripted_intrusions(io, di, line, fz, every_s=every, seed=seed or 1)
            else:
                await asyncio.Event().wait()
        finally:
            for sim in (io, line):
                if sim is not None:
                    await sim.stop()

    _run(main())


# ----------------------------------------------------------------------------- sim lane
@dataclass
class Served:
    device: str
    type: str
    protocol: str
    endpoint: str
    note: str = ""


def _load_lane(config: str, lane: str):
    from firmware_configs.loader import ZONES_DIR, ConfigError, load_zone

    path = Path(config)
    if not path.exists() and (ZONES_DIR / f"{config}.yaml").exists():
        path = ZONES_DIR / f"{config}.yaml"
    try:
        zone = load_zone(path)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG") from exc
    checkpoint_id, _, lane_id = lane.partition("/")
    try:
        checkpoint = zone.checkpoint(checkpoint_id)
    except KeyError:
        known = ", ".join(f"{c.id}/{ln.id}" for c in zone.checkpoints for ln in c.lanes)
        raise typer.BadParameter(
            f"no checkpoint {checkpoint_id!r}; lanes: {known}", param_hint="LANE"
        ) from None
    for candidate in checkpoint.lanes:
        if candidate.id == lane_id:
            return zone, checkpoint, candidate
    known = ", ".join(f"{checkpoint.id}/{ln.id}" for ln in checkpoint.lanes)
    raise typer.BadParameter(f"no lane {lane_id!r} in {checkpoint.id}; lanes: {known}", param_hint="LANE")


def _other_simulator(module: str, names: tuple[str, ...]) -> Any | None:
    """A simulator class owned by another module, if that module exists (found by name, not required)."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    for name in names:
        cls = getattr(mod, name, None)
        if cls is not None:
            return cls
    return None


async def start_lane(
    lane_cfg,
    scene: LaneScene,
    host: str,
    base_port: int,
    faults: Faults,
    agent_url: str = "http://127.0.0.1:8081",
) -> tuple[list, list[Served]]:
    """Start one simulator per device of a lane, all rendering `scene`; returns (simulators, table rows).

    Serial devices are served as serial-over-IP on `base_port`, `base_port + 1`, … (0: free ports);
    cameras push to `agent_url` + their `listen_path`.
    """
    from simulators.led_board import LedBoardSimulator
    from simulators.rfid import RfidSimulator
    from simulators.weighbridge import WeighbridgeSimulator

    sims: list = []
    rows: list[Served] = []
    port = base_port
    for dev in lane_cfg.devices:
        kind = dev.type
        protocol = getattr(dev, "protocol", "")
        try:
            if kind in ("weighbridge", "rfid_reader", "led_board"):
                cls = {
                    "weighbridge": WeighbridgeSimulator,
                    "rfid_reader": RfidSimulator,
                    "led_board": LedBoardSimulator,
                }[kind]
                sim = cls(dev, scene=scene, faults=faults)
                bound = await sim.serve_tcp(host, port)
                sims.append(sim)
                rows.append(
                    Served(dev.id, kind, protocol, f"socket://{host}:{bound}", f"config: {dev.serial.port}")
                )
            elif kind == "io_board":
                cls = _other_simulator("simulators.io_board", ("IoBoardSimulator",))
                if cls is None:
                    rows.append(Served(dev.id, kind, "modbus", "-", "not simulated (no simulators.io_board)"))
                    continue
                sim = cls(dev, scene)
                bound = await sim.start(host, port)
                sims.append(sim)
                rows.append(
                    Served(dev.id, kind, f"modbus/{getattr(dev.link, 'framer', 'rtu')}", f"{host}:{bound}")
                )
            elif kind in ("plate_camera", "container_camera"):
                names = ("PlateCameraSimulator",) if kind == "plate_camera" else ("ContainerCameraSimulator",)
                cls = _other_simulator("simulators.cameras", names)
                if cls is None:
                    rows.append(
                        Served(dev.id, kind, protocol, "-", "not simulated (no camera simulator found)")
                    )
                    continue
                target = (
                    agent_url.rstrip("/") + dev.listen_path if getattr(dev, "listen_path", None) else None
                )
                sim = cls(dev, scene, target)
                await sim.start()
                sims.append(sim)
                rows.append(Served(dev.id, kind, protocol, "-", f"pushes to {target or 'MQTT'}"))
            else:
                rows.append(Served(dev.id, kind, protocol, "-", "not simulated"))
                continue
        except Exception as exc:  # one broken simulator must not hide the others
            rows.append(Served(dev.id, kind, protocol, "-", f"failed: {type(exc).__name__}: {exc}"))
            continue
        if base_port:
            port += 1
    return sims, rows


async def stop_lane(sims: list) -> None:
    for sim in sims:
        stop = getattr(sim, "close", None) or getattr(sim, "stop", None)
        if stop is not None:
            with contextlib.suppress(Exception):
                await stop()


@app.command("lane")
def lane(
    config: Annotated[str, typer.Argument(help="Firmware config file (or zone id, e.g. yangshan-port).")],
    lane_ref: Annotated[str, typer.Argument(metavar="LANE", help="checkpoint/lane, e.g. port-gate/in-1.")],
    host: HostOpt = "127.0.0.1",
    base_port: Annotated[
        int,
        typer.Option("--base-port", help="First TCP port; devices get consecutive ports (0 = free ports)."),
    ] = 0,
    open_barrier: Annotated[
        bool,
        typer.Option(
            "--open-barrier/--no-open-barrier",
            help="Let the truck stream raise the arm itself (no lane controller attached). Without it, trucks "
            "wait for the barrier and back out after their patience.",
        ),
    ] = False,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            metavar="URL",
            help="Where cameras push (default: http://127.0.0.1:<device_http_port>).",
        ),
    ] = None,
    fast: FastOpt = False,
    noise: NoiseOpt = 0.0,
    bitflip: FlipOpt = 0.0,
    bad_checksum: BadOpt = 0.0,
    seed: SeedOpt = None,
) -> None:
    """All of one lane's devices on local ports, sharing one scene with a stream of trucks."""
    zone, checkpoint, lane_cfg = _load_lane(config, lane_ref)
    faults = _faults(noise, bitflip, bad_checksum, None, None, None, seed)

    async def main() -> None:
        scene = fast_scene() if fast else LaneScene()
        stream = TruckStream(scene, open_barrier=open_barrier)
        agent_url = agent or f"http://127.0.0.1:{checkpoint.agent.device_http_port}"
        sims, rows = await start_lane(lane_cfg, scene, host, base_port, faults, agent_url)
        table = Table(title=f"{zone.id} {checkpoint.id}/{lane_cfg.id} — {lane_cfg.name}")
        for col in ("device", "type", "protocol", "served at", "note"):
            table.add_column(col)
        for r in rows:
            table.add_row(r.device, r.type, r.protocol, r.endpoint, r.note)
        console.print(table)
        print("Ctrl-C to stop.", flush=True)
        try:
            await stream.run()
        finally:
            await stop_lane(sims)

    _run(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
