"""`annotune serve RUN [RUN ...]`: load the runs, start the API and the chat page."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

from annotune.config import at_least_one
from annotune.errors import AnnotuneError

API_KEY_ENV = "ANNOTUNE_API_KEY"


def register(sub) -> None:
    from annotune.cli import add_routing_argument

    p = sub.add_parser("serve", help="serve runs through an OpenAI-compatible API and a chat page",
                       description="Serve one or more runs (or any model references) on one base model's weights: "
                                   "POST /v1/chat/completions, GET /v1/models, GET /health, and a chat page at /.")
    p.add_argument("models", nargs="+", metavar="RUN",
                   help="run folder or model reference; NAME=RUN names it (default: the folder's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV} if set)")
    p.add_argument("--max-batch", type=at_least_one, default=16, help="most answers generated at once per model")
    p.add_argument("--max-waiting", type=at_least_one, default=64,
                   help="requests that may wait for room in the batch; more are answered 503 with Retry-After")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take, waiting included")
    p.add_argument("--max-body", type=at_least_one, default=1024 * 1024, help="largest request body in bytes")
    p.add_argument("--max-model-len", type=at_least_one, default=None,
                   help="cap on prompt + answer tokens (default: the model's context)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="weights' precision while serving (default fp32, as chat and generate)")
    add_routing_argument(p)
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from annotune.generation.loading import load_engines
    from annotune.serve.app import ServerSettings, create_app
    from annotune.web import check_port_free

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not 0 < args.port < 65536:
        raise AnnotuneError(f"--port must be between 1 and 65535, got {args.port}")
    if args.timeout <= 0:
        raise AnnotuneError(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
    if not _is_loopback(args.host) and not api_key:
        print(f"warning: listening on {args.host} without an API key: anyone who can reach this machine can use "
              f"the models; pass --api-key or set {API_KEY_ENV}", file=sys.stderr)
    check_port_free(args.host, args.port)
    print(f"Loading {', '.join(args.models)} ...", file=sys.stderr, flush=True)
    engines = load_engines(args.models, dtype=args.dtype, max_model_len=args.max_model_len,
                           max_batch=args.max_batch, max_waiting=args.max_waiting, routing=not args.no_routing)
    settings = ServerSettings(api_key=api_key, max_body=args.max_body, timeout=args.timeout)
    app = create_app(engines, settings)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    served = logging.getLogger("annotune.serve")
    served.addHandler(handler)
    served.setLevel(logging.INFO)
    served.propagate = False
    url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    names = ", ".join(app.state.registry.models)
    print(f"Serving {names}\n  chat page: {url}/\n  API:       {url}/v1 (OpenAI-compatible; "
          f"{'API key required' if api_key else 'no API key'})", file=sys.stderr, flush=True)
    # On SIGTERM or Ctrl-C uvicorn stops accepting, lets requests in flight finish (up to --timeout), then the
    # app's shutdown closes the engines; uvicorn then ends the process by the same signal, as is conventional.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=int(args.timeout) + 1)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
