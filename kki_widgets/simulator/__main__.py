"""``python -m kki_widgets.simulator``: run the simulated relay in the foreground."""

from __future__ import annotations

import argparse
import sys
import threading

from .catalog import MODEL_LISTS
from .chat_request import DEFAULT_MODELS
from .dialect_registry import DIALECT_NAMES, DialectError
from .faults import ALL_FAULT_NAMES, FaultError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kki_widgets.simulator",
        description="A local relay for continuous video generation (OpenAI chat-completions wire "
        "format) that renders real mp4/webp media and can misbehave on purpose.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    parser.add_argument("--media-dir", default=None, help="where rendered clips go (default: a temp dir)")
    parser.add_argument("--speed", type=float, default=1.0, help="timing factor: 2 is twice as fast, 0.5 half")
    parser.add_argument("--queue-seconds", type=float, default=1.0)
    parser.add_argument("--generate-seconds", type=float, default=3.0)
    parser.add_argument("--step-seconds", type=float, default=0.3)
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any non-empty key)")
    parser.add_argument("--model", action="append", dest="models", metavar="NAME",
                        help=f"a model to offer (repeatable; default: {', '.join(DEFAULT_MODELS)})")  # fmt: skip
    parser.add_argument("--fault", action="append", dest="faults", default=[], metavar="NAME[:ARG]",
                        help=f"a server-wide fault (repeatable): {', '.join(ALL_FAULT_NAMES)}")  # fmt: skip
    parser.add_argument("--dialect", default=None, choices=DIALECT_NAMES,
                        help="the answer shape of a real relay family (default: seed)")  # fmt: skip
    parser.add_argument("--catalog", default=None, choices=sorted(MODEL_LISTS),
                        help="list and serve one relay family's model names (GET /v1/models)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="make IDs and progress reproducible")
    parser.add_argument("--honour-json-options", action="store_true",
                        help="read top-level orientation/duration fields (real chat relays ignore them)")  # fmt: skip
    parser.add_argument("--variants", type=int, default=0, metavar="N",
                        help="distinct clips an identical request cycles through (default 0: every repeat differs)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .server import Simulator

    try:
        simulator = Simulator(
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            models=args.models or DEFAULT_MODELS,
            media_dir=args.media_dir,
            queue_seconds=args.queue_seconds,
            generate_seconds=args.generate_seconds,
            step_seconds=args.step_seconds,
            speed=args.speed,
            faults=args.faults,
            honour_json_options=args.honour_json_options,
            seed=args.seed,
            dialect=args.dialect,
            variants=args.variants,
            catalog=args.catalog,
        )
        simulator.start()
    except (ValueError, FaultError, DialectError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(simulator.base_url, flush=True)
    print(f"KKI_BASE_URL={simulator.base_url} KKI_API_KEY={args.api_key or 'sk-simulator-any-key'}", flush=True)
    print("Ctrl-C to stop.", file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
