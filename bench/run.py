"""chatsite's benchmarks: `make bench` (the full run, a few minutes) and `make bench-smoke`
(every scenario, tiny and fast, for CI; it never asserts a time).

    .venv/bin/python bench/run.py [--smoke] [--out bench/RESULTS.md] [--skip-litellm]

Starts everything itself: the fast fake upstream, chatsite on a fresh SQLite data
directory (one daphne process, as `make run` serves it), and the LiteLLM proxy installed
into bench/.litellm-venv. Writes a Markdown table (with the command and the core count)
and a JSON file with every raw figure next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import loadgen
import servers
import wschat
from fake_upstream import new_event_loop
from history import measure as measure_history
from report import failures, markdown

MODEL_CHATSITE = "fake/bench-model"
MODEL_LITELLM = "bench-model"
TOKENS = 64


def expected_text(tokens: int) -> str:
    return "".join(f"t{n} " for n in range(tokens))


class Plan:
    """How big each scenario is: the full run, or a smoke run that only proves it works."""

    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.seconds = 1.0 if smoke else 8.0
        self.warmup = 0.3 if smoke else 1.0
        self.concurrencies = [1, 32, 128]
        self.stream_concurrencies = [1, 32]
        self.burst_streams = 50 if smoke else 500
        self.burst_rounds = 1 if smoke else 3
        self.chat_conversations = 20 if smoke else 200
        self.startup_runs = 1 if smoke else 5
        self.history_messages = 200 if smoke else 2000
        self.history_runs = 1 if smoke else 5


class RssSampler:
    """The server's resident memory every 50 ms while a scenario runs; keeps the peak."""

    def __init__(self, server: servers.Server) -> None:
        self.server = server
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_mb())
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss_mb())


def relay_request(port: int, model: str, key: str, *, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Count, please."}],
    }
    if stream:
        body["stream"] = True
    return loadgen.build_request("127.0.0.1", port, "/v1/chat/completions", body, key)


async def relay_scenarios(
    plan: Plan, name: str, port: int, model: str, key: str, fake: servers.Server
) -> dict[str, Any]:
    """Points 1 and 2 for one target: non-streaming at each concurrency, streaming."""
    out: dict[str, Any] = {"nonstream": [], "stream": []}
    servers.configure_fake(fake, tokens=TOKENS, token_delay=0)
    request = relay_request(port, model, key, stream=False)
    for concurrency in plan.concurrencies:
        result = await loadgen.run(
            name=name,
            host="127.0.0.1",
            port=port,
            request=request,
            concurrency=concurrency,
            seconds=plan.seconds,
            warmup=plan.warmup,
        )
        out["nonstream"].append(result.summary())
        _progress(result.summary())
    request = relay_request(port, model, key, stream=True)
    for concurrency in plan.stream_concurrencies:
        result = await loadgen.run(
            name=name,
            host="127.0.0.1",
            port=port,
            request=request,
            concurrency=concurrency,
            seconds=plan.seconds,
            warmup=plan.warmup,
            stream=True,
            expected_text=expected_text(TOKENS),
        )
        out["stream"].append(result.summary())
        _progress(result.summary())
    return out


async def burst_rounds(
    plan: Plan,
    server: servers.Server | None,
    name: str,
    port: int,
    model: str,
    key: str,
    fake: servers.Server,
    rounds: int,
) -> list[dict[str, Any]]:
    """Point 2's burst (N streams of 64 tokens at 20 ms a token), with the server's memory."""
    servers.configure_fake(fake, tokens=TOKENS, token_delay=0.02)
    out = []
    try:
        for round_number in range(1, rounds + 1):
            request = relay_request(port, model, key, stream=True)
            sampler = RssSampler(server) if server is not None else None
            if sampler:
                sampler.__enter__()
            try:
                result = await loadgen.burst(
                    name=name,
                    host="127.0.0.1",
                    port=port,
                    request=request,
                    count=plan.burst_streams,
                    expected_text=expected_text(TOKENS),
                )
            finally:
                if sampler:
                    sampler.__exit__()
            figures = result.summary() | {"round": round_number}
            if server is not None and sampler is not None:
                await asyncio.sleep(1.0)
                figures |= {
                    "peak_rss_mb": round(sampler.peak, 1),
                    "rss_after_mb": round(server.rss_mb(), 1),
                }
            out.append(figures)
            _progress(figures)
    finally:
        servers.configure_fake(fake, tokens=TOKENS, token_delay=0)
    return out


async def chat_scenario(
    plan: Plan, site: servers.Chatsite, server: servers.Server, fake: servers.Server
) -> dict[str, Any]:
    """Point 3: N conversations on N sockets, each streaming a 64-token reply."""
    servers.configure_fake(fake, tokens=TOKENS, token_delay=0)
    sessions = list(site.seed["chat_sessions"])[: plan.chat_conversations]  # type: ignore[call-overload]
    cpu_before = server.cpu_seconds()
    result = await wschat.run(
        port=server.port, sessions=sessions, model=MODEL_CHATSITE, expected=expected_text(TOKENS)
    )
    # Let the last saves and the title tasks finish before reading the CPU time.
    await asyncio.sleep(1.0)
    cpu = server.cpu_seconds() - cpu_before
    saved = json.loads(
        site.manage("shell", "-c", wschat.SAVED.format(ids=result.message_ids))
        .stdout.strip()
        .splitlines()[-1]
    )
    saved_complete = sum(
        1 for status, content in saved if status == "complete" and content == expected_text(TOKENS)
    )
    ttft = sorted(result.first_tokens)
    figures = {
        "conversations": result.conversations,
        "completed": result.complete,
        "seconds": round(result.seconds, 3),
        "tokens": result.tokens,
        "out_of_order": result.out_of_order,
        "wrong_text": result.wrong_text,
        "saved_complete": saved_complete,
        "errors": len(result.errors),
        "error_samples": result.errors[:3],
        "ttft_p50_ms": round(ttft[len(ttft) // 2] * 1000, 1) if ttft else None,
        "ttft_p99_ms": round(ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))] * 1000, 1)
        if ttft
        else None,
        "server_cpu_seconds": round(cpu, 3),
        "cpu_seconds_per_1000_tokens": round(cpu / result.tokens * 1000, 3)
        if result.tokens
        else None,
    }
    _progress(figures)
    return figures


