//! Connection-level limits: how long a client may take to send its
//! headers and its body, how many connections are served at once, and a
//! declared body over the limit refused before a byte of it is read.
//! Shared by the plain and the TLS accept loops (`tls::serve`).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};

use super::error::{BODY_LIMIT, Refusal};
use crate::config::ConnLimits;

/// Refuse a declared `Content-Length` over the limit with 413 before any
/// of the body is read, and give every other body a deadline: a body not
/// received within `body_timeout` of the headers fails to read (the
/// handler answers 400 and the connection is closed).
pub async fn layer(State(limits): State<ConnLimits>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        let vault = req.uri().path().starts_with("/v1/");
        let mut res = Refusal::rejected(vault, StatusCode::PAYLOAD_TOO_LARGE, "request body", "").into_response();
        res.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return res;
    }
    let (parts, body) = req.into_parts();
    let body = Body::new(Deadline {
        inner: body,
        sleep: Box::pin(tokio::time::sleep(limits.body_timeout)),
    });
    next.run(Request::from_parts(parts, body)).await
}

/// A body that fails once its deadline passes before its end.
struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

/// The error of a body not received in time.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within listener.body_timeout_ms")]
struct BodyTimeout;

impl http_body::Body for Deadline {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
