"""The OTLP/gRPC receiver: `TraceService/Export` and `MetricsService/Export` on their own port (4317 by default).

It runs on the dashboard's event loop (`grpc.aio`) and stores requests through the same `Receiver` as OTLP/HTTP,
so both transports decode, deduplicate and commit alike: a call is answered OK only once its batch is committed,
with the same `partial_success` for rejected spans. The request bytes are handed over undecoded (no gRPC-side
deserialiser), to be decoded once by the receiver's decode workers. Errors map to gRPC status codes as the OTLP
specification wants: `INVALID_ARGUMENT` for a body that cannot be read (not retried), `UNAUTHENTICATED` for a
missing or wrong bearer token, `UNAVAILABLE` when the store failed (retried).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import grpc.aio

from ..auth import WrongTokens
from .otlp import PROTOBUF, OtlpError
from .receiver import Receiver

__all__ = ('DEFAULT_GRPC_PORT', 'GrpcReceiver')

DEFAULT_GRPC_PORT = 4317
"""The OTLP/gRPC port the SDKs and the zero-code agent send to by default."""

_TRACES = 'opentelemetry.proto.collector.trace.v1.TraceService'
_METRICS = 'opentelemetry.proto.collector.metrics.v1.MetricsService'
_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 413: grpc.StatusCode.RESOURCE_EXHAUSTED}
logger = logging.getLogger('tracegraph.dashboard')


@dataclass(kw_only=True)
class GrpcReceiver:
    """An OTLP/gRPC server on `host:port` storing through `receiver`; `start()` and `stop()` on the event loop."""

    receiver: Receiver | None = None
    """Set by `create_app` to the app's OTLP receiver."""
    host: str = '127.0.0.1'
    port: int = DEFAULT_GRPC_PORT
    """0 picks a free port; `bound_port` holds the one taken."""
    token: str | None = None
    wrong_tokens: WrongTokens | None = None
    """Set by `create_app`: the wrong-token counts the HTTP side keeps, so both ports share one limit."""
    bound_port: int | None = field(default=None, init=False)
    _server: grpc.aio.Server | None = field(default=None, init=False)

    def _handler(self, ingest: Callable[[bytes, str], Awaitable[tuple[bytes, dict[str, Any]]]]) -> Any:
        async def export(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            if self.token is not None:
                given = str(dict(context.invocation_metadata() or ()).get('authorization', ''))
                expected = f'Bearer {self.token}'
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    await self._refuse(context, given)
            try:
                reply, _ = await ingest(request, PROTOBUF)
            except OtlpError as exc:
                await context.abort(_CODES.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), exc.message)
                raise  # abort raises; this line is not reached
            except Exception as exc:  # not committed: UNAVAILABLE makes the exporter send it again
                logger.exception('could not store an OTLP/gRPC batch')
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, f'Could not store the batch: {type(exc).__name__}: {exc}'
                )
                raise
            return reply

        # no (de)serialisers: bytes in, bytes out (grpc's stubs leave the handler's types open)
        return cast(Any, grpc.unary_unary_rpc_method_handler)(export)

    async def _refuse(self, context: grpc.aio.ServicerContext[bytes, bytes], given: str) -> None:
        """Abort a call with a missing or wrong token: UNAUTHENTICATED, or RESOURCE_EXHAUSTED once its address or its
        token is over the wrong-token limit (the rule of `auth`)."""
        wrong = self.wrong_tokens
        if wrong is not None and given[:7].lower() == 'bearer ':
            client = _peer_host(context.peer())
            wrong.add(client, given[7:].strip())
            if wait := wrong.retry_after(client, given[7:].strip()):
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, f'Too many wrong tokens from {client}: try again in {wait} s.'
                )
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED, 'Missing or wrong bearer token: send authorization: Bearer TOKEN.'
        )

    async def start(self) -> None:
        """Bind and start serving.

        Raises:
            OSError: the address cannot be bound.
        """
        receiver = self.receiver
        assert receiver is not None, 'create_app(grpc=...) sets the receiver'
        limit = receiver.max_body
        server = grpc.aio.server(
            options=[('grpc.max_receive_message_length', limit), ('grpc.so_reuseport', 0)],
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(_TRACES, {'Export': self._handler(receiver.ingest_traces)}),
                grpc.method_handlers_generic_handler(_METRICS, {'Export': self._handler(receiver.ingest_metrics)}),
            )
        )
        host = f'[{self.host}]' if ':' in self.host else self.host
        try:
            self.bound_port = server.add_insecure_port(f'{host}:{self.port}')
        except RuntimeError as exc:
            raise OSError(f'cannot listen on {host}:{self.port} for OTLP/gRPC: {exc}') from None
        await server.start()
        self._server = server

    async def stop(self) -> None:
        """Stop, letting calls in progress finish for up to 2 seconds."""
        if self._server is not None:
            await self._server.stop(grace=2)
            self._server = None


def _peer_host(peer: str) -> str:
    """The address in a gRPC peer string (`ipv4:127.0.0.1:5050`, `ipv6:[::1]:5050`)."""
    address = peer.split(':', 1)[1] if ':' in peer else peer
    return address.rsplit(':', 1)[0].strip('[]') if address.count(':') >= 1 else address
