//! One deadline for reading a whole request body. actix bounds the time to
//! receive the request head (`client_request_timeout`) but not the body: a
//! client that sends its headers and then trickles or stops the body would
//! hold a connection and a handler forever. Every request's payload is wrapped
//! here in a stream that fails once the deadline passes; whatever extractor
//! was reading it gives up, and the answer becomes 408 problem+json (the
//! connection is closed, since the rest of the body is never read).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError};
use futures_util::Stream;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::ApiError;

/// The longest a request body may take to arrive, as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Duration);

struct DeadlineStream {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Rc<Cell<bool>>,
    done: bool,
}

impl Stream for DeadlineStream {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
            Poll::Pending => {}
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            self.expired.set(true);
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        Poll::Pending
    }
}

fn timeout_problem(limit: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body did not arrive within {} s",
            limit.as_secs_f64()
        ),
    )
    .with_header("connection", "close")
}

/// Wraps the payload of every request in the body deadline and turns a
/// request whose body ran out of time into 408.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(limit) = req.app_data::<BodyDeadline>().map(|d| d.0) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let expired = Rc::new(Cell::new(false));
    let stream = DeadlineStream {
        inner: req.take_payload(),
        sleep: Box::pin(tokio::time::sleep(limit)),
        expired: Rc::clone(&expired),
        done: false,
    };
    let boxed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(stream);
    req.set_payload(Payload::from(boxed));
    // Extractor failures come back as responses; only those are rewritten.
    let res = next.call(req).await?;
    if expired.get() {
        metrics::counter!("flowgate_http_body_timeouts_total").increment(1);
        let (http_req, _) = res.into_parts();
        return Ok(ServiceResponse::new(
            http_req,
            timeout_problem(limit).error_response(),
        ));
    }
    Ok(res.map_into_boxed_body())
}
