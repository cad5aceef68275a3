"""OpenTelemetry pieces of AgentGate's trace test: a receiver, a traced client, a traced server.

  python otel.py receiver PORT FILE    an OTLP/gRPC trace receiver (TraceService.Export) on
                                       127.0.0.1:PORT writing one JSON line per span to FILE
  python otel.py server PORT           tests/e2e/upstream_server.py with the OpenTelemetry SDK
                                       exporting its spans (service "e2e-upstream")
  python otel.py client URL KEY TOOL JSON_ARGS
                                       the Python SDK client calling one tool inside a root span
                                       "agent.task" (service "e2e-agent"); prints
                                       {"trace_id": ..., "result"| "error": ...}

Server and client export to OTEL_EXPORTER_OTLP_ENDPOINT. Span JSON: trace_id, span_id,
parent_span_id (hex, "" for a root), name, kind, service, attributes (flattened to strings).
"""

import asyncio
import json
import os
import sys
from concurrent import futures


def hexid(b: bytes) -> str:
    return b.hex()


def value(v) -> str:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return ",".join(value(x) for x in v.array_value.values)
    if kind is None:
        return ""
    return str(getattr(v, kind))


def receiver(port: int, path: str) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    out = open(path, "a", buffering=1)

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            for rs in request.resource_spans:
                service = next((value(a.value) for a in rs.resource.attributes
                                if a.key == "service.name"), "")
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.write(json.dumps({
                            "trace_id": hexid(s.trace_id), "span_id": hexid(s.span_id),
                            "parent_span_id": hexid(s.parent_span_id), "name": s.name,
                            "kind": s.kind, "service": service,
                            "attributes": {a.key: value(a.value) for a in s.attributes},
                            "events": [e.name for e in s.events],
                        }) + "\n")
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


def provider(service: str):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    p = TracerProvider(resource=Resource.create({"service.name": service}))
    p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(insecure=True), schedule_delay_millis=100))
    trace.set_tracer_provider(p)
    return p


def server(port: int) -> None:
    provider("e2e-upstream")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from upstream_server import mcp

    mcp.run(transport="streamable-http", host="127.0.0.1", port=port)


async def client(url: str, key: str, tool: str, args: dict) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError
    from opentelemetry import trace

    p = provider("e2e-agent")
    tracer = trace.get_tracer("e2e-agent")
    out = {}
    with tracer.start_as_current_span("agent.task") as span:
        out["trace_id"] = format(span.get_span_context().trace_id, "032x")
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        async with Client(streamable_http_client(url, http_client=http)) as c:
            try:
                r = await c.call_tool(tool, args)
                out["result"] = "".join(getattr(x, "text", "") for x in r.content)
            except MCPError as e:
                out["error"] = str(e)
    p.shutdown()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "receiver" and len(sys.argv) == 4:
        receiver(int(sys.argv[2]), sys.argv[3])
    elif mode == "server" and len(sys.argv) == 3:
        server(int(sys.argv[2]))
    elif mode == "client" and len(sys.argv) == 6:
        asyncio.run(client(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
