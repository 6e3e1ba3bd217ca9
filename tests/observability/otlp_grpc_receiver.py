"""A local OTLP/gRPC trace receiver (TraceService on 127.0.0.1) that keeps the spans it gets."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from otlp_receiver import ReceivedSpan, spans_of


class GrpcOtlpReceiver(TraceServiceServicer):  # type: ignore[misc]
    """``with GrpcOtlpReceiver() as receiver``: serves on ``receiver.endpoint`` until exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> GrpcOtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def Export(self, request: ExportTraceServiceRequest, context: Any
               ) -> ExportTraceServiceResponse:
        with self._lock:
            self._spans.extend(spans_of(request))
        return ExportTraceServiceResponse()