def _progress(figures: dict[str, Any]) -> None:
    brief = {k: v for k, v in figures.items() if k != "error_samples" and v not in (None, [], 0)}
    print("  ", json.dumps(brief), flush=True)
    if figures.get("error_samples"):
        print("   errors:", figures["error_samples"], flush=True)


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan(args.smoke)
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    logdir = workdir / "logs"
    logdir.mkdir()
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        "smoke": plan.smoke,
        "machine": {
            "cores": os.cpu_count(),
            "server_cores": sorted(servers.SERVER_CORES),
            "tool_cores": sorted(servers.TOOL_CORES),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "plan": vars(plan),
    }
    print(f"bench: work files in {workdir}", flush=True)
    fake = servers.start_fake(logdir)
    try:
        print("1-2. the fake upstream directly (the floor; also the load generator's ceiling)")
        results["fake"] = await relay_scenarios(
            plan, "fake upstream", fake.port, MODEL_LITELLM, "x", fake
        )
        results["fake"]["burst"] = await burst_rounds(
            plan, None, "fake upstream", fake.port, MODEL_LITELLM, "x", fake, 1
        )

        print("chatsite: seeding a fresh data directory")
        site = servers.Chatsite.prepare(
            workdir / "data", fake, chatters=plan.chat_conversations, history=plan.history_messages
        )
        key = str(site.seed["api_key"])

        print("5. start-up time to /healthz")
        startups = []
        for _ in range(plan.startup_runs):
            server, waited = site.start(logdir)
            startups.append(round(waited, 3))
            server.stop()
        results["startup_seconds"] = startups
        print("  ", startups)

        server, _ = site.start(logdir)
        try:
            await asyncio.sleep(2.0)
            results["idle_rss_mb"] = round(server.rss_mb(), 1)
            print(f"4. idle resident memory after start-up: {results['idle_rss_mb']} MB")
            print("1-2. chatsite")
            results["chatsite"] = await relay_scenarios(
                plan, "chatsite", server.port, MODEL_CHATSITE, key, fake
            )
            print("2, 4. chatsite: concurrent streams, memory per round")
            results["chatsite"]["burst"] = await burst_rounds(
                plan, server, "chatsite", server.port, MODEL_CHATSITE, key, fake, plan.burst_rounds
            )
            print("3. websocket chat")
            results["chat"] = await chat_scenario(plan, site, server, fake)
            print("6. history")
            results["history"] = {
                "messages": plan.history_messages,
                # Playwright's sync API in a thread of its own, away from this event loop.
                "ms": await asyncio.to_thread(
                    measure_history,
                    f"http://127.0.0.1:{server.port}",
                    int(site.seed["history_conversation"]),  # type: ignore[call-overload]
                    str(site.seed["owner_session"]),
                    plan.history_messages,
                    plan.history_runs,
                ),
            }
            print("  ", {k: statistics.median(v) for k, v in results["history"]["ms"].items()})
        finally:
            server.stop()

        if args.uvicorn:
            server, _ = site.start(logdir, server="uvicorn")
            try:
                print("1-2. chatsite under uvicorn (same app, same process count)")
                results["chatsite_uvicorn"] = await relay_scenarios(
                    plan, "chatsite (uvicorn)", server.port, MODEL_CHATSITE, key, fake
                )
            finally:
                server.stop()

        if not args.skip_litellm:
            print("LiteLLM: installing (first run only) and starting")
            litellm, master_key, waited = servers.start_litellm(fake, logdir)
            results["litellm_startup_seconds"] = round(waited, 3)
            try:
                results["litellm_idle_rss_mb"] = round(litellm.rss_mb(), 1)
                print("1-2. LiteLLM")
                results["litellm"] = await relay_scenarios(
                    plan, litellm.name, litellm.port, MODEL_LITELLM, master_key, fake
                )
                results["litellm"]["burst"] = await burst_rounds(
                    plan, litellm, litellm.name, litellm.port, MODEL_LITELLM, master_key, fake, 1
                )
            finally:
                litellm.stop()
    finally:
        fake.stop()
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny and fast: proves it works")
    parser.add_argument("--out", type=Path, help="the Markdown report (JSON written beside it)")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--uvicorn", action="store_true", help="also measure under uvicorn")
    args = parser.parse_args()
    out: Path = args.out or (
        Path(tempfile.gettempdir()) / "chatsite-bench-smoke.md"
        if args.smoke
        else servers.BENCH / "RESULTS.md"
    )
    servers.pin_tools()
    with asyncio.Runner(loop_factory=new_event_loop()) as runner:
        results = runner.run(run_all(args))
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.write_text(markdown(results))
    print(f"bench: wrote {out} and {out.with_suffix('.json')}")
    problems = failures(results)
    for problem in problems:
        print("bench: FAILED:", problem, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
