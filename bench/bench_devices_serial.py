"""Serial device codecs and drivers.

* Frames decoded per second by each sans-I/O decoder over a captured-style stream (the simulator's own
  frames, fed in 4 KiB chunks as a serial read delivers them), versus a bare `bytes.split` on the
  protocol's delimiter over the same stream (Chafon, which has none, against a bare length-prefix walk):
  the ratio is what validation (checksums, digit checks, resynchronisation) costs.
* CPU share of the weighbridge driver while the simulator streams Toledo at the full line rate of
  115200 baud (640 frames/s) over a real pseudo-terminal — the simulator runs in its own process
  (`efence sim device weighbridge`), so only the driver's reading, decoding and stability work is
  measured — versus a bare asyncio reader that only reads the same pty.
"""

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.codecs import ascii_epc, chafon, em4100, sma, toledo, yaohua
from edge_agent.drivers.serial_line import open_serial
from edge_agent.drivers.weighbridge import WeighbridgeDriver
from firmware_configs.devices import SerialLink, WeighbridgeConfig

N_FRAMES = 20_000
CHUNK = 4096
CPU_WINDOW_S = 5.0


def _stream(frames: list[bytes]) -> bytes:
    return b"".join(frames)


def _streams() -> dict[str, tuple[bytes, Callable[[], object], Callable[[bytes], int]]]:
    """protocol → (stream, decoder factory, bare baseline returning a frame count)."""
    weights = [float(15_000 + (i * 37) % 30_000) for i in range(N_FRAMES)]
    epcs = [f"E280{i:020X}" for i in range(N_FRAMES)]
    chafon_frames = [
        chafon.encode_response(
            chafon.ChafonResponse(
                0, 1, 3, chafon.inventory_data([chafon.InventoryTag(bytes.fromhex(e), 1, 0x60)], antenna=1)
            )
        )
        for e in epcs
    ]

    def length_walk(data: bytes) -> int:
        n = pos = 0
        while pos < len(data):
            pos += data[pos] + 1
            n += 1
        return n

    return {
        "toledo": (
            _stream([toledo.encode(toledo.ToledoFrame(displayed=int(w))) for w in weights]),
            toledo.ToledoDecoder,
            lambda d: len(d.split(b"\x02")) - 1,
        ),
        "yaohua": (
            _stream([yaohua.encode(yaohua.YaohuaFrame(w)) for w in weights]),
            yaohua.YaohuaDecoder,
            lambda d: len(d.split(b"\x02")) - 1,
        ),
        "yaohua-reversed": (
            _stream([yaohua.encode_reversed(yaohua.YaohuaFrame(w)) for w in weights]),
            yaohua.YaohuaReversedDecoder,
            lambda d: len(d.split(b"=")) - 1,
        ),
        "sma": (
            _stream([sma.encode(sma.SmaFrame(w)) for w in weights]),
            sma.SmaDecoder,
            lambda d: len(d.split(b"\n")) - 1,
        ),
        "chafon": (_stream(chafon_frames), chafon.ChafonDecoder, length_walk),
        "em4100": (
            _stream([em4100.encode(em4100.Em4100Frame(f"{i % 256:02X}{i:08X}")) for i in range(N_FRAMES)]),
            em4100.Em4100Decoder,
            lambda d: len(d.split(b"\x02")) - 1,
        ),
        "ascii-epc": (
            _stream([ascii_epc.encode(ascii_epc.EpcLine(e)) for e in epcs]),
            ascii_epc.AsciiEpcDecoder,
            lambda d: len(d.split(b"\r\n")) - 1,
        ),
    }


def _best_rate(work: Callable[[], int], repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        n = work()
        best = max(best, n / (time.perf_counter() - start))
    return best


def _parse_rows() -> list[dict]:
    rows = []
    for protocol, (data, make_decoder, bare) in _streams().items():
        chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]

        def decode(make_decoder=make_decoder, chunks=chunks, protocol=protocol) -> int:
            decoder = make_decoder()
            good = 0
            for chunk in chunks:
                good += sum(1 for f in decoder.feed(chunk) if not hasattr(f, "reason"))
            assert good == N_FRAMES, (protocol, good)
            return good

        rate = _best_rate(decode)
        baseline = _best_rate(lambda bare=bare, data=data: bare(data))
        rows.append(
            {
                "benchmark": f"serial decode {protocol}",
                "value": round(rate),
                "unit": "frames/s",
                "baseline": round(baseline),
                "ratio": round(rate / baseline, 4),
                "notes": f"{N_FRAMES} frames in {CHUNK}-byte chunks; baseline: bare split/length walk, no validation",
            }
        )
    return rows


async def _cpu_share(path: str, use_driver: bool) -> tuple[float, int]:
    """(CPU seconds per wall second, frames or bytes handled) over CPU_WINDOW_S."""
    if use_driver:
        config = WeighbridgeConfig(
            id="bench", type="weighbridge", serial=SerialLink(port=path, baudrate=115200), protocol="toledo"
        )
        driver = WeighbridgeDriver(config, lambda obs: None)
        task = asyncio.create_task(driver.run())
        await asyncio.sleep(1.0)  # connect and settle
        ok0, cpu0, wall0 = driver.health.counters["frames_ok"], time.process_time(), time.perf_counter()
        await asyncio.sleep(CPU_WINDOW_S)
        cpu, wall, count = (
            time.process_time() - cpu0,
            time.perf_counter() - wall0,
            driver.health.counters["frames_ok"] - ok0,
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return cpu / wall, count
    reader, writer = await open_serial(SerialLink(port=path, baudrate=115200))
    total = 0

    async def drain() -> None:
        nonlocal total
        while True:
            total += len(await reader.read(4096))

    task = asyncio.create_task(drain())
    await asyncio.sleep(1.0)
    n0, cpu0, wall0 = total, time.process_time(), time.perf_counter()
    await asyncio.sleep(CPU_WINDOW_S)
    cpu, wall, count = time.process_time() - cpu0, time.perf_counter() - wall0, total - n0
    task.cancel()
    writer.close()
    return cpu / wall, count


def _cpu_rows() -> list[dict]:
    efence = str(Path(sys.executable).parent / "efence")
    cmd = [
        efence,
        "sim",
        "device",
        "weighbridge",
        "--protocol",
        "toledo",
        "--pty",
        "--baud",
        "115200",
        "--rate",
        "640",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        path = None
        for _ in range(5):
            line = proc.stdout.readline()
            if m := re.search(r"(/dev/pts/\d+)", line):
                path = m.group(1)
                break
        if path is None:
            raise RuntimeError("simulator did not print its pty path")
        share, frames = asyncio.run(_cpu_share(path, use_driver=True))
        bare, nbytes = asyncio.run(_cpu_share(path, use_driver=False))
    finally:
        proc.terminate()
        proc.wait(5)
    return [
        {
            "benchmark": "weighbridge driver CPU share, Toledo at 115200 baud over a pty",
            "value": round(100 * share, 2),
            "unit": "% of one core",
            "baseline": round(100 * bare, 2),
            "ratio": round(share / bare, 2) if bare else None,
            "notes": f"{frames / CPU_WINDOW_S:.0f} frames/s decoded (line rate 640/s); "
            f"baseline: bare asyncio reader of the same pty ({nbytes / CPU_WINDOW_S:.0f} B/s)",
        }
    ]


def run() -> list[dict]:
    return _parse_rows() + _cpu_rows()


if __name__ == "__main__":
    for row in run():
        print(row)
