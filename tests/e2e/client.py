"""A real MCP client (the Python SDK) driving AgentGate in end-to-end tests.

Usage: python client.py [--pretty] URL KEY MODE STEP [STEP ...]
MODE is `auto` (2026-07-28 with fallback) or `legacy` (the initialize handshake).
Each STEP is `list`, or `call:NAME:JSON_ARGS`; all steps run in one client session. Prints one
JSON line per step: {"tools": [...]} or {"result": "..."} or {"error": {code, message, data}};
with --pretty (the local demo), one readable line per step saying what the gateway decided.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def error(e: MCPError) -> dict:
    err = getattr(e, "error", None)
    if err is not None:
        return {"code": err.code, "message": err.message, "data": err.data}
    return {"code": None, "message": str(e), "data": None}


GATEWAY_CODES = {
    -32080: "DENIED by a kill switch",
    -32081: "DENIED: the edge cannot confirm its configuration is current",
    -32082: "DENIED by policy",
    -32083: "HELD for an operator's approval",
    -32084: "DENIED: no enforceable policy",
    -32085: "TURNED AWAY: overloaded",
    -32086: "upstream FAILED",
    -32087: "REFUSED: too many approvals pending",
    -32602: "REFUSED: invalid params",
}


def pretty(step: str, out: dict) -> str:
    if "tools" in out:
        return f"  agent sees tools: {', '.join(out['tools'])}"
    if "result" in out:
        return f"  ALLOWED: {step.split(':', 2)[1]} returned {out['result']!r}"
    err = out["error"]
    what = GATEWAY_CODES.get(err["code"], f"error {err['code']}")
    data = err.get("data") or {}
    extra = []
    if data.get("policy_ids"):
        extra.append(f"policies: {', '.join(data['policy_ids'])}")
    if data.get("approval_id"):
        extra.append(f"approval id: {data['approval_id']}")
    if data.get("kill_switch"):
        extra.append(f"switch: {data['kill_switch']}")
    if data.get("retry_after_ms"):
        extra.append(f"retry after {data['retry_after_ms']} ms")
    tail = f" ({'; '.join(extra)})" if extra else ""
    return f"  {what} [{err['code']}]: {err['message']}{tail}"


async def main(url: str, key: str, mode: str, steps: list[str], readable: bool = False) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    async with Client(streamable_http_client(url, http_client=http), mode=mode) as c:
        for step in steps:
            try:
                if step == "list":
                    tools = await c.list_tools()
                    out = {"tools": sorted(t.name for t in tools.tools)}
                elif step.startswith("call:"):
                    _, name, args = step.split(":", 2)
                    r = await c.call_tool(name, json.loads(args))
                    text = "".join(getattr(b, "text", "") for b in r.content)
                    out = {"result": text, "is_error": bool(r.is_error)}
                else:
                    raise SystemExit(f"unknown step {step}")
            except MCPError as e:
                out = {"error": error(e)}
            print(pretty(step, out) if readable else json.dumps(out), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    readable = args[:1] == ["--pretty"]
    if readable:
        args = args[1:]
    asyncio.run(main(args[0], args[1], args[2], args[3:], readable))
