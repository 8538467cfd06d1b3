"""`tdev`: run T-Developer locally (the same code as deployed, on an embedded AWS emulation)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from tdev.version import __version__
from tdev_cli import (
    alerts_cmd,
    artifacts_cmd,
    bench_cmd,
    budget_cmd,
    cache_cmd,
    chaos,
    config_cmd,
    dlq,
    errors_cmd,
    login_cmd,
    models_cmd,
    seed,
    serve,
    session_cmd,
    token_cmd,
)
from tdev_cli.exit_codes import (
    EXIT_BUDGET_EXCEEDED,
    EXIT_CANCELLED,
    EXIT_DEGRADED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
)
from tdev_cli.function_logs import functions_output

EXIT_CODES = {
    "SUCCEEDED": EXIT_OK,
    "DEGRADED": EXIT_DEGRADED,
    "BUDGET_EXCEEDED": EXIT_BUDGET_EXCEEDED,
    "CANCELLED": EXIT_CANCELLED,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tdev", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tdev {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one request through the whole pipeline locally")
    run.add_argument("request", help='what to build, e.g. "Design and implement a REST API for todo items"')
    run.add_argument("--model", help="provider:model-id for every agent (default: the offline model)")
    run.add_argument(
        "--fallback",
        action="append",
        default=[],
        metavar="MODEL",
        help="a model to try when the previous one fails transiently (repeatable, in order)",
    )
    run.add_argument("--project", default="default", help="project id the execution belongs to")
    run.add_argument(
        "--budget",
        type=float,
        metavar="USD",
        help="the most the request may spend on models (default: TDEV_DEFAULT_BUDGET_USD); a model call "
        f"that could go over is not made and tdev exits {EXIT_BUDGET_EXCEEDED} (BUDGET_EXCEEDED)",
    )
    run.add_argument("--json", action="store_true", help="print the final execution as JSON only")
    run.add_argument("--full", action="store_true", help="print each task's whole output")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the workflow")
    run.add_argument("--log-dir", default=".tdev/logs", help="where the functions' JSON logs and metrics go")
    run.add_argument("--session", help="attach the request to an open session (needs `tdev session backend`)")
    run.add_argument("--output", "-o", help="write the project the agents produced into this folder")
    remote = run.add_mutually_exclusive_group()
    remote.add_argument(
        "--api", help="run against this API URL (a deployed stage or tdev serve; TDEV_TOKEN / TDEV_API_KEY)"
    )
    remote.add_argument("--profile", help="run against the API of a `tdev login` profile")
    start = run.add_mutually_exclusive_group()
    start.add_argument(
        "--from",
        dest="from_execution",
        metavar="EXECUTION_ID",
        help="start from the project an earlier SUCCEEDED execution wrote (its copy in .tdev/workspaces/)",
    )
    start.add_argument(
        "--from-archive",
        metavar="ZIP",
        help="start from a project in a zip archive (e.g. one `GET .../artifacts.zip` returned)",
    )

    cancel = commands.add_parser(
        "cancel",
        help="cancel a running execution on the local backend (`tdev session backend`); Ctrl-C cancels "
        "the execution `tdev run` follows",
    )
    cancel.add_argument("execution_id")

    agents = commands.add_parser("agents", help="list the registered agents")
    agents.add_argument("--json", action="store_true")

    commands.add_parser("openapi", help="print the API's OpenAPI schema (generated from the pydantic models)")
    chaos.register(commands)
    dlq.register(commands)

    models_cmd.register(commands)
    serve.register(commands)
    token_cmd.register(commands)
    session_cmd.register(commands)
    bench_cmd.register(commands)
    artifacts_cmd.register(commands)
    cache_cmd.register(commands)
    seed.register(commands)
    login_cmd.register(commands)
    config_cmd.register(commands)
    errors_cmd.register(commands)
    alerts_cmd.register(commands)
    budget_cmd.register(commands)

    args = parser.parse_args(argv)
    if hasattr(args, "func"):
        return int(args.func(args))
    if args.command == "run":
        return _run(args)
    if args.command == "openapi":
        return _openapi()
    if args.command == "cancel":
        return _cancel(args)
    return _agents(args)


def _openapi() -> int:
    from tdev_cli.runtime import REPO_ROOT  # noqa: F401  (puts functions/ on the import path)

    os.environ.setdefault("TABLE_NAME", "unused-for-the-schema")
    from functions.api.description import openapi_document
    from functions.api.handler import app

    print(json.dumps(json.loads(openapi_document(app, "")), indent=2))  # what GET /openapi.json serves
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from tdev_cli import display

    console = _console()
    for option, name in [("--model", args.model), *(("--fallback", f) for f in args.fallback)]:
        if name is not None and ":" not in name:
            console.print(f"[red]{option} must look like provider:model-id (got {name!r})[/red]")
            return EXIT_USAGE
    os.environ.setdefault("AGNO_TELEMETRY", "false")
    with functions_output(args.log_dir, "run") as log_path, contextlib.ExitStack() as stack:
        from tdev_cli.runtime import LocalRuntime

        runtime: Any  # the embedded runtime, the session backend, or a remote API: the same interface
        try:
            if args.api or args.profile:  # a deployed API or tdev serve, through the typed client
                from tdev_cli.client import RemoteApi

                if args.session:
                    console.print(
                        "[red]--session works with the local session backend, not --api/--profile[/red]"
                    )
                    return EXIT_USAGE
                runtime = stack.enter_context(RemoteApi(login_cmd.client_for(args.api, args.profile)))
            elif args.session:  # a session outlives this command: use the running session backend
                from tdev_cli.session_cmd import STATE_FILE, BackendClient

                runtime = stack.enter_context(BackendClient.connect(STATE_FILE))
            else:
                runtime = stack.enter_context(
                    LocalRuntime(default_model=args.model, fallback_models=tuple(args.fallback))
                    if args.model
                    else LocalRuntime(fallback_models=tuple(args.fallback))
                )
        except (RuntimeError, LookupError, ValueError, PermissionError) as exc:
            # e.g. a bedrock: model without AWS credentials, an unknown profile, a bad --api URL
            console.print(f"[red]{exc}[/red]")
            return EXIT_USAGE
        fields: dict[str, Any] = {"project_id": args.project}
        if args.session:
            fields["session_id"] = args.session
        if args.model:
            fields["model"] = args.model
        if args.fallback:
            fields["fallback_models"] = args.fallback
        if args.budget is not None:
            fields["budget_usd"] = args.budget
        try:
            base, said = artifacts_cmd.base_fields(
                runtime, args.from_execution, args.from_archive, args.project
            )
        except (ValueError, OSError) as exc:
            console.print(f"[red]{exc}[/red]")
            return EXIT_USAGE
        fields.update(base)
        if said and not args.json:
            console.print(said)
        status, body = runtime.api("POST", "/v1/requests", {"request": args.request, **fields})
        if status not in (200, 202):
            display.rejected(console, status, body)
            return EXIT_USAGE
        execution_id = body["execution_id"]
        try:
            if args.json:
                view = runtime.wait(execution_id, timeout=args.timeout)
                print(json.dumps(view, indent=2), file=console.file)
                _save_artifacts(runtime, execution_id, args.output)  # quietly: stdout is the JSON only
            else:
                if not (args.api or args.profile):  # remote functions log to CloudWatch
                    console.print(f"[dim]function logs and metrics: {log_path}[/dim]")
                view = display.follow(
                    console,
                    runtime,
                    execution_id,
                    timeout=args.timeout,
                    full=args.full,
                    note=lambda: _save_artifacts(runtime, execution_id, args.output),
                )
        except KeyboardInterrupt:  # Ctrl-C is the kill switch of the execution this command follows
            status, view = runtime.api("POST", f"/v1/executions/{execution_id}/cancel")
            console.print(f"cancelled: execution {execution_id} ({view.get('status', status)})")
            return EXIT_CANCELLED if status == 200 else EXIT_FAILED
    final = view.get("status", "FAILED")
    if final == "BUDGET_EXCEEDED" and not args.json:
        console.print(
            f"[red]stopped: the request's budget of ${(view.get('budget') or {}).get('budget_usd')} would "
            f"have been exceeded by its next model call (exit {EXIT_BUDGET_EXCEEDED})[/red]"
        )
    return EXIT_CODES.get(final, EXIT_FAILED)


def _cancel(args: argparse.Namespace) -> int:
    """POST /v1/executions/{id}/cancel on the local backend, where executions outlive a command."""
    from tdev_cli.session_cmd import STATE_FILE, BackendClient

    console = _console()
    with functions_output(".tdev/logs", "cancel"):
        try:
            backend = BackendClient.connect(STATE_FILE)
        except RuntimeError as exc:
            console.print(f"[red]{exc}[/red]")
            return EXIT_USAGE
        with backend as runtime:
            status, body = runtime.api("POST", f"/v1/executions/{args.execution_id}/cancel")
    if status != 200:
        console.print(f"[red]not cancelled (HTTP {status}): {body.get('message', body)}[/red]")
        return EXIT_FAILED
    spent = (body.get("budget") or {}).get("spent_usd", 0.0)
    console.print(f"execution {args.execution_id}: {body['status']} (spent ${spent:.6f})")
    return EXIT_OK


def _save_artifacts(runtime: Any, execution_id: str, output: str | None) -> str:
    """Keep the project in .tdev/workspaces/<id>/ and write it to --output; one line saying where."""
    from tdev_cli.artifacts_cmd import download, keep_copy

    def api(method: str, path: str) -> tuple[int, Any]:
        status, body = runtime.api(method, path)
        return int(status), body

    try:
        kept = keep_copy(api, execution_id)
        if output is None:
            return f"project: {kept} (tdev artifacts {execution_id} --output DIR)"
        files = download(api, execution_id, Path(output))
    except (RuntimeError, ValueError, OSError) as exc:
        return f"[red]could not write the project: {exc}[/red]"
    return f"project: {len(files)} files written to {output}"


def _console() -> Any:
    from rich.console import Console

    # Off a terminal (CI, pipes) rich would wrap at 80 columns; plans and tables read better wider.
    return Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 120)


def _agents(args: argparse.Namespace) -> int:
    from rich.table import Table

    console = _console()
    with functions_output(".tdev/logs", "agents"):
        from tdev_cli.runtime import LocalRuntime

        with LocalRuntime() as runtime:
            status, agents = runtime.api("GET", "/v1/agents")
    if status != 200:
        console.print(f"[red]could not list agents ({status}): {agents}[/red]")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(agents, indent=2), file=console.file)
        return EXIT_OK
    table = Table(title="Registered agents")
    for column in ("name", "version", "capabilities", "keywords"):
        table.add_column(column)
    for agent in agents:
        table.add_row(
            agent["name"], agent["version"], ", ".join(agent["capabilities"]), ", ".join(agent["keywords"])
        )
    console.print(table)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
