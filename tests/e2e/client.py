"""A real MCP client (the Python SDK) driving AgentGate in end-to-end tests.

Usage: python client.py URL KEY MODE STEP [STEP ...]
MODE is `auto` (2026-07-28 with fallback) or `legacy` (the initialize handshake).
Each STEP is `list`, or `call:NAME:JSON_ARGS`; all steps run in one client session. Prints one
JSON line per step: {"tools": [...]} or {"result": "..."} or {"error": {code, message, data}}.
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


async def main(url: str, key: str, mode: str, steps: list[str]) -> None:
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
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
