"""A real MCP server (the Python SDK's MCPServer) for AgentGate's end-to-end tests.

Usage: python upstream_server.py PORT
Serves Streamable HTTP at http://127.0.0.1:PORT/mcp with tools whose annotations exercise the
default policy: a read-only tool, a destructive one, an unannotated one, and a slow streaming
one (progress notifications over SSE) for kill-switch containment.
"""

import asyncio
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations

mcp = MCPServer("agentgate-e2e-upstream")


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def echo(text: str) -> str:
    """Returns its input."""
    return text


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
def delete_file(path: str) -> str:
    """Deletes a file (pretends to)."""
    return f"deleted {path}"


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def read_secret(name: str) -> str:
    """Reads a named secret (the test policy forbids it)."""
    return f"secret {name}"


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def slow_count(n: int, ctx: Context) -> str:
    """Counts to n, one progress notification every 100 ms."""
    for i in range(n):
        await ctx.report_progress(i + 1, n)
        await asyncio.sleep(0.1)
    return f"counted to {n}"


if __name__ == "__main__":
    mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
